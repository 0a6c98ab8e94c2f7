"""BTCV (Synapse multi-organ CT, MICCAI 2015 "Multi-Atlas Labeling Beyond the Cranial Vault") into nnU-Net v2.

    python -m nnunetv2_segresmamba.dataset_conversion.btcv RAW_DIR --id 101 [--nnunet-raw DIR] \\
        [--split [--test-cases 35 36 37 38 39 40]]

RAW_DIR is the unpacked download (Synapse project syn3193805, registration required), holding
``RawData/Training/img/imgXXXX.nii.gz`` and ``RawData/Training/label/labelXXXX.nii.gz``: 30 labelled
abdominal CTs with 13 organs. They become ``DatasetNNN_BTCV`` in nnUNet_raw (``--nnunet-raw`` or the
environment variable): ``imagesTr/btcv_XXXX_0000.nii.gz``, ``labelsTr/btcv_XXXX.nii.gz``, dataset.json
and, with ``--split``, splits_final.json.
Files are copied byte for byte: nnU-Net resamples during preprocessing, so doing it here would only lose
information. ``RawData/Testing`` has no labels and is not converted. ``nnUNetv2_plan_and_preprocess
--verify_dataset_integrity`` then checks geometry and label values.

The paper's split
-----------------
The paper trains on 24 volumes and tests on 6, but does not publish which 6. ``--split`` writes a
``splits_final.json`` with that single split into the converted dataset, ``nnUNet_raw/DatasetNNN_BTCV/``.
nnU-Net's experiment planner (``nnUNetv2_plan_and_preprocess`` or ``nnUNetv2_plan_experiment``) copies a
raw dataset's ``splits_final.json`` into ``nnUNet_preprocessed/DatasetNNN_BTCV/``, where training reads it;
so plan after converting. (If that folder already has a different splits_final.json, from an earlier
training, the planner's check fails: delete that file first.) Then ``nnUNetv2_train NNN 3d_fullres 0``
trains on the 24 and validates on the 6. The file holds fold 0 only: train fold 0 alone, the paper's
protocol. For folds 1-4 nnU-Net would make random 80:20 splits of its own (saying so only in an INFO
line of the training log), so a 5-fold cross-validation (nnU-Net's protocol) must be run without
``--split``. The 6 test cases are ``--test-cases`` if given; otherwise the last 6 by case number. That
default is our documented choice, not the authors' list: report it with results.

Other datasets of the paper (no converter here: nnU-Net has them)
-----------------------------------------------------------------
MSD Spleen (Task09): ``nnUNetv2_convert_MSD_dataset -i /path/to/Task09_Spleen`` (add ``-overwrite_id N``
to pick the id). The paper reports 41 training / 20 test volumes: MSD's 41 labelled ``imagesTr`` and its
20 ``imagesTs`` (MSD does not publish their labels); nnU-Net's conversion copies both folders as they are.
BraTS 2021 (1251 cases, 4 MRI channels): nnU-Net's ``nnunetv2/dataset_conversion/Dataset137_BraTS21.py``
(edit the source path at its bottom and run it with python). The paper uses 5-fold cross-validation,
which is nnU-Net's default split: train folds 0-4 and no split file is needed.
"""

from __future__ import annotations

from . import raw_dataset_folder

import argparse
import json
import os
import re
import shutil
from pathlib import Path

ORGANS = {1: "spleen", 2: "right_kidney", 3: "left_kidney", 4: "gallbladder", 5: "esophagus", 6: "liver",
          7: "stomach", 8: "aorta", 9: "inferior_vena_cava", 10: "portal_vein_and_splenic_vein",
          11: "pancreas", 12: "right_adrenal_gland", 13: "left_adrenal_gland"}
FILE_ENDING = ".nii.gz"
PAPER_TEST_CASES = 6
CASE_NUMBER = re.compile(r"(\d+)")


def dataset_name(dataset_id: int) -> str:
    return f"Dataset{dataset_id:03d}_BTCV"


def case_identifier(number: str) -> str:
    return f"btcv_{number}"


def find_training_folder(raw_dir: Path) -> Path:
    """The folder holding ``img/`` and ``label/``: RAW_DIR/RawData/Training, or RAW_DIR pointing lower."""
    for candidate in (raw_dir / "RawData" / "Training", raw_dir / "Training", raw_dir):
        if (candidate / "img").is_dir() and (candidate / "label").is_dir():
            return candidate
    raise FileNotFoundError(f"no RawData/Training/img and RawData/Training/label under {raw_dir}")


def training_cases(training_folder: Path) -> dict[str, tuple[Path, Path]]:
    """Case number ("0001") -> (image, label), sorted by number. Every image needs its label and back."""
    def numbered(folder: Path, prefix: str) -> dict[str, Path]:
        pattern = re.compile(rf"{prefix}(\d+){re.escape(FILE_ENDING)}$")
        return {m.group(1): path for path in folder.iterdir() if (m := pattern.match(path.name))}

    images, labels = numbered(training_folder / "img", "img"), numbered(training_folder / "label", "label")
    unmatched = sorted(set(images) ^ set(labels))
    if unmatched:
        raise FileNotFoundError(f"images and labels do not pair up in {training_folder}: case(s) "
                                f"{', '.join(unmatched)} have only one of img{{n}}{FILE_ENDING} / label{{n}}{FILE_ENDING}")
    if not images:
        raise FileNotFoundError(f"no img*{FILE_ENDING} in {training_folder / 'img'}")
    return {n: (images[n], labels[n]) for n in sorted(images, key=int)}


def dataset_json(num_training: int) -> dict:
    return {
        "channel_names": {"0": "CT"},
        "labels": {"background": 0, **{name: value for value, name in ORGANS.items()}},
        "numTraining": num_training,
        "file_ending": FILE_ENDING,
        "name": "BTCV",
        "description": "Multi-Atlas Labeling Beyond the Cranial Vault (Synapse multi-organ), the 30 labelled "
                       "abdominal CTs, copied unchanged",
        "reference": "Landman et al. 2015, MICCAI Multi-Atlas Labeling Beyond the Cranial Vault - Workshop "
                     "and Challenge, doi:10.7303/syn3193805",
        "licence": "the terms of Synapse project syn3193805",
    }


def convert(raw_dir: Path, dataset_id: int, nnunet_raw: Path) -> Path:
    """Copy the 30 labelled cases into ``nnunet_raw/DatasetNNN_BTCV`` and write dataset.json; returns the folder.
    Re-running overwrites the same files; another dataset with the same id is refused (nnU-Net would be
    unable to tell them apart)."""
    cases = training_cases(find_training_folder(Path(raw_dir)))
    target = raw_dataset_folder(nnunet_raw, dataset_name(dataset_id), dataset_id)
    for number, (image, label) in cases.items():
        shutil.copyfile(image, target / "imagesTr" / f"{case_identifier(number)}_0000{FILE_ENDING}")
        shutil.copyfile(label, target / "labelsTr" / f"{case_identifier(number)}{FILE_ENDING}")
    (target / "dataset.json").write_text(json.dumps(dataset_json(len(cases)), indent=4))
    return target


def paper_split(identifiers: list[str], test_cases: list[str | int] | None = None) -> list[dict[str, list[str]]]:
    """One nnU-Net split (``splits_final.json`` content, fold 0): the test cases as "val", the rest as
    "train". ``test_cases`` are case numbers or identifiers (35, "0035", "btcv_0035"); by default the last
    6 by case number, our documented stand-in for the paper's unpublished list."""
    def number(case: str | int) -> int | None:
        found = CASE_NUMBER.search(str(case))
        return int(found.group(1)) if found else None

    by_number = {number(i): i for i in identifiers}
    if test_cases is None:
        chosen = sorted(by_number)[-PAPER_TEST_CASES:]
    else:
        unknown = [str(c) for c in test_cases if number(c) not in by_number]
        if unknown:
            raise ValueError(f"test case(s) {', '.join(unknown)} are not among the converted cases")
        chosen = [number(c) for c in test_cases]
    val = [by_number[n] for n in sorted(set(chosen))]
    train = [by_number[n] for n in sorted(by_number) if by_number[n] not in val]
    if not train or not val:
        raise ValueError("the split needs at least one training and one test case")
    return [{"train": train, "val": val}]


def write_split(split: list[dict[str, list[str]]], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(split, indent=4))
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m nnunetv2_segresmamba.dataset_conversion.btcv",
                                     description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("raw_dir", type=Path, help="the unpacked download, holding RawData/Training/{img,label}")
    parser.add_argument("--id", type=int, default=101, help="nnU-Net dataset id (default 101)")
    parser.add_argument("--nnunet-raw", type=Path, default=None, help="default: $nnUNet_raw")
    parser.add_argument("--split", action="store_true",
                        help="also write the paper's 24/6 split (fold 0 only; train fold 0 alone) to "
                             "DatasetNNN_BTCV/splits_final.json in nnUNet_raw, which nnU-Net's planner copies "
                             "into nnUNet_preprocessed: run nnUNetv2_plan_and_preprocess afterwards")
    parser.add_argument("--test-cases", nargs="+", default=None,
                        help="the test cases of --split (numbers or btcv_XXXX); default: the last 6 by number")
    args = parser.parse_args(argv)

    nnunet_raw = args.nnunet_raw or os.environ.get("nnUNet_raw")
    if not nnunet_raw:
        parser.error("nnUNet_raw is not set: export nnUNet_raw=/path/to/nnUNet_raw or pass --nnunet-raw DIR")
    try:
        target = convert(args.raw_dir, args.id, Path(nnunet_raw))
        identifiers = sorted(p.name[: -len(FILE_ENDING)] for p in (target / "labelsTr").glob(f"*{FILE_ENDING}"))
        print(f"wrote {len(identifiers)} cases to {target}")
        if args.split:
            split = paper_split(identifiers, args.test_cases)
            path = write_split(split, target / "splits_final.json")
            print(f"wrote {path}: {len(split[0]['train'])} training, test (fold 0 validation): "
                  f"{', '.join(split[0]['val'])}. nnUNetv2_plan_and_preprocess copies it into "
                  f"nnUNet_preprocessed; train fold 0 only (folds 1-4 would get random splits)")
        elif (target / "splits_final.json").exists():
            print(f"note: {target / 'splits_final.json'} is left from an earlier --split; nnU-Net's planner "
                  "will copy it. Delete it for nnU-Net's own 5-fold split")
    except (FileNotFoundError, FileExistsError, ValueError) as error:
        parser.error(str(error))


if __name__ == "__main__":
    main()
