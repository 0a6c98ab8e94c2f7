#!/usr/bin/env python3
"""Cross-validation Dice of trainers from an nnUNet_results tree, and the paired difference against the first.

    python scripts/cross_validation.py --results $nnUNet_results --dataset 4 \\
        --trainers nnUNetTrainerEnergy_50epochs nnUNetTrainerSegResMamba_50epochs [--out cv.json]

Reads each fold's validation/summary.json (nnU-Net's evaluation) and debug.json; prints a markdown table
(mean of the five folds' mean foreground Dice, each fold's, the paired per-case difference against the first
trainer with its standard error) and writes the JSON to --out. See nnunetv2_segresmamba/comparison/
cross_validation.py for what each figure is.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from nnunetv2_segresmamba.comparison import cross_validation  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, required=True, help="the nnUNet_results folder")
    parser.add_argument("--dataset", required=True, help="id (4) or name (Dataset004_Hippocampus, Hippocampus)")
    parser.add_argument("--trainers", nargs="+", required=True, help="the first is the baseline of the differences")
    parser.add_argument("--plans", default="nnUNetPlans")
    parser.add_argument("--configuration", default="3d_fullres")
    parser.add_argument("--out", type=Path, default=None, help="JSON file to write")
    args = parser.parse_args()
    try:
        result = cross_validation.cross_validation(args.results, args.dataset, args.trainers, args.plans,
                                                   args.configuration)
    except FileNotFoundError as error:
        parser.error(str(error))
    command = "scripts/cross_validation.py --dataset " + str(args.dataset) + " --trainers " + " ".join(args.trainers)
    result = {"device": result.pop("device"), "dataset": result.pop("dataset"), "command": command, **result}
    print(cross_validation.markdown(result))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
