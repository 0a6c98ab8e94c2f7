#!/usr/bin/env python3
"""Data-parallel SegResMamba: step time and memory per GPU for 1 vs N GPUs at the same global batch.

    python scripts/benchmark_ddp.py [--gpus 1 2] [--global-batch 8] [--patch 40 56 40] [--out DIR]

For each world size, one process per GPU (NCCL, DistributedDataParallel as nnU-Net wraps it), each rank
with global_batch / world_size samples and nnU-Net's training step as scripts/benchmark.py times it (fp16 autocast + GradScaler
+ SGD + clipping, deep supervision weighted as nnU-Net weights it under DDP); the median
step time over the timed steps and each rank's peak memory. Ratios are against the first world size.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from nnunetv2_segresmamba.benchmarking.baselines import nnunet_topology, segresmamba
from nnunetv2_segresmamba.benchmarking.measure import device_name, timed, training_step
from nnunetv2_segresmamba.benchmarking.report import markdown_table


def worker(rank: int, world: int, args, port: int, results) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    on_gpu = args.device == "cuda"
    dist.init_process_group("nccl" if on_gpu else "gloo", rank=rank, world_size=world)
    device = torch.device("cuda", rank) if on_gpu else torch.device("cpu")
    if on_gpu:
        torch.cuda.set_device(device)
    torch.manual_seed(0)
    topology = nnunet_topology(args.patch)
    net = torch.nn.parallel.DistributedDataParallel(segresmamba(topology, 1, args.classes).to(device),
                                                    device_ids=[rank] if on_gpu else None)
    batch = args.global_batch // world + (rank < args.global_batch % world)
    step, _, _ = training_step(net, topology.patch_size, args.classes, batch, device, ddp=True)
    step()
    if on_gpu:
        torch.cuda.reset_peak_memory_stats(device)
    ms = timed(step, device, args.warmup, args.repeats)
    peak = torch.cuda.max_memory_allocated(device) / 2 ** 30 if on_gpu else None
    gathered = [None] * world
    dist.all_gather_object(gathered, dict(rank=rank, batch=batch, step_ms=ms, peak_GiB=peak))
    if rank == 0:
        results.put(gathered)
    dist.destroy_process_group()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gpus", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--global-batch", type=int, default=8)
    parser.add_argument("--patch", nargs=3, type=int, default=[40, 56, 40])
    parser.add_argument("--classes", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--out", type=Path, default=Path("bench_out"))
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda",
                        help="cpu runs the same DDP code over gloo: a correctness smoke run, not a benchmark")
    args = parser.parse_args()
    on_gpu = args.device == "cuda"
    rows = []
    context = mp.get_context("spawn")
    for port, world in enumerate(args.gpus, start=29511):
        if on_gpu and world > torch.cuda.device_count():
            print(f"skipping {world} GPUs: only {torch.cuda.device_count()} visible")
            continue
        results = context.SimpleQueue()
        mp.start_processes(worker, args=(world, args, port, results), nprocs=world, join=True, start_method="spawn")
        ranks = results.get()
        step_ms = max(r["step_ms"] for r in ranks)  # the step ends when the slowest rank ends
        rows.append(dict(gpus=world, batch_per_gpu="/".join(str(r["batch"]) for r in ranks), step_ms=step_ms,
                         samples_per_s=args.global_batch / step_ms * 1e3,
                         peak_GiB_per_gpu=max(r["peak_GiB"] for r in ranks) if on_gpu else None))
    base = rows[0]
    for row in rows:
        row["step_ms_ratio"] = row["step_ms"] / base["step_ms"]
        if on_gpu:
            row["peak_GiB_ratio"] = row["peak_GiB_per_gpu"] / base["peak_GiB_per_gpu"]
    meta = dict(device=device_name(torch.device(args.device, 0)), torch=torch.__version__, command=" ".join(sys.argv),
                global_batch=args.global_batch, patch=args.patch, date=time.strftime("%Y-%m-%d %H:%M"))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ddp.json").write_text(json.dumps(dict(meta=meta, rows=rows), indent=1))
    columns = ["gpus", "batch_per_gpu", "step_ms", "step_ms_ratio", "samples_per_s", "peak_GiB_per_gpu",
               "peak_GiB_ratio"]
    table = (f"Device: {max(r['gpus'] for r in rows)} x {meta['device']}; global batch {args.global_batch}; patch "
             f"{args.patch}; `{meta['command']}`\n\n" + markdown_table(rows, columns))
    (args.out / "ddp.md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
