#!/usr/bin/env python3
"""Training speed where users feel it: ``nnUNetv2_train`` epoch time, SegResMamba against nnU-Net's default.

    python scripts/benchmark_pipeline.py DATASET [--configuration 3d_fullres] [--trainers A B ...] [--out DIR]

Trains fold 0 of DATASET (planned and preprocessed already) with each trainer in turn, on the GPU that
CUDA_VISIBLE_DEVICES names, with nnU-Net's own 5-epoch benchmark recipe (nnUNetTrainerBenchmark_5epochs: no
checkpoints, no final validation). Default trainers: nnUNetTrainerBenchmarkPipeline_5epochs (nnU-Net's
default network, compiled as nnU-Net compiles it) and nnUNetTrainerSegResMambaBenchmark_5epochs. Reports,
over the epochs after the first: median epoch time, mean GPU utilisation, peak memory allocated by PyTorch,
each also as a ratio to the first trainer. Writes pipeline.json and pipeline.md under --out.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from nnunetv2_segresmamba.benchmarking import pipeline


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", help="dataset name or id, as nnUNetv2_train takes it")
    parser.add_argument("--configuration", default="3d_fullres")
    parser.add_argument("--plans", default="nnUNetPlans")
    parser.add_argument("--trainers", nargs="+", default=list(pipeline.DEFAULT_TRAINERS),
                        help="the first is the baseline of the ratios")
    parser.add_argument("--out", type=Path, default=Path("bench_out"))
    args = parser.parse_args()
    report = pipeline.run(args.dataset, args.configuration, args.trainers, args.plans, args.out / "logs")
    print(pipeline.write(report, args.out))


if __name__ == "__main__":
    main()
