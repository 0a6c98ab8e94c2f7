"""The Triton scan kernels alone, at the scans one SegResMamba training step runs, under kernel settings.

A setting overrides constants of ``ssm/kernels/triton_scan.py`` for the time of its measurement
(``"CHUNK=32,FORWARD_WARPS=1"``; ``"default"`` keeps the module's values). Each row is one setting: forward
and backward time summed over the network's scans (fp16 inputs, the median of ``triton.testing.do_bench``),
as ratios to the first setting; with ``by_scan`` one row per setting and scan, to see which scans set the time.
This is how the module's constants were chosen.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import torch

from ..network import SegResMamba, TriOrientedMamba, config_from_patch_and_strides
from ..network.tom import SCAN_ORDERS
from .baselines import nnunet_topology

COLUMNS = ["setting", "scans", "forward_ms", "forward_ms_ratio", "backward_ms", "backward_ms_ratio"]
BY_SCAN_COLUMNS = ["setting", "scan", "forward_ms", "forward_ms_ratio", "backward_ms", "backward_ms_ratio"]
SETTABLE = ("CHUNK", "MAX_CHANNEL_BLOCK", "FORWARD_PROGRAMS_PER_SM", "BACKWARD_PROGRAMS_PER_SM", "CARRY_BLOCK",
            "FORWARD_WARPS", "BACKWARD_WARPS", "FORWARD_STAGES", "BACKWARD_STAGES", "TOKEN_MAJOR")


@dataclass(frozen=True)
class ScanShape:
    batch: int
    channels: int  # all scan orders side by side, as the ToM layer scans them
    length: int
    groups: int
    d_state: int

    @property
    def label(self) -> str:
        return f"{self.batch}x{self.channels}x{self.length}"


def network_scan_shapes(patch_size: tuple[int, ...], num_classes: int, batch: int) -> list[ScanShape]:
    """The scans of SegResMamba built for ``patch_size`` with nnU-Net's topology, one per ToM layer, found by
    running the network on the meta device (no memory, no compute)."""
    topology = nnunet_topology(patch_size)
    config = config_from_patch_and_strides(topology.patch_size, topology.strides, 1, num_classes,
                                           plan_kernels=topology.kernels, scan_backend="torch")
    with torch.device("meta"):
        net = SegResMamba(config)
    shapes = []

    def record(tom: TriOrientedMamba, args) -> None:
        x = args[0]
        shapes.append(ScanShape(x.shape[0], len(SCAN_ORDERS) * tom.d_inner, x[0, 0].numel(), len(SCAN_ORDERS),
                                tom.d_state))

    for module in net.modules():
        if isinstance(module, TriOrientedMamba):
            module.register_forward_pre_hook(record)
    with torch.no_grad():
        net(torch.empty(batch, 1, *topology.patch_size, device="meta"))
    return shapes


def parse_setting(text: str) -> dict[str, int]:
    if text == "default":
        return {}
    setting = {}
    for item in text.split(","):
        name, _, value = item.partition("=")
        if name not in SETTABLE or not value.isdigit():
            raise ValueError(f"{item!r}: a setting is NAME=INTEGER[,NAME=INTEGER...] with NAME one of {SETTABLE}")
        setting[name] = int(value)
    return setting


@contextmanager
def kernel_setting(setting: dict[str, int]):
    from ..ssm.kernels import triton_scan
    saved = {name: getattr(triton_scan, name) for name in setting}
    for name, value in setting.items():
        setattr(triton_scan, name, value)
    try:
        yield triton_scan
    finally:
        for name, value in saved.items():
            setattr(triton_scan, name, value)


def _inputs(shape: ScanShape, device: torch.device) -> dict[str, torch.Tensor]:
    g = torch.Generator(device=device).manual_seed(0)

    def randn(*size, scale=1.0, shift=0.0):
        return (torch.randn(*size, device=device, generator=g) * scale + shift).half()

    activations = (shape.batch, shape.channels, shape.length)
    per_group = (shape.batch, shape.groups, shape.d_state, shape.length)
    return dict(u=randn(*activations), delta=randn(*activations, scale=0.5, shift=-1.0),
                A=-torch.rand(shape.channels, shape.d_state, device=device, generator=g) * 4 - 0.05,
                B=randn(*per_group), C=randn(*per_group), D=torch.randn(shape.channels, device=device, generator=g),
                delta_bias=torch.randn(shape.channels, device=device, generator=g) * 0.5, dy=randn(*activations))


def time_setting(shapes: list[ScanShape], setting: dict[str, int], device: torch.device) -> list[tuple[float, float]]:
    """(forward ms, backward ms) of each of ``shapes``."""
    from triton.testing import do_bench
    times = []
    with kernel_setting(setting) as kernels:
        for shape in shapes:
            x = _inputs(shape, device)
            args = (x["u"], x["delta"], x["A"], x["B"], x["C"], x["D"], x["delta_bias"])
            _, entering = kernels.scan_forward(*args, True)
            times.append((do_bench(lambda: kernels.scan_forward(*args, True), return_mode="median"),
                          do_bench(lambda: kernels.scan_backward(x["dy"], *args, entering, True),
                                   return_mode="median")))
    return times


def run(patch_size: tuple[int, ...], num_classes: int, batch: int, settings: list[str],
        device: torch.device, by_scan: bool = False) -> list[dict]:
    shapes = network_scan_shapes(patch_size, num_classes, batch)
    rows = []
    for text in settings:
        print(f"[scan] {text}", flush=True)
        times = time_setting(shapes, parse_setting(text), device)
        if by_scan:
            rows += [dict(setting=text, scan=shape.label, forward_ms=forward, backward_ms=backward)
                     for shape, (forward, backward) in zip(shapes, times)]
        else:
            rows.append(dict(setting=text, scans=len(shapes), forward_ms=sum(t[0] for t in times),
                             backward_ms=sum(t[1] for t in times)))
    per_setting = len(shapes) if by_scan else 1
    for i, row in enumerate(rows):
        baseline = rows[i % per_setting]  # the first setting's row of the same scan
        row["forward_ms_ratio"] = row["forward_ms"] / baseline["forward_ms"]
        row["backward_ms_ratio"] = row["backward_ms"] / baseline["backward_ms"]
    return rows
