#!/usr/bin/env python3
"""Where a network's training step spends time and memory, before anything is optimised.

    python scripts/profile_network.py [--network SegResMamba] [--patch 128 128 128] [--classes 14]
                                      [--batch 1] [--steps 3] [--depth 3] [--out profile_out]

One training step as scripts/benchmark.py times it (nnunetv2_segresmamba.benchmarking's training_step: fp16 autocast on CUDA, SGD),
warmed up, then:

1. per module (to --depth levels of the module tree): forward time (CUDA events on a GPU, wall clock
   elsewhere, each module timed alone) and the activations autograd keeps from it for backward;
2. torch.profiler over --steps steps: the operators with the most self CUDA time (self CPU time on a CPU),
   forward and backward together, as a table; a Chrome trace for a closer look;
3. on CUDA, a memory snapshot of one step (open it at https://pytorch.org/memory_viz).

Writes profile.md (both tables, the device named) and the trace files under --out.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from nnunetv2_segresmamba.benchmarking.baselines import NETWORKS, nnunet_topology
from nnunetv2_segresmamba.benchmarking.measure import device_name, synchronize, training_step
from nnunetv2_segresmamba.benchmarking.report import markdown_table
from nnunetv2_segresmamba.benchmarking.complexity import SavedForBackward, bytes_saved_for_backward


CONTAINERS = (torch.nn.ModuleList, torch.nn.ModuleDict)


def modules_to_depth(net: torch.nn.Module, depth: int) -> list[tuple[str, torch.nn.Module]]:
    """The called modules down to ``depth`` levels; ModuleList/ModuleDict do not count as a level."""
    modules = dict(net.named_modules())
    chosen = []
    for name, module in modules.items():
        if not name or isinstance(module, CONTAINERS):
            continue
        parts = name.split(".")
        ancestors = [modules[".".join(parts[:i])] for i in range(1, len(parts))]
        if sum(not isinstance(a, CONTAINERS) for a in ancestors) < depth:
            chosen.append((name, module))
    return chosen


class _ModuleProbe:
    """Forward hooks that time one module and count the storages autograd keeps inside it."""

    def __init__(self, device: torch.device):
        self.device = device
        self.saved = SavedForBackward()
        self.ms: float | None = None

    def before(self, module, args) -> None:
        synchronize(self.device)
        self.start = time.perf_counter()
        self.saved.__enter__()

    def after(self, module, args, output) -> None:
        self.saved.__exit__(None, None, None)
        synchronize(self.device)
        self.ms = (time.perf_counter() - self.start) * 1e3


def per_module_breakdown(net, x, device, depth: int, amp: dict) -> list[dict]:
    """Forward time and kept-for-backward bytes of each module, one forward pass per module with hooks on
    that module alone (nested probes would hide what the inner module keeps from the outer one)."""
    rows = []
    for name, module in modules_to_depth(net, depth):
        probe = _ModuleProbe(device)
        handles = [module.register_forward_pre_hook(probe.before), module.register_forward_hook(probe.after)]
        try:
            with torch.autocast(**amp):
                net(x)
        finally:
            for handle in handles:
                handle.remove()
        if probe.ms is not None:  # a module built but not called in this forward (unused heads)
            rows.append(dict(module=name, type=type(module).__name__, forward_ms=probe.ms,
                             kept_for_backward_MiB=probe.saved.bytes / 2 ** 20))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--network", default="SegResMamba", choices=list(NETWORKS))
    parser.add_argument("--patch", nargs=3, type=int, default=[128, 128, 128])
    parser.add_argument("--classes", type=int, default=14)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--depth", type=int, default=3, help="module-tree depth of the per-module table")
    parser.add_argument("--top", type=int, default=25, help="operators in the profiler table")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", type=Path, default=Path("profile_out"))
    args = parser.parse_args()
    device = torch.device(args.device)
    on_gpu = device.type == "cuda"
    torch.backends.cudnn.benchmark = True
    args.out.mkdir(parents=True, exist_ok=True)

    torch.manual_seed(0)
    topology = nnunet_topology(args.patch)
    net = NETWORKS[args.network](topology, 1, args.classes).to(device)
    train_step, x, amp = training_step(net, topology.patch_size, args.classes, args.batch, device)
    for _ in range(2):
        train_step()
    synchronize(device)

    with torch.autocast(**amp):
        total_kept = bytes_saved_for_backward(lambda: net(x))[1] / 2 ** 20
    modules = per_module_breakdown(net, x, device, args.depth, amp)

    activities = [torch.profiler.ProfilerActivity.CPU] + ([torch.profiler.ProfilerActivity.CUDA] if on_gpu else [])
    with torch.profiler.profile(activities=activities) as prof:
        for _ in range(args.steps):
            train_step()
        synchronize(device)
    prof.export_chrome_trace(str(args.out / "trace.json"))
    sort_key = "self_cuda_time_total" if on_gpu else "self_cpu_time_total"
    operators = prof.key_averages().table(sort_by=sort_key, row_limit=args.top)

    if on_gpu:
        torch.cuda.memory._record_memory_history(max_entries=200_000)
        train_step()
        synchronize(device)
        torch.cuda.memory._dump_snapshot(str(args.out / "memory_snapshot.pickle"))
        torch.cuda.memory._record_memory_history(enabled=None)

    title = (f"Device: {device_name(device)}; torch {torch.__version__}; {args.network} at "
             f"{'x'.join(map(str, topology.patch_size))}, batch {args.batch}, {args.classes} classes; "
             f"`{' '.join(sys.argv)}`")
    report = "\n\n".join([
        title,
        f"Activations kept for backward by the whole forward pass: {total_kept:.1f} MiB. Per module (each timed "
        "alone, one forward; a parent's figures include its children):",
        markdown_table(modules, ["module", "type", "forward_ms", "kept_for_backward_MiB"]),
        f"torch.profiler, {args.steps} training steps, operators by {sort_key}:",
        "```\n" + operators + "\n```",
    ])
    (args.out / "profile.md").write_text(report + "\n")
    print(report)


if __name__ == "__main__":
    main()
