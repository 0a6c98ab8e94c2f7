"""The network's configuration: everything SegResMamba's constructor needs, with the paper's values
as defaults (1 input channel, 14 BTCV classes, isotropic stride 2 and 3x3x3 plan kernels everywhere, a
128^3 patch)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from ..ssm import requested_backend
from .blocks import Triple

ENCODER_BLOCKS = ("cmmb", "segmamba")


def _isotropic(n: int, value: int = 2) -> tuple[Triple, ...]:
    return tuple((value, value, value) for _ in range(n))


@dataclass(frozen=True)
class SegResMambaConfig:
    in_channels: int = 1
    num_classes: int = 14
    widths: tuple[int, ...] = (48, 96, 192, 384)
    stem_kernel: int = 7
    stem_stride: Triple = (2, 2, 2)
    # One stride per downsampling between levels (len(widths) - 1).
    down_strides: tuple[Triple, ...] = field(default_factory=lambda: _isotropic(3))
    # Stride of each level's CMMB inner conv k5 / transposed conv k5 (1 keeps the grid on that axis).
    inner_strides: tuple[Triple, ...] = field(default_factory=lambda: _isotropic(4))
    # nnU-Net's conv kernel (from the plan's conv_kernel_sizes) on each level's grid and on each CMMB's inner
    # grid. Where it is 1 on an axis (spacing too coarse), SegResMamba's convs on that grid use 1 there too;
    # elsewhere they keep the paper's sizes (stem 7, CMMB 5 and 3, decoder 3). See blocks.plan_kernel.
    level_plan_kernels: tuple[Triple, ...] = field(default_factory=lambda: _isotropic(4, 3))
    inner_plan_kernels: tuple[Triple, ...] = field(default_factory=lambda: _isotropic(4, 3))
    d_state: int = 16
    d_conv: int = 4
    expand: int = 2
    # Ablations of the paper's Table 4: "segmamba" = Exp 1 (SegMamba-style stage, no extra conv),
    # "cmmb" without extra conv = Exp 2, "cmmb" with extra conv = Exp 3 (the full model).
    encoder_block: str = "cmmb"
    extra_conv_before_downsampling: bool = True
    segmamba_depth: int = 2
    skip_expansion: int = 2
    deep_supervision: bool = False
    # Encoder levels whose ToM layers recompute their activations in backward instead of storing them:
    # exact (same outputs and gradients), less training memory, more time. Level 0 holds the largest grid.
    recompute_tom_levels: tuple[int, ...] = ()
    # The selective scan's backend (a name of ssm.BACKENDS; "auto" picks per device). Not part of the weights:
    # one state_dict runs on every backend. The default is what SEGRESMAMBA_SCAN_BACKEND says when the
    # configuration is made.
    scan_backend: str = field(default_factory=requested_backend)

    def __post_init__(self) -> None:
        levels = len(self.widths)
        if len(self.down_strides) != levels - 1 or len(self.inner_strides) != levels:
            raise ValueError(f"{levels} levels need {levels - 1} down_strides and {levels} inner_strides")
        if len(self.level_plan_kernels) != levels or len(self.inner_plan_kernels) != levels:
            raise ValueError(f"{levels} levels need {levels} level_plan_kernels and {levels} inner_plan_kernels")
        if any(level not in range(levels) for level in self.recompute_tom_levels):
            raise ValueError(f"recompute_tom_levels must be encoder levels 0..{levels - 1}, "
                             f"got {self.recompute_tom_levels}")
        object.__setattr__(self, "scan_backend", requested_backend(self.scan_backend))  # checked, normalised
        if self.encoder_block not in ENCODER_BLOCKS:
            raise ValueError(f"encoder_block must be one of {ENCODER_BLOCKS}, got {self.encoder_block!r}")
        for stride in (self.stem_stride, *self.down_strides, *self.inner_strides):
            if any(s not in (1, 2) for s in stride):
                raise ValueError(f"strides must be 1 or 2 per axis, got {stride}")

    @property
    def level_strides(self) -> tuple[Triple, ...]:
        """Cumulative stride of each encoder level's grid relative to the input."""
        out, current = [], (1, 1, 1)
        for stride in (self.stem_stride, *self.down_strides):
            current = tuple(c * s for c, s in zip(current, stride))
            out.append(current)
        return tuple(out)  # type: ignore[return-value]

    @property
    def inner_level_strides(self) -> tuple[Triple, ...]:
        """Cumulative stride of each CMMB's inner grid (where its first ToM runs) relative to the input."""
        return tuple(tuple(l * i for l, i in zip(level, inner))
                     for level, inner in zip(self.level_strides, self.inner_strides))  # type: ignore[return-value]

    @property
    def divisor(self) -> Triple:
        """Per axis, what the input size must be a multiple of (smaller inputs are padded to it)."""
        return tuple(max(inner[a] for inner in self.inner_level_strides)
                     for a in range(3))  # type: ignore[return-value]

    @property
    def deep_supervision_scales(self) -> list[list[float]]:
        """Per output (finest first) its size relative to the input, per axis: the full-resolution
        logits, then the decoder stages, which end on the grids of encoder levels 0, 1, ..., n-2."""
        return [[1.0, 1.0, 1.0]] + [[1.0 / s for s in level] for level in self.level_strides[:-1]]

    def deepest_grid(self, patch_size: tuple[int, ...]) -> Triple:
        return tuple(math.ceil(p / d) for p, d in zip(patch_size, self.divisor))  # type: ignore[return-value]

    def with_(self, **changes) -> "SegResMambaConfig":
        return replace(self, **changes)
