"""A synthetic dataset of large volumes, for measuring training at large patches (nnU-Net's planner picks
a 128^3 patch for it) where no large public dataset is at hand.

    python -m nnunetv2_segresmamba.dataset_conversion.synthetic --id 990 [--cases 20] [--shape 128 128 128]

writes ``DatasetNNN_SyntheticLarge`` into nnUNet_raw (``--nnunet-raw`` or the environment variable): single-
channel MRI-like volumes (1 mm isotropic) holding two labelled structures, random ellipsoids inside a larger
"body" ellipsoid, with a smooth intensity bias and Gaussian noise, and their label maps. Every case is drawn
from ``--seed`` and its number, so the dataset is the same wherever it is made. The images mean nothing
anatomically: the dataset exists to be timed (its plan's patch size, its memory), not to be scored.
Then ``nnUNetv2_plan_and_preprocess -d NNN -c 3d_fullres`` plans it: for volumes of 128^3 voxels nnU-Net's
planner keeps the whole 128^3 volume as the patch.
"""

from __future__ import annotations

from . import raw_dataset_folder

import argparse
import os
from pathlib import Path

import numpy as np

NAME = "SyntheticLarge"
FILE_ENDING = ".nii.gz"
LABELS = {"background": 0, "structure_a": 1, "structure_b": 2}


def dataset_name(dataset_id: int) -> str:
    return f"Dataset{dataset_id:03d}_{NAME}"


def _ellipsoid(grid: list[np.ndarray], centre: np.ndarray, radii: np.ndarray) -> np.ndarray:
    return sum(((axis - c) / r) ** 2 for axis, c, r in zip(grid, centre, radii)) <= 1.0


def synthetic_case(shape: tuple[int, int, int], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(image float32, labels uint8) of one case, both of ``shape`` (z, y, x)."""
    rng = np.random.default_rng(seed)
    size = np.array(shape, dtype=float)
    grid = np.meshgrid(*(np.arange(n, dtype=np.float32) for n in shape), indexing="ij", sparse=True)
    body = _ellipsoid(grid, size / 2 + rng.uniform(-0.05, 0.05, 3) * size, size * rng.uniform(0.38, 0.46, 3))
    labels = np.zeros(shape, dtype=np.uint8)
    for label in (1, 2):
        centre = size / 2 + rng.uniform(-0.2, 0.2, 3) * size
        radii = size * rng.uniform(0.06, 0.16, 3)
        labels[_ellipsoid(grid, centre, radii) & body] = label
    intensity = np.where(body, 100.0, 5.0) + np.select([labels == 1, labels == 2], [45.0, -35.0], 0.0)
    # A smooth multiplicative bias, as MRI scanners leave.
    bias = 1.0 + 0.15 * sum(np.sin(axis / n * np.pi * rng.uniform(0.5, 1.5) + rng.uniform(0, np.pi))
                            for axis, n in zip(grid, shape)) / 3
    image = intensity * bias + rng.normal(0.0, 12.0, shape)
    return image.astype(np.float32), labels


def _write(array: np.ndarray, path: Path) -> None:
    import SimpleITK as sitk
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((1.0, 1.0, 1.0))
    sitk.WriteImage(image, str(path), useCompression=True)


def make_dataset(nnunet_raw: Path, dataset_id: int, cases: int, shape: tuple[int, int, int], seed: int = 0) -> Path:
    """Writes the dataset into ``nnunet_raw``; returns its folder."""
    from nnunetv2.dataset_conversion.generate_dataset_json import generate_dataset_json
    if cases < 5:
        raise ValueError(f"{cases} cases: nnU-Net's 5-fold cross-validation needs at least 5")
    if min(shape) < 16:
        raise ValueError(f"shape {list(shape)}: use at least 16 voxels per axis")
    target = raw_dataset_folder(nnunet_raw, dataset_name(dataset_id), dataset_id)
    for number in range(cases):
        image, labels = synthetic_case(shape, seed * 100003 + number)
        case = f"synthetic_{number:03d}"
        _write(image, target / "imagesTr" / f"{case}_0000{FILE_ENDING}")
        _write(labels, target / "labelsTr" / f"{case}{FILE_ENDING}")
    generate_dataset_json(str(target), {0: "MRI"}, LABELS, cases, FILE_ENDING, dataset_name=dataset_name(dataset_id),
                          description=f"synthetic volumes of {'x'.join(map(str, shape))} voxels (seed {seed}), "
                                      f"made by nnunetv2_segresmamba for timing large patches",
                          license="CC0 (synthetic)", converted_by="nnunetv2_segresmamba.dataset_conversion.synthetic")
    return target


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m nnunetv2_segresmamba.dataset_conversion.synthetic",
                                     description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--id", type=int, default=990, help="nnU-Net dataset id (default 990)")
    parser.add_argument("--cases", type=int, default=20, help="number of cases (default 20)")
    parser.add_argument("--shape", type=int, nargs=3, default=(128, 128, 128), metavar=("Z", "Y", "X"),
                        help="voxels per case (default 128 128 128)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--nnunet-raw", type=Path, default=None, help="default: $nnUNet_raw")
    args = parser.parse_args(argv)
    nnunet_raw = args.nnunet_raw or os.environ.get("nnUNet_raw")
    if not nnunet_raw:
        parser.error("nnUNet_raw is not set: export nnUNet_raw=/path/to/nnUNet_raw or pass --nnunet-raw DIR")
    try:
        target = make_dataset(Path(nnunet_raw), args.id, args.cases, tuple(args.shape), args.seed)
    except (FileExistsError, ValueError) as error:
        parser.error(str(error))
    print(f"wrote {args.cases} cases to {target}; next: nnUNetv2_plan_and_preprocess -d {args.id} -c 3d_fullres")


if __name__ == "__main__":
    main()
