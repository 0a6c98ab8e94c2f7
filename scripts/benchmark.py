#!/usr/bin/env python3
"""Speed and memory of SegResMamba against nnU-Net's own networks, on one device, in one run.

    python scripts/benchmark.py networks [--case 128,128,128:14:1] [--compile none default] [--out DIR]
    python scripts/benchmark.py tom [--sizes 64:48 8:384] [--backends triton cuda torch] [--dtypes fp32 fp16]
    python scripts/benchmark.py predict --device cpu [--repeats 3]
    python scripts/benchmark.py scan [--case 40,56,40:3:7] [--settings default CHUNK=64,FORWARD_WARPS=4 ...]

``networks``: for each case PATCH:CLASSES:BATCH (default: 128^3 with 14 classes at batch 1, the paper's
setting, and the Hippocampus plan's 40x56x40 with 3 classes at batch 7) builds PlainConvUNet, ResEnc M and
SegResMamba from the same nnU-Net topology and measures, each network in a fresh process: parameters,
forward MACs, activations kept for backward (uncompiled rows), training step time (nnU-Net's step: fp16
autocast + GradScaler + SGD + gradient clipping, deep supervision on; median over --repeats steps after
--warmup steps, which include compiling), steady-state training peak memory (what PyTorch's allocator handed
out over three warmed-up steps: weights, gradients, momentum, activations, workspaces), and inference latency
(batch 1, autocast, inference_mode). ``--compile`` lists torch.compile modes to measure ("none" = eager,
"default" = torch.compile(net) as nnU-Net does); ratios are against PlainConvUNet compiled the same way, or
with ``--baseline-compile default`` against PlainConvUNet as nnU-Net trains it.
``tom``: one Tri-oriented Mamba layer, forward + backward, per scan backend, as ratios to the first backend.
``scan``: the Triton scan kernels alone, at every scan of one SegResMamba training step for the first --case
(default: the Hippocampus plan), under kernel settings (constants of ssm/kernels/triton_scan.py), as ratios to
the first setting (``--by-scan``: one row per setting and scan).
``predict``: one real Hippocampus case through the whole ``nnUNetv2_predict``, SegResMamba against
nnUNetTrainer. Writes JSON and markdown (and a plot for ``networks``) under --out and prints the table; every
table names the device.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from nnunetv2_segresmamba.benchmarking.baselines import NETWORKS
from nnunetv2_segresmamba.benchmarking import networks, scan_kernels, tom
from nnunetv2_segresmamba.benchmarking.measure import device_name
from nnunetv2_segresmamba.benchmarking.report import add_ratios, plot_networks, write_report


def parse_case(value: str) -> networks.Case:
    """'128,128,128:14:1' -> Case((128, 128, 128), 14, 1)."""
    patch, classes, batch = value.split(":")
    return networks.Case(tuple(map(int, patch.split(","))), int(classes), int(batch))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=("networks", "tom", "scan", "predict"))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--case", dest="cases", action="append", type=parse_case,
                        help="PATCH:CLASSES:BATCH, e.g. 128,128,128:14:1 (repeatable)")
    parser.add_argument("--networks", nargs="+", default=list(NETWORKS), choices=list(NETWORKS))
    parser.add_argument("--compile", nargs="+", default=["none"], choices=networks.COMPILE_MODES)
    parser.add_argument("--baseline-compile", choices=networks.COMPILE_MODES, default=None)
    parser.add_argument("--sizes", nargs="+", default=["64:48", "8:384"], help="SIDE:CHANNELS of a ToM input")
    parser.add_argument("--backends", nargs="+", default=["triton", "cuda", "torch"])
    parser.add_argument("--dtypes", nargs="+", default=["fp32"], choices=["fp32", "fp16"])
    parser.add_argument("--batch", type=int, default=1, help="tom: batch size")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed repeats (default 20; predict: whole nnUNetv2_predict runs, default 3)")
    parser.add_argument("--trainers", nargs="+", default=["nnUNetTrainer", "nnUNetTrainerSegResMamba"],
                        help="predict: nnU-Net trainer names, the first is the baseline")
    parser.add_argument("--settings", nargs="+", default=["default"],
                        help="scan: kernel settings NAME=VALUE[,NAME=VALUE...] or default; the first is the baseline")
    parser.add_argument("--by-scan", action="store_true", help="scan: a row per scan, not their sums")
    parser.add_argument("--out", type=Path, default=Path("bench_out"))
    args = parser.parse_args()
    if args.repeats is None:
        args.repeats = 3 if args.what == "predict" else 20
    device = torch.device(args.device)
    torch.backends.cudnn.benchmark = True

    if args.what == "networks":
        cases = args.cases or [networks.Case((128, 128, 128), 14, 1), networks.Case((40, 56, 40), 3, 7)]
        rows = networks.run(cases, args.networks, args.compile, args.device, args.warmup, args.repeats,
                            args.baseline_compile)
        columns = networks.COLUMNS
    elif args.what == "tom":
        rows = tom.run(args.sizes, args.backends, args.dtypes, args.batch, device, args.warmup, args.repeats)
        columns = tom.COLUMNS
    elif args.what == "scan":
        case = (args.cases or [networks.Case((40, 56, 40), 3, 7)])[0]
        rows = scan_kernels.run(case.patch, case.classes, case.batch, args.settings, device, args.by_scan)
        columns = scan_kernels.BY_SCAN_COLUMNS if args.by_scan else scan_kernels.COLUMNS
    else:
        from nnunetv2_segresmamba.benchmarking.predict_timing import time_predict  # needs nnU-Net's CLI
        rows = time_predict(args, device)
        add_ratios(rows, {"trainer": args.trainers[0]}, ["predict_s"], ["tta"])
        columns = ["trainer", "case", "patch", "tta", "repeats", "predict_s", "predict_s_ratio", "min_s"]
    print(write_report(args.out, args.what, device_name(device), rows, columns))
    if args.what == "networks":
        plot_networks(rows, args.out / "networks.png")


if __name__ == "__main__":
    main()
