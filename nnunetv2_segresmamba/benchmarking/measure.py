"""Timing, peak memory and nnU-Net's training step on random data: what every benchmark here measures with."""

from __future__ import annotations

import platform
import statistics
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper
from nnunetv2.training.loss.compound_losses import DC_and_CE_loss
from nnunetv2.training.loss.dice import MemoryEfficientSoftDiceLoss


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:  # not Linux
        pass
    return platform.processor() or platform.machine()


def device_name(device: torch.device) -> str:
    """What ran a measurement: the GPU's name, else the CPU model and the threads PyTorch uses."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({_cpu_model()}, {torch.get_num_threads()} threads)"


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device, warmup: int, repeats: int) -> float:
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


def steady_state_peak(fn: Callable[[], object], device: torch.device, steps: int = 3) -> tuple[float, float] | None:
    """(peak allocated, peak reserved) in GiB over ``steps`` calls of an already warmed-up ``fn``.

    Allocated counts every tensor PyTorch's CUDA allocator handed out while the steps ran: weights, gradients,
    optimizer state, activations, cuDNN and autotuning workspaces, CUDA-graph memory pools. Reserved adds what
    the allocator holds cached. Neither counts the CUDA context. Measure one network per process: the
    allocator keeps what earlier networks left cached.
    """
    if device.type != "cuda":
        return None
    synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    for _ in range(steps):
        fn()
    synchronize(device)
    return (torch.cuda.max_memory_allocated(device) / 2 ** 30, torch.cuda.max_memory_reserved(device) / 2 ** 30)


def deep_supervision_loss(outputs, target: torch.Tensor, ddp: bool = False, batch_dice: bool = False) -> torch.Tensor:
    """nnU-Net's training loss, built as ``nnUNetTrainer._build_loss`` builds it for a plan without regions or
    an ignore label: Dice (``MemoryEfficientSoftDiceLoss``, background left out) + cross-entropy, wrapped in its
    ``DeepSupervisionWrapper`` with weights 1, 1/2, 1/4, ... normalised; each output against the target
    resized to it. ``batch_dice``: the plan's (False in nnU-Net's 3d_fullres plans, True in its 2d ones).

    nnU-Net zeroes the lowest-resolution output's weight; under DDP it uses 1e-6 instead, because
    DistributedDataParallel fails on parameters (that head) that get no gradient.
    """
    outputs = list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]
    weights = np.array([1 / 2 ** i for i in range(len(outputs))])
    if len(weights) > 1:
        weights[-1] = 1e-6 if ddp else 0.0
    loss = DC_and_CE_loss({"batch_dice": batch_dice, "smooth": 1e-5, "do_bg": False, "ddp": ddp}, {}, weight_ce=1,
                          weight_dice=1, ignore_label=None, dice_class=MemoryEfficientSoftDiceLoss)
    targets = [F.interpolate(target[:, None].float(), size=out.shape[2:], mode="nearest") for out in outputs]
    return DeepSupervisionWrapper(loss, weights / weights.sum())(outputs, targets)


def training_step(net: torch.nn.Module, patch_size, classes: int, batch: int, device: torch.device,
                  ddp: bool = False, forward: torch.nn.Module | None = None):
    """nnU-Net's training step on random data: fp16 autocast + GradScaler on CUDA, SGD (momentum 0.99,
    Nesterov), gradient clipping at 12, deep supervision (``ddp``: weighted as under DDP). ``forward`` is
    what runs the forward pass (a compiled or DDP-wrapped ``net``; default ``net``). Returns
    (step, input, autocast kwargs)."""
    forward = net if forward is None else forward
    optimizer = torch.optim.SGD(net.parameters(), lr=1e-2, momentum=0.99, nesterov=True)
    scaler = torch.amp.GradScaler(device.type, enabled=device.type == "cuda")
    x = torch.randn(batch, 1, *patch_size, device=device)
    target = torch.randint(0, classes, (batch, *patch_size), device=device)
    amp = dict(device_type=device.type, dtype=torch.float16, enabled=device.type == "cuda")

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(**amp):
            loss = deep_supervision_loss(forward(x), target, ddp=ddp)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(net.parameters(), 12)
        scaler.step(optimizer)
        scaler.update()

    return step, x, amp


def set_deep_supervision(net: torch.nn.Module, enabled: bool) -> None:
    if hasattr(net, "decoder") and hasattr(net.decoder, "deep_supervision"):
        net.decoder.deep_supervision = enabled
