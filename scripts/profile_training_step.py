#!/usr/bin/env python3
"""Where a real nnU-Net training step spends its time, SegResMamba against nnU-Net's default.

    python scripts/profile_training_step.py DATASET [--trainers nnUNetTrainer nnUNetTrainerSegResMamba ...]
        [-c 3d_fullres] [-f 0] [--steps 30] [--warmup 15] [--device cuda] [--out step_profile]

DATASET must be planned and preprocessed. Each trainer is built as nnUNetv2_train builds it, in its own process,
and measured per step: nnU-Net's loop with data loading and the time spent waiting for data, the same step on a
fixed batch, the GPU kernel time and kernel count of that step (torch.profiler) and what share of the step the GPU
is busy, the validation step, the GPU time by kind of kernel and the kernels with the most GPU time
(nnunetv2_segresmamba/benchmarking/step_profile.py says how). The first trainer is the baseline of the ratios.
Writes step_profile.json, step_profile.md and a Chrome trace per trainer under --out.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from nnunetv2_segresmamba.benchmarking import step_profile
from nnunetv2_segresmamba.benchmarking.report import add_ratios, markdown_table, write_report

COLUMNS = ["trainer", "compiled", "step_ms", "step_ms_ratio", "data_wait_ms", "fixed_batch_ms",
           "fixed_batch_ms_ratio", "gpu_ms", "gpu_ms_ratio", "kernels", "gpu_busy", "val_step_ms",
           "val_step_ms_ratio", "epoch_estimate_s", "peak_GiB", "peak_GiB_ratio", "reserved_GiB"]
RATIO_KEYS = ["step_ms", "fixed_batch_ms", "gpu_ms", "val_step_ms", "peak_GiB"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", help="dataset name or id, as nnUNetv2_train takes it")
    parser.add_argument("--trainers", nargs="+", default=["nnUNetTrainer", "nnUNetTrainerSegResMamba"],
                        help="the first is the baseline of the ratios")
    parser.add_argument("-c", "--configuration", default="3d_fullres")
    parser.add_argument("-f", "--fold", type=int, default=0)
    parser.add_argument("-p", "--plans", default="nnUNetPlans")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--warmup", type=int, default=15, help="steps before timing (they include compiling)")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--top", type=int, default=12, help="kernels listed per trainer")
    parser.add_argument("--out", type=Path, default=Path("step_profile"))
    args = parser.parse_args()

    rows = []
    for trainer in args.trainers:
        print(f"profiling {trainer} ...", flush=True)
        rows.append(step_profile.profile_in_subprocess(trainer, args, args.out / "logs" / f"{trainer}.log"))
    measured = [row for row in rows if "error" not in row]
    if measured and measured[0]["trainer"] == args.trainers[0]:
        add_ratios(measured, {"trainer": args.trainers[0]}, RATIO_KEYS, [])
    device = next((row["device"] for row in measured), args.device)
    columns = COLUMNS + (["error"] if len(measured) < len(rows) else [])
    text = write_report(args.out, "step_profile", device, rows, columns)
    kinds = list(dict.fromkeys(kind for row in measured for kind in row.get("kernel_kinds", {})))
    if kinds:
        text += "\n\nGPU milliseconds per step by kind of kernel\n\n"
        per_kind = [{"kind": kind, **{row["trainer"]: row["kernel_kinds"].get(kind, 0.0) for row in measured}}
                    for kind in kinds]
        text += markdown_table(per_kind, ["kind", *(row["trainer"] for row in measured)])
    for row in (row for row in measured if row["top_kernels"]):
        text += f"\n\nTop kernels of {row['trainer']} (per step)\n\n"
        text += markdown_table(row["top_kernels"], ["kernel", "ms_per_step", "calls_per_step", "share"])
    (args.out / "step_profile.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
