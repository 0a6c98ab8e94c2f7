#!/usr/bin/env python3
"""Time nnUNetv2_predict on a trained fold's validation cases, per device, for scripts/compare.py.

    python scripts/time_inference.py DATASET TRAINER [-f 0] [--devices cuda cpu] [--tta]
                                     [-p nnUNetPlans] [-c 3d_fullres]

With nnU-Net's folders set (nnUNet_raw, nnUNet_preprocessed, nnUNet_results): predicts the fold's
validation cases (splits_final.json) from its checkpoint_final.pth once per device, without test-time
mirroring unless --tta, evaluates each prediction, and writes the wall times into the fold's
inference_time.json, which scripts/compare.py shows as "inference (s/case)" (the first device listed).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from nnunetv2_segresmamba.benchmarking.inference_time import time_fold_inference  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", help="id (4) or name (Dataset004_Hippocampus)")
    parser.add_argument("trainer")
    parser.add_argument("-f", "--fold", type=int, default=0)
    parser.add_argument("--devices", nargs="+", default=["cuda"], choices=["cuda", "cpu", "mps"],
                        help="nnUNetv2_predict's -device, one timed run each (default: cuda)")
    parser.add_argument("--tta", action="store_true", help="keep nnU-Net's mirroring test-time augmentation")
    parser.add_argument("-p", "--plans", default="nnUNetPlans")
    parser.add_argument("-c", "--configuration", default="3d_fullres")
    args = parser.parse_args()
    try:
        record = time_fold_inference(args.dataset, args.trainer, args.fold, args.devices, args.plans,
                                     args.configuration, args.tta)
    except (FileNotFoundError, ValueError, RuntimeError) as error:
        parser.error(str(error))
    for run in record["runs"]:
        print(f"{run['torch_device']} ({run['device']}): {run['cases']} cases in {run['seconds']} s, "
              f"mean Dice {run['mean_dice']}")


if __name__ == "__main__":
    main()
