"""SegResMamba against nnU-Net's own networks on one device: parameters, MACs, training step time and peak
memory, inference latency; each network measured in a process of its own, compiled or not."""

from __future__ import annotations

import multiprocessing
from dataclasses import dataclass

import torch

from ..network import SegResMamba
from ..network.compile_settings import apply_inductor_settings
from .baselines import NETWORKS, nnunet_topology
from .complexity import bytes_saved_for_backward, count_macs, count_parameters
from .measure import set_deep_supervision, steady_state_peak, timed, training_step
from .report import add_ratios

BASELINE = "PlainConvUNet"
# "none": eager. "default": torch.compile(net), exactly as nnU-Net compiles its networks. The others are
# torch.compile modes: "reduce-overhead" replays CUDA graphs, "max-autotune-no-cudagraphs" autotunes kernels.
COMPILE_MODES = ("none", "default", "reduce-overhead", "max-autotune-no-cudagraphs")


@dataclass(frozen=True)
class Case:
    patch: tuple[int, ...]
    classes: int
    batch: int

    @property
    def label(self) -> str:
        return "x".join(map(str, self.patch))


def compiled(net: torch.nn.Module, mode: str) -> torch.nn.Module:
    if mode == "none":
        return net
    if isinstance(net, SegResMamba):
        apply_inductor_settings()  # as its trainers compile it; the other networks compile as nnU-Net does
    return torch.compile(net) if mode == "default" else torch.compile(net, mode=mode)


def measure_network(name: str, case: Case, compile_mode: str, device: str, warmup: int, repeats: int) -> dict:
    """One row; call it in a fresh process (see measure_in_own_process)."""
    device = torch.device(device)
    torch.backends.cudnn.benchmark = True
    torch.manual_seed(0)
    topology = nnunet_topology(case.patch)
    net = NETWORKS[name](topology, 1, case.classes)
    row = dict(network=name, patch=case.label, batch=case.batch, compile=compile_mode,
               params_M=count_parameters(net) / 1e6, gmacs=count_macs(net, (1, 1, *topology.patch_size)) / 1e9)
    net = net.to(device)
    forward = compiled(net, compile_mode)
    step, x, amp = training_step(net, topology.patch_size, case.classes, case.batch, device, forward=forward)
    if compile_mode == "none":
        with torch.autocast(**amp):
            # Activations autograd keeps for backward: the device-independent part of the training memory.
            row["saved_for_bwd_GiB"] = bytes_saved_for_backward(lambda: net(x))[1] / 2 ** 30
    row["train_step_ms"] = timed(step, device, warmup, repeats)  # warm-up includes compiling
    peaks = steady_state_peak(step, device)
    if peaks is not None:
        row["train_peak_GiB"], row["train_reserved_GiB"] = peaks
    net.eval()
    set_deep_supervision(net, False)
    x1 = x[:1]

    def infer():
        with torch.inference_mode(), torch.autocast(**amp):
            forward(x1)

    row["inference_ms"] = timed(infer, device, warmup, repeats)
    return row


def measure_in_own_process(*args) -> dict:
    """measure_network in a fresh process: no allocator cache, autotuning workspace or compiled graph of an
    earlier network counts towards this one's figures."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(measure_network, args)


RATIO_KEYS = ["params_M", "gmacs", "saved_for_bwd_GiB", "train_peak_GiB", "train_step_ms", "inference_ms"]
COLUMNS = ["network", "case", "compile"] + [c for k in RATIO_KEYS for c in (k, f"{k}_ratio")] + ["train_reserved_GiB"]


def run(cases: list[Case], networks: list[str], compile_modes: list[str], device: str, warmup: int,
        repeats: int, baseline_compile: str | None = None) -> list[dict]:
    """Every network x case x compile mode, each in its own process, with ratios against PlainConvUNet on the
    same case: compiled the same way, or, with ``baseline_compile`` (e.g. 'default', as nnU-Net trains it),
    compiled that way for every row."""
    if BASELINE not in networks:  # every figure is a ratio against it
        networks = [BASELINE, *networks]
    rows = []
    for case in cases:
        modes = list(compile_modes)
        if baseline_compile and baseline_compile not in modes:
            modes.append(baseline_compile)
        for mode in modes:
            for name in networks if mode in compile_modes else [BASELINE]:
                print(f"[networks] {name} {case.label} batch {case.batch} compile={mode}", flush=True)
                row = measure_in_own_process(name, case, mode, device, warmup, repeats)
                rows.append({**row, "case": f"{case.label} b{case.batch}"})
    if baseline_compile:
        add_ratios(rows, {"network": BASELINE, "compile": baseline_compile}, RATIO_KEYS, ["case"])
    else:
        add_ratios(rows, {"network": BASELINE}, RATIO_KEYS, ["case", "compile"])
    return rows
