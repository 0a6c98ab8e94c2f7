"""One Tri-oriented Mamba layer, forward + backward, per scan backend, in one process."""

from __future__ import annotations

import torch

from ..network import TriOrientedMamba
from .measure import steady_state_peak, timed
from .report import add_ratios

COLUMNS = ["tokens", "channels", "batch", "dtype", "backend", "fwd_bwd_ms", "fwd_bwd_ms_ratio", "peak_GiB",
           "peak_GiB_ratio"]


def measure_tom(side: int, channels: int, batch: int, backend: str, dtype: str, device: torch.device,
                warmup: int, repeats: int) -> dict:
    torch.manual_seed(0)
    param_dtype = torch.float64 if backend == "reference" else torch.float32
    tom = TriOrientedMamba(channels, scan_backend=backend).to(device=device, dtype=param_dtype)
    x = torch.randn(batch, channels, side, side, side, device=device, dtype=param_dtype, requires_grad=True)
    autocast = dict(device_type=device.type, dtype=torch.float16, enabled=dtype == "fp16")

    def step():
        tom.zero_grad(set_to_none=True)
        with torch.autocast(**autocast):
            out = tom(x)
        out.float().square().mean().backward()

    slow = backend == "reference"
    row = dict(tokens=f"{side}^3", channels=channels, batch=batch, dtype=dtype, backend=backend,
               fwd_bwd_ms=timed(step, device, 0 if slow else warmup, 1 if slow else repeats))
    peaks = steady_state_peak(step, device, steps=1)
    row["peak_GiB"] = None if peaks is None else peaks[0]
    return row


def run(sizes: list[str], backends: list[str], dtypes: list[str], batch: int, device: torch.device, warmup: int,
        repeats: int) -> list[dict]:
    """``sizes``: 'SIDE:CHANNELS' of a ToM input; ratios against the first backend listed."""
    rows = []
    for spec in sizes:
        side, channels = map(int, spec.split(":"))
        for dtype in dtypes:
            for backend in backends:
                print(f"[tom] {side}^3 x {channels} {dtype} on {backend}", flush=True)
                rows.append(measure_tom(side, channels, batch, backend, dtype, device, warmup, repeats))
    add_ratios(rows, {"backend": backends[0]}, ["fwd_bwd_ms", "peak_GiB"], ["tokens", "channels", "dtype"])
    return rows
