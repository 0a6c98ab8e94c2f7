"""Where the time of a real nnU-Net training step goes: waiting for data, the CPU issuing work, the GPU computing.

The trainer is built as ``nnUNetv2_train`` builds it (plans, fold split, nnU-Net's data loaders and augmentation,
torch.compile as the trainer decides), then, after warm-up steps (which include compiling):

- ``step_ms``: nnU-Net's loop, ``train_step(next(dataloader_train))``, per step; ``data_wait_ms`` of it is spent in
  ``next()``, waiting for the augmentation workers;
- ``fixed_batch_ms``: ``train_step`` on one batch over and over, no data loading;
- ``gpu_ms``: the summed duration of the GPU kernels of one fixed-batch step (torch.profiler), ``kernels`` their
  number: ``gpu_busy`` = gpu_ms / fixed_batch_ms says whether the step waits on the GPU (near 1) or on the CPU
  issuing kernels and running Python (far below 1);
- ``val_step_ms``: nnU-Net's validation loop, ``validation_step(next(dataloader_val))``;
- ``epoch_estimate_s``: what an epoch of nnU-Net's defaults would take at these rates (250 training and 50
  validation steps), for comparison with the epoch times of ``scripts/benchmark_pipeline.py``;
- ``top_kernels``: the kernels with the most GPU time, per step.

Each trainer runs in its own process (``python -m nnunetv2_segresmamba.benchmarking.step_profile``), so that one
trainer's compiled code and allocator state cannot affect the next.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from time import perf_counter

import torch

from .measure import device_name

RESULT_MARKER = "STEP_PROFILE_RESULT "
TRAIN_STEPS_PER_EPOCH, VAL_STEPS_PER_EPOCH = 250, 50  # nnU-Net's defaults


def _median_ms(times_s: list[float]) -> float:
    return 1e3 * statistics.median(times_s)


def _kernel_table(profiler, steps: int, top: int) -> tuple[float, int, list[dict]]:
    """GPU milliseconds and kernel launches per step, and the ``top`` kernels by GPU time."""
    kernels = [e for e in profiler.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    total_us = sum(e.device_time for e in kernels) if kernels else 0.0
    by_name: dict[str, list[float]] = {}
    for event in kernels:
        by_name.setdefault(event.name, []).append(event.device_time)
    ranked = sorted(by_name.items(), key=lambda item: -sum(item[1]))[:top]
    table = [{"kernel": name[:90], "ms_per_step": sum(times) / 1e3 / steps, "calls_per_step": len(times) / steps,
              "share": sum(times) / total_us if total_us else 0.0} for name, times in ranked]
    return total_us / 1e3 / steps, round(len(kernels) / steps), table


def profile_trainer(dataset: str, configuration: str, fold: int, trainer_name: str, plans: str,
                    device: torch.device, warmup: int, steps: int, top: int, trace: Path | None) -> dict:
    from nnunetv2.run.run_training import get_trainer_from_args

    if device.type == "cuda":  # as nnUNetv2_train sets them (nnunetv2.run.run_training)
        torch.backends.cudnn.deterministic = False
        torch.backends.cudnn.benchmark = True
    trainer = get_trainer_from_args(dataset, configuration, fold, trainer_name, plans, device=device)
    trainer.on_train_start()
    try:
        trainer.on_train_epoch_start()
        train_loader = trainer.dataloader_train
        for _ in range(warmup):
            trainer.train_step(next(train_loader))

        waits, totals = [], []
        for _ in range(steps):
            start = perf_counter()
            batch = next(train_loader)
            loaded = perf_counter()
            trainer.train_step(batch)  # ends by copying the loss to the CPU: the step has finished on the GPU
            waits.append(loaded - start)
            totals.append(perf_counter() - start)

        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        fixed = []
        for _ in range(steps):
            start = perf_counter()
            trainer.train_step(batch)
            fixed.append(perf_counter() - start)
        peak_gib = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
        reserved_gib = torch.cuda.max_memory_reserved(device) / 2**30 if device.type == "cuda" else None

        activities = [torch.profiler.ProfilerActivity.CPU]
        if device.type == "cuda":
            activities.append(torch.profiler.ProfilerActivity.CUDA)
        profiled_steps = min(steps, 10)
        with torch.profiler.profile(activities=activities) as profiler:
            for _ in range(profiled_steps):
                trainer.train_step(batch)
        gpu_ms, kernels, top_kernels = _kernel_table(profiler, profiled_steps, top) if device.type == "cuda" \
            else (None, None, [])
        if trace is not None:
            trace.parent.mkdir(parents=True, exist_ok=True)
            profiler.export_chrome_trace(str(trace))

        with torch.no_grad():
            trainer.on_validation_epoch_start()
            val_loader = trainer.dataloader_val
            for _ in range(min(warmup, 5)):
                trainer.validation_step(next(val_loader))
            val = []
            for _ in range(steps):
                start = perf_counter()
                trainer.validation_step(next(val_loader))
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                val.append(perf_counter() - start)
    finally:
        for loader in (trainer.dataloader_train, trainer.dataloader_val):
            if hasattr(loader, "_finish"):
                loader._finish()

    row = {"trainer": trainer_name, "compiled": bool(trainer._do_i_compile()), "batch": trainer.batch_size,
           "patch": "x".join(map(str, trainer.configuration_manager.patch_size)),
           "step_ms": _median_ms(totals), "data_wait_ms": _median_ms(waits), "fixed_batch_ms": _median_ms(fixed),
           "gpu_ms": gpu_ms, "kernels": kernels, "val_step_ms": _median_ms(val), "peak_GiB": peak_gib,
           "reserved_GiB": reserved_gib,
           "top_kernels": top_kernels}
    row["gpu_busy"] = gpu_ms / row["fixed_batch_ms"] if gpu_ms is not None else None
    row["epoch_estimate_s"] = (TRAIN_STEPS_PER_EPOCH * row["step_ms"] + VAL_STEPS_PER_EPOCH * row["val_step_ms"]) / 1e3
    return row


def profile_in_subprocess(trainer_name: str, args: argparse.Namespace, log: Path) -> dict:
    """One trainer in a fresh interpreter; its output goes to ``log``; its row, or a row with ``error``."""
    command = [sys.executable, "-m", __name__, args.dataset, trainer_name, "-c", args.configuration,
               "-f", str(args.fold), "-p", args.plans, "--device", args.device, "--warmup", str(args.warmup),
               "--steps", str(args.steps), "--top", str(args.top), "--trace", str(args.out / f"{trainer_name}.json.gz")]
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as handle:
        result = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT, env=dict(os.environ))
    lines = [line for line in log.read_text().splitlines() if line.startswith(RESULT_MARKER)]
    if result.returncode != 0 or not lines:
        tail = log.read_text().splitlines()[-5:]
        return {"trainer": trainer_name, "error": f"exit code {result.returncode}: " + " / ".join(tail)[-400:]}
    return json.loads(lines[-1][len(RESULT_MARKER):])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Profile one trainer's training step (see the module docstring).")
    parser.add_argument("dataset")
    parser.add_argument("trainer")
    parser.add_argument("-c", "--configuration", default="3d_fullres")
    parser.add_argument("-f", "--fold", type=int, default=0)
    parser.add_argument("-p", "--plans", default="nnUNetPlans")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--warmup", type=int, default=15)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--top", type=int, default=12)
    parser.add_argument("--trace", type=Path)
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    row = profile_trainer(args.dataset, args.configuration, args.fold, args.trainer, args.plans, device,
                          args.warmup, args.steps, args.top, args.trace)
    row["device"] = device_name(device)
    print(RESULT_MARKER + json.dumps(row), flush=True)
    # nnU-Net's augmentation workers may linger; the row is out, so end without waiting for them.
    os._exit(0)


if __name__ == "__main__":
    main()
