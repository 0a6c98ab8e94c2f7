#!/usr/bin/env python3
"""Speed and memory of SegResMamba against nnU-Net's own networks, on one device, in one run.

    python scripts/benchmark.py networks [--patch 128 128 128 --classes 14] [--out docs/bench]
    python scripts/benchmark.py tom [--sizes 64:48 8:384] [--backends cuda torch]
    python scripts/benchmark.py predict --device cpu [--repeats 3]

``networks``: for each patch (default: 128^3 with 14 classes, and the Hippocampus plan's 40x56x40 with
3 classes) builds PlainConvUNet, ResEnc M and SegResMamba from the same nnU-Net topology and reports
parameters, forward MACs, activations kept for backward, training peak memory and step time (fp16 autocast + GradScaler + SGD, deep
supervision on, median over timed steps after warm-up), and inference latency (autocast, inference_mode),
each also as a ratio to PlainConvUNet. ``tom``: one Tri-oriented Mamba layer, forward + backward, per
scan backend, as a ratio to the first backend listed. ``predict``: one real Hippocampus case through the
whole ``nnUNetv2_predict`` (see scripts/predict_timing.py), SegResMamba against nnUNetTrainer. Writes JSON and markdown (and a PNG plot for
``networks``) under --out and prints the table; every table names the device.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from nnunetv2_segresmamba import ssm  # noqa: E402
from nnunetv2_segresmamba.baselines import NETWORKS, nnunet_topology  # noqa: E402
from nnunetv2_segresmamba.network import TriOrientedMamba  # noqa: E402
from nnunetv2_segresmamba.network.complexity import bytes_saved_for_backward, count_macs, count_parameters  # noqa: E402


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device, warmup: int, repeats: int) -> float:
    """Median wall time of fn() in ms, the device synchronised around each call."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def peak_memory_of(fn, device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    fn()
    synchronize(device)
    return torch.cuda.max_memory_allocated(device) / 2 ** 30


def deep_supervision_loss(outputs, target: torch.Tensor, ddp: bool = False) -> torch.Tensor:
    """CE over each output against the target resized to it, weighted 1, 1/2, 1/4, ... as nnU-Net does.

    nnU-Net zeroes the lowest-resolution output's weight; under DDP it uses 1e-6 instead, because
    DistributedDataParallel fails on parameters (that head) that get no gradient.
    """
    outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
    weights = [0.5 ** i for i in range(len(outputs))]
    if len(weights) > 1:
        weights[-1] = 1e-6 if ddp else 0.0
    total = 0.0
    for out, weight in zip(outputs, weights):
        if weight:
            small = F.interpolate(target[:, None].float(), size=out.shape[2:], mode="nearest")[:, 0].long()
            total = total + weight * F.cross_entropy(out.float(), small)
    return total / sum(weights)


def training_step(net, topology, classes: int, batch: int, device: torch.device, ddp: bool = False):
    """nnU-Net's training step on random data: fp16 autocast + GradScaler on CUDA, SGD (momentum 0.99,
    Nesterov), gradient clipping at 12, deep supervision (``ddp``: weighted as under DDP). Returns
    (step, input, autocast kwargs)."""
    optimizer = torch.optim.SGD(net.parameters(), lr=1e-2, momentum=0.99, nesterov=True)
    scaler = torch.amp.GradScaler(device.type, enabled=device.type == "cuda")
    x = torch.randn(batch, 1, *topology.patch_size, device=device)
    target = torch.randint(0, classes, (batch, *topology.patch_size), device=device)
    amp = dict(device_type=device.type, dtype=torch.float16, enabled=device.type == "cuda")

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(**amp):
            loss = deep_supervision_loss(net(x), target, ddp=ddp)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(net.parameters(), 12)
        scaler.step(optimizer)
        scaler.update()

    return step, x, amp


def bench_network(name, topology, classes, batch, device, warmup, repeats) -> dict:
    torch.manual_seed(0)
    net = NETWORKS[name](topology, 1, classes)
    row = dict(network=name, patch="x".join(map(str, topology.patch_size)), batch=batch,
               params_M=count_parameters(net) / 1e6,
               gmacs=count_macs(net, (1, 1, *topology.patch_size)) / 1e9)
    net = net.to(device)
    train_step, x, amp = training_step(net, topology, classes, batch, device)
    train_step()
    with torch.autocast(**amp):
        # Activations autograd keeps for backward: the device-independent part of the training memory.
        row["saved_for_bwd_GiB"] = bytes_saved_for_backward(lambda: net(x))[1] / 2 ** 30
    row["train_peak_GiB"] = peak_memory_of(train_step, device)
    row["train_step_ms"] = timed(train_step, device, warmup, repeats)
    net.eval()
    _set_deep_supervision(net, False)
    x1 = x[:1]

    def infer():
        with torch.inference_mode(), torch.autocast(**amp):
            net(x1)

    row["inference_ms"] = timed(infer, device, warmup, repeats)
    return row  # the network's memory goes with this frame; peak_memory_of empties the cache first


def _set_deep_supervision(net, enabled: bool) -> None:
    if hasattr(net, "decoder") and hasattr(net.decoder, "deep_supervision"):
        net.decoder.deep_supervision = enabled


def add_ratios(rows: list[dict], baseline_key: str, keys: list[str], group_keys: list[str]) -> None:
    for row in rows:
        base = next(r for r in rows if r[baseline_key[0]] == baseline_key[1]
                    and all(r[g] == row[g] for g in group_keys))
        for key in keys:
            if row.get(key) is not None and base.get(key):
                row[f"{key}_ratio"] = row[key] / base[key]


def markdown_table(rows: list[dict], columns: list[str]) -> str:
    def fmt(v):
        return f"{v:.3g}" if isinstance(v, float) else str(v)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def plot_networks(rows: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    # Off CUDA there is no allocator peak: plot the activations kept for backward instead.
    memory = "train_peak_GiB" if all(row.get("train_peak_GiB") is not None for row in rows) else "saved_for_bwd_GiB"
    fig, ax = plt.subplots(figsize=(7, 5))
    for row in rows:
        ax.scatter(row["train_step_ms"], row[memory], s=row["gmacs"] * 3, alpha=0.5)
        ax.annotate(f"{row['network']}\n{row['patch']} b{row['batch']}", (row["train_step_ms"], row[memory]),
                    fontsize=7)
    ax.set_xlabel("training step (ms)")
    ax.set_ylabel("training peak memory (GiB)" if memory == "train_peak_GiB" else "activations kept for backward (GiB)")
    ax.set_title("bubble area ~ forward GMACs")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def run_networks(args, device) -> tuple[list[dict], list[str]]:
    rows = []
    for patch, classes, batches in args.cases:
        topology = nnunet_topology(patch)
        for batch in batches:
            for name in args.networks:
                print(f"[networks] {name} patch {patch} batch {batch}", flush=True)
                rows.append(bench_network(name, topology, classes, batch, device, args.warmup, args.repeats))
    keys = ["params_M", "gmacs", "saved_for_bwd_GiB", "train_peak_GiB", "train_step_ms", "inference_ms"]
    add_ratios(rows, ("network", "PlainConvUNet"), keys, ["patch", "batch"])
    columns = ["network", "patch", "batch"] + [c for k in keys for c in (k, f"{k}_ratio")]
    return rows, columns


def run_tom(args, device) -> tuple[list[dict], list[str]]:
    rows = []
    for spec in args.sizes:
        side, channels = map(int, spec.split(":"))
        for backend in args.backends:
            os.environ[ssm.BACKEND_ENV] = backend
            torch.manual_seed(0)
            tom = TriOrientedMamba(channels).to(device)
            dtype = torch.float64 if backend == "reference" else torch.float32
            tom = tom.to(dtype)
            x = torch.randn(1, channels, side, side, side, device=device, dtype=dtype, requires_grad=True)

            def step():
                tom.zero_grad(set_to_none=True)
                tom(x).square().mean().backward()

            repeats = 1 if backend == "reference" else args.repeats
            warmup = 0 if backend == "reference" else args.warmup
            print(f"[tom] {side}^3 x {channels} on {backend}", flush=True)
            row = dict(tokens=f"{side}^3", channels=channels, backend=backend, dtype=str(dtype).split(".")[-1],
                       fwd_bwd_ms=timed(step, device, warmup, repeats))
            row["peak_GiB"] = peak_memory_of(step, device)
            rows.append(row)
    add_ratios(rows, ("backend", args.backends[0]), ["fwd_bwd_ms", "peak_GiB"], ["tokens", "channels"])
    return rows, ["tokens", "channels", "backend", "dtype", "fwd_bwd_ms", "fwd_bwd_ms_ratio", "peak_GiB",
                  "peak_GiB_ratio"]


def run_predict(args, device) -> tuple[list[dict], list[str]]:
    from nnunetv2_segresmamba.benchmarking.predict_timing import time_predict  # only this mode runs nnU-Net's CLI
    rows = time_predict(args, device)
    add_ratios(rows, ("trainer", args.trainers[0]), ["predict_s"], ["tta"])
    return rows, ["trainer", "case", "patch", "tta", "repeats", "predict_s", "predict_s_ratio", "min_s"]


def parse_cases(values: list[str] | None) -> list:
    """'128,128,128:14:1' -> ((128, 128, 128), 14, [1])."""
    if not values:
        return [((128, 128, 128), 14, [1]), ((40, 56, 40), 3, [1, 9])]
    cases = []
    for value in values:
        patch, classes, batches = value.split(":")
        cases.append((tuple(map(int, patch.split(","))), int(classes), [int(b) for b in batches.split(",")]))
    return cases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=("networks", "tom", "predict"))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--case", dest="cases", action="append",
                        help="PATCH:CLASSES:BATCHES, e.g. 128,128,128:14:1 (repeatable)")
    parser.add_argument("--networks", nargs="+", default=list(NETWORKS))
    parser.add_argument("--sizes", nargs="+", default=["64:48", "8:384"], help="SIDE:CHANNELS of a ToM input")
    parser.add_argument("--backends", nargs="+", default=["cuda", "torch"])
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed repeats (default 20; predict: whole nnUNetv2_predict runs, default 3)")
    parser.add_argument("--trainers", nargs="+", default=["nnUNetTrainer", "nnUNetTrainerSegResMamba"],
                        help="predict: nnU-Net trainer names, the first is the baseline")
    parser.add_argument("--out", type=Path, default=Path("bench_out"))
    args = parser.parse_args()
    args.cases = parse_cases(args.cases)
    if args.repeats is None:
        args.repeats = 3 if args.what == "predict" else 20
    device = torch.device(args.device)
    torch.backends.cudnn.benchmark = True

    runner = dict(networks=run_networks, tom=run_tom, predict=run_predict)[args.what]
    rows, columns = runner(args, device)
    args.out.mkdir(parents=True, exist_ok=True)
    meta = dict(device=device_name(device), torch=torch.__version__, command=" ".join(sys.argv),
                date=time.strftime("%Y-%m-%d %H:%M"))
    (args.out / f"{args.what}.json").write_text(json.dumps(dict(meta=meta, rows=rows), indent=1))
    table = f"Device: {meta['device']}; torch {meta['torch']}; `{meta['command']}`\n\n" + markdown_table(rows, columns)
    (args.out / f"{args.what}.md").write_text(table + "\n")
    if args.what == "networks":
        plot_networks(rows, args.out / "networks.png")
    print(table)


if __name__ == "__main__":
    main()
