"""``auto`` by measurement: where several GPU backends are installed, the one that runs a network's own scans
fastest on this GPU, timed once when training starts (a fixed order, ``AUTO_PREFERENCE``, everywhere else)."""

from __future__ import annotations

import statistics
from typing import Callable, Protocol, Sequence

import torch

from .registry import REGISTRY


class Shape(Protocol):  # network.scan_shapes.ScanShape
    batch: int
    channels: int
    length: int
    groups: int
    d_state: int


def scan_inputs(shape: Shape, device: torch.device, seed: int = 0) -> dict[str, torch.Tensor]:
    """Inputs of one scan as a training step under fp16 autocast hands them over (A, D, delta_bias fp32), and
    an upstream gradient ``dy``; drawn from ``seed``."""
    g = torch.Generator(device=device).manual_seed(seed)

    def randn(*size, scale=1.0, shift=0.0):
        return (torch.randn(*size, device=device, generator=g) * scale + shift).half()

    activations = (shape.batch, shape.channels, shape.length)
    per_group = (shape.batch, shape.groups, shape.d_state, shape.length)
    return dict(u=randn(*activations), delta=randn(*activations, scale=0.5, shift=-1.0),
                A=-torch.rand(shape.channels, shape.d_state, device=device, generator=g) * 4 - 0.05,
                B=randn(*per_group), C=randn(*per_group), D=torch.randn(shape.channels, device=device, generator=g),
                delta_bias=torch.randn(shape.channels, device=device, generator=g) * 0.5, dy=randn(*activations))


def time_scans(shapes: Sequence[Shape], backend: str, device: torch.device, repeats: int = 3) -> float:
    """Milliseconds of forward and backward over ``shapes`` on ``backend``: the median of ``repeats`` runs after
    one that warms up (and compiles kernels)."""
    scan = REGISTRY[backend].scan
    inputs = [scan_inputs(shape, device, seed) for seed, shape in enumerate(shapes)]
    for x in inputs:
        for name in ("u", "delta", "B", "C"):
            x[name].requires_grad_()

    def run_once() -> float:
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for x in inputs:
            y = scan(x["u"], x["delta"], x["A"], x["B"], x["C"], D=x["D"], delta_bias=x["delta_bias"],
                     delta_softplus=True)
            torch.autograd.grad(y, (x["u"], x["delta"], x["B"], x["C"]), x["dy"])
        end.record()
        end.synchronize()
        return start.elapsed_time(end)

    run_once()
    return statistics.median(run_once() for _ in range(repeats))


def fastest_backend(shapes: Sequence[Shape], candidates: Sequence[str], device: torch.device,
                    timer: Callable[[Sequence[Shape], str, torch.device], float] = time_scans
                    ) -> tuple[str, dict[str, float]]:
    """The candidate that ``timer`` finds fastest on ``shapes`` (the first on a tie), and every candidate's time."""
    times = {backend: timer(shapes, backend, device) for backend in candidates}
    return min(candidates, key=lambda backend: times[backend]), times
