#!/usr/bin/env python3
"""Compare trainers on one dataset from an nnUNet_results tree: Dice, cost, size, energy.

    python scripts/compare.py --results $nnUNet_results --dataset 4 \\
        --trainers nnUNetTrainer nnUNetTrainerSegResMamba [--plans nnUNetPlans] \\
        [--configuration 3d_fullres] --out comparison_out

Reads what nnU-Net and our trainers already wrote in each fold (validation/summary.json, training logs,
energy.json, and inference_time.json where scripts/time_inference.py or another timing run wrote one),
builds each trainer's network once on the CPU for its parameters and MACs, prints the table and what is
missing, and writes comparison.md/.csv/.json and comparison.png (mean Dice against training memory, as
the paper's Figure 2, and against GPU energy and epoch time; a panel for each that some trainer recorded)
into --out. See nnunetv2_segresmamba/comparison/collect.py for what each figure is taken over and
comparison/inference_time.py for the format of inference_time.json.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from nnunetv2_segresmamba.comparison import collect, markdown, write_outputs  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, required=True, help="the nnUNet_results folder")
    parser.add_argument("--dataset", required=True, help="id (4) or name (Dataset004_Hippocampus, Hippocampus)")
    parser.add_argument("--trainers", nargs="+", default=["nnUNetTrainer", "nnUNetTrainerSegResMamba"])
    parser.add_argument("--plans", default="nnUNetPlans")
    parser.add_argument("--configuration", default="3d_fullres")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    try:
        comparison = collect(args.results, args.dataset, args.trainers, args.plans, args.configuration)
    except FileNotFoundError as error:
        parser.error(str(error))
    print(markdown(comparison))
    missing = [(row["trainer"], row["missing"]) for row in comparison["rows"] if row["missing"]]
    print("Missing:" if missing else "Nothing missing.")
    for trainer, items in missing:
        print(f"  {trainer}: " + "; ".join(items))
    for path in write_outputs(comparison, args.out).values():
        print("wrote", path)


if __name__ == "__main__":
    main()
