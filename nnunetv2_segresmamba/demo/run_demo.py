"""The bundled demo: plan, preprocess, train SegResMamba briefly, predict the validation cases, print Dice.

    nnunetv2-segresmamba-demo [--work-dir DIR] [--device auto|cpu|cuda]

Everything goes through nnU-Net's own commands, exactly as a user would type them.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import torch

from ..nnunet_cli import nnunet_environment, run_nnunet
from ..nnunet_paths import validation_cases

DATASET_ID = 990
DATASET_NAME = "Dataset990_HippocampusDemo"
DATA = Path(__file__).parent / "data" / DATASET_NAME
# The paper's network on a GPU; on a CPU the same architecture, narrower, so that it learns in minutes.
TRAINERS = {"cuda": "nnUNetTrainerSegResMamba_Demo", "cpu": "nnUNetTrainerSegResMamba_DemoCPU"}


def prepare_raw_data(work_dir: Path) -> None:
    target = work_dir / "nnUNet_raw" / DATASET_NAME
    if not target.exists():
        shutil.copytree(DATA, target)


def run_demo(argv: list[str] | None = None) -> dict:
    """The demo; returns nnU-Net's evaluation summary of the validation cases."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work-dir", type=Path, default=Path("segresmamba_demo"))
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--fold", type=int, default=0)
    parser.add_argument("--trainer", default=None, help=f"default by device: {TRAINERS}")
    args = parser.parse_args(argv)

    device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    args.trainer = args.trainer or TRAINERS[device]
    work_dir = args.work_dir.resolve()
    env = nnunet_environment(work_dir)
    prepare_raw_data(work_dir)
    print(f"Demo in {work_dir} on {device} with {args.trainer}", flush=True)

    preprocessed = Path(env["nnUNet_preprocessed"]) / DATASET_NAME / "nnUNetPlans.json"
    if not preprocessed.exists():
        run_nnunet("nnUNetv2_plan_and_preprocess", "-d", DATASET_ID, "-c", "3d_fullres",
                   "--verify_dataset_integrity", "-np", "2", env=env)
    run_nnunet("nnUNetv2_train", DATASET_ID, "3d_fullres", args.fold, "-tr", args.trainer, "-device", device, env=env)

    cases = validation_cases(Path(env["nnUNet_preprocessed"]) / DATASET_NAME, args.fold)
    images = work_dir / "validation_images"
    shutil.rmtree(images, ignore_errors=True)
    images.mkdir()
    raw = Path(env["nnUNet_raw"]) / DATASET_NAME
    for case in cases:
        shutil.copy(raw / "imagesTr" / f"{case}_0000.nii.gz", images)
    predictions = work_dir / "validation_predictions"
    run_nnunet("nnUNetv2_predict", "-i", images, "-o", predictions, "-d", DATASET_ID, "-c", "3d_fullres",
               "-tr", args.trainer, "-f", args.fold, "-device", device, env=env)
    run_nnunet("nnUNetv2_evaluate_folder", raw / "labelsTr", predictions,
               "-djfile", predictions / "dataset.json", "-pfile", predictions / "plans.json", "--chill", env=env)

    summary = json.loads((predictions / "summary.json").read_text())
    labels = {v: k for k, v in json.loads((raw / "dataset.json").read_text())["labels"].items()}
    print("\nDice on the validation cases of fold", args.fold)
    for case in summary["metric_per_case"]:
        name = Path(case["prediction_file"]).name
        print(f"  {name:28s}" + "  ".join(f"{labels[int(k)]} {m['Dice']:.3f}" for k, m in case["metrics"].items()))
    print("  mean:", "  ".join(f"{labels[int(k)]} {m['Dice']:.3f}" for k, m in summary["mean"].items()),
          f"  foreground mean {summary['foreground_mean']['Dice']:.3f}")
    return summary


def main(argv: list[str] | None = None) -> None:
    """Console entry point: a script's return value becomes its exit status, so return nothing."""
    run_demo(argv)


if __name__ == "__main__":
    main()
