"""The Triton scan kernels alone, at the scans one SegResMamba training step runs, under kernel settings.

A setting overrides constants of ``ssm/kernels/triton_scan.py`` for the time of its measurement
(``"CHUNK=32,FORWARD_WARPS=1"``; ``"default"`` keeps the module's values). Each row is one setting: forward
and backward time summed over the network's scans (fp16 inputs, the median of ``triton.testing.do_bench``),
as ratios to the first setting; with ``by_scan`` one row per setting and scan, to see which scans set the time.
This is how the module's constants were chosen.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch

from ..network import config_from_patch_and_strides
from ..network.scan_shapes import ScanShape, scan_shapes
from ..ssm.auto_select import scan_inputs
from .baselines import nnunet_topology

COLUMNS = ["setting", "scans", "forward_ms", "forward_ms_ratio", "backward_ms", "backward_ms_ratio"]
BY_SCAN_COLUMNS = ["setting", "scan", "forward_ms", "forward_ms_ratio", "backward_ms", "backward_ms_ratio"]
SETTABLE = ("CHUNK", "MAX_CHANNEL_BLOCK", "FORWARD_PROGRAMS_PER_SM", "BACKWARD_PROGRAMS_PER_SM", "CARRY_BLOCK",
            "FORWARD_WARPS", "BACKWARD_WARPS", "FORWARD_STAGES", "BACKWARD_STAGES", "GROUP_TILES_3D",
            "ALIGN_ROWS")


def network_scan_shapes(patch_size: tuple[int, ...], num_classes: int, batch: int) -> list[ScanShape]:
    """The scans of SegResMamba built for ``patch_size`` with nnU-Net's topology, one per ToM layer."""
    topology = nnunet_topology(patch_size)
    config = config_from_patch_and_strides(topology.patch_size, topology.strides, 1, num_classes,
                                           plan_kernels=topology.kernels, scan_backend="torch")
    return scan_shapes(config, topology.patch_size, batch)


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


def time_setting(shapes: list[ScanShape], setting: dict[str, int], device: torch.device) -> list[tuple[float, float]]:
    """(forward ms, backward ms) of each of ``shapes``."""
    from triton.testing import do_bench
    times = []
    with kernel_setting(setting) as kernels:
        for shape in shapes:
            x = scan_inputs(shape, device)
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
