"""nnU-Net plans -> :class:`SegResMambaConfig`.

The rule (documented in docs/architecture.md): SegResMamba computes only on grids that nnU-Net's own U-Net
for the same plan has, i.e. the patch divided by the cumulative products of the plan's
``pool_op_kernel_sizes`` (its stage grids G_0 = patch, G_1, G_2, ...), and its convs follow the plan's
``conv_kernel_sizes`` on each of those grids.

* The plan's pooling stages (stages whose stride is not 1x1x1) are taken in order. Encoder level i runs on
  the grid of the i-th pooling stage: the stem goes from the patch to the first, each downsampling to the
  next. Where the plan pools fewer than four times, the remaining levels stay on the last grid (stride 1:
  they only change the width).
* Each level's CMMB halves its grid internally (conv k5, ToM, transposed conv back) exactly as the plan's
  next pooling stage does (its stride, 1 on axes that stage does not pool); without a next pooling stage
  it keeps its grid. So every ToM runs on one of nnU-Net's stage grids.
* Kernels: each conv uses the paper's size (stem 7, CMMB 5 and 3, decoder 3) on the axes where the plan's
  kernel for the grid the conv writes is > 1, and 1 on axes where the plan's kernel is 1.

For the paper's setting (128^3, five isotropic pools, 3x3x3 kernels) this gives exactly the paper's
network; for Hippocampus (40x56x40, three isotropic pools) the stem and the first two downsamplings pool,
the third only changes the width, and only levels 0 and 1 halve inside their CMMB.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from .blocks import Triple, as_triple
from .config import SegResMambaConfig

NUM_LEVELS = 4
MIN_DEEPEST_GRID = 2


class UnsupportedConfigurationError(ValueError):
    """The nnU-Net configuration cannot be served by SegResMamba (e.g. a 2d configuration)."""


class PatchTooSmallError(ValueError):
    """The patch leaves the network's deepest grid with fewer than MIN_DEEPEST_GRID voxels on an axis."""


def stage_strides(plan_strides: Sequence[Sequence[int]]) -> list[Triple]:
    """Cumulative stride of each of nnU-Net's stage grids relative to the patch (G_k = patch / this)."""
    out, current = [], (1, 1, 1)
    for step in plan_strides:
        current = tuple(c * s for c, s in zip(current, as_triple(step)))
        out.append(current)
    return out  # type: ignore[return-value]


@dataclass(frozen=True)
class StageMapping:
    """Which of nnU-Net's stages (indices into the plan's per-stage lists) each SegResMamba grid is."""

    level_stages: tuple[int, ...]
    inner_stages: tuple[int, ...]


def map_stages(plan_strides: Sequence[Sequence[int]], num_levels: int = NUM_LEVELS) -> StageMapping:
    steps = [as_triple(s) for s in plan_strides]
    if any(s not in (1, 2) for step in steps for s in step):
        raise UnsupportedConfigurationError(f"SegResMamba supports strides of 1 or 2 per axis; plan has {steps}")
    pooling = [k for k, step in enumerate(steps) if step != (1, 1, 1)]
    levels: list[int] = []
    for i in range(num_levels):
        levels.append(pooling[i] if i < len(pooling) else (levels[-1] if levels else 0))
    inner = [pooling[i + 1] if i + 1 < len(pooling) else levels[i] for i in range(num_levels)]
    return StageMapping(tuple(levels), tuple(inner))


def _ratio(fine: Triple, coarse: Triple) -> Triple:
    return tuple(c // f for f, c in zip(fine, coarse))  # type: ignore[return-value]


def strides_from_plan(plan_strides: Sequence[Sequence[int]], num_levels: int = NUM_LEVELS
                      ) -> tuple[Triple, tuple[Triple, ...], tuple[Triple, ...]]:
    """(stem stride, down strides, CMMB inner strides) for a plan's per-stage strides."""
    mapping = map_stages(plan_strides, num_levels)
    grids = stage_strides(plan_strides)
    levels = [grids[k] for k in mapping.level_stages]
    stem = levels[0]
    down = tuple(_ratio(a, b) for a, b in zip(levels[:-1], levels[1:]))
    inner = tuple(_ratio(levels[i], grids[k]) for i, k in enumerate(mapping.inner_stages))
    return stem, down, inner  # type: ignore[return-value]


def kernels_from_plan(plan_strides: Sequence[Sequence[int]], plan_kernels: Sequence[Sequence[int]] | None,
                      num_levels: int = NUM_LEVELS) -> tuple[tuple[Triple, ...], tuple[Triple, ...]]:
    """(plan kernel on each level's grid, plan kernel on each CMMB's inner grid)."""
    if plan_kernels is None:
        plan_kernels = [(3, 3, 3)] * len(plan_strides)
    if len(plan_kernels) != len(plan_strides):
        raise UnsupportedConfigurationError(
            f"The plan has {len(plan_strides)} pool_op_kernel_sizes but {len(plan_kernels)} conv_kernel_sizes; "
            f"nnU-Net's plans have one of each per stage.")
    kernels = [as_triple(k) for k in plan_kernels]
    mapping = map_stages(plan_strides, num_levels)
    return (tuple(kernels[k] for k in mapping.level_stages), tuple(kernels[k] for k in mapping.inner_stages))


def config_from_patch_and_strides(patch_size: Sequence[int], plan_strides: Sequence[Sequence[int]],
                                  in_channels: int, num_classes: int,
                                  plan_kernels: Sequence[Sequence[int]] | None = None,
                                  **overrides) -> SegResMambaConfig:
    """``plan_kernels`` are the plan's ``conv_kernel_sizes`` (3x3x3 everywhere when not given)."""
    if len(patch_size) != 3:
        raise UnsupportedConfigurationError(
            f"SegResMamba is a 3D network, but this configuration has a {len(patch_size)}D patch "
            f"{list(patch_size)}. Train a 3D configuration instead: `nnUNetv2_train DATASET 3d_fullres FOLD "
            f"-tr nnUNetTrainerSegResMamba` (or 3d_lowres / 3d_cascade_fullres).")
    stem, down, inner = strides_from_plan(plan_strides)
    level_kernels, inner_kernels = kernels_from_plan(plan_strides, plan_kernels)
    config = SegResMambaConfig(in_channels=in_channels, num_classes=num_classes, stem_stride=stem,
                               down_strides=down, inner_strides=inner, level_plan_kernels=level_kernels,
                               inner_plan_kernels=inner_kernels, **overrides)
    deepest = config.deepest_grid(tuple(patch_size))
    if min(deepest) < MIN_DEEPEST_GRID:
        need = [MIN_DEEPEST_GRID * d for d in config.divisor]
        raise PatchTooSmallError(
            f"Patch {list(patch_size)} is too small for SegResMamba with strides {list(plan_strides)}: its deepest "
            f"grid would be {list(deepest)} voxels, and it needs at least {MIN_DEEPEST_GRID} per axis, i.e. a patch of "
            f"at least {need}. Re-plan with a larger patch (nnUNetv2_plan_experiment with a larger GPU memory target, "
            f"or edit patch_size in the plans file) or pool fewer times on the small axis.")
    return config


def plan_conv_kernels(configuration_manager) -> Sequence[Sequence[int]] | None:
    """The plan's per-stage conv kernel sizes: ``architecture.arch_kwargs.kernel_sizes`` in nnU-Net's plans
    (None for a plan that does not list them)."""
    return configuration_manager.network_arch_init_kwargs.get("kernel_sizes")


def config_from_plans(configuration_manager, num_input_channels: int, num_output_channels: int,
                      deep_supervision: bool = False, **overrides) -> SegResMambaConfig:
    """From an nnU-Net ``ConfigurationManager`` (``patch_size``, the per-stage strides and kernel sizes)."""
    return config_from_patch_and_strides(configuration_manager.patch_size,
                                         configuration_manager.pool_op_kernel_sizes,
                                         num_input_channels, num_output_channels,
                                         plan_kernels=plan_conv_kernels(configuration_manager),
                                         deep_supervision=deep_supervision, **overrides)
