"""nnU-Net plans -> :class:`SegResMambaConfig`.

The mapping, per axis a (documented in docs/architecture.md):

* The plan's pooling steps (``pool_op_kernel_sizes`` without stride-1 stages) are nnU-Net's decision of
  how often each axis may be halved: P_a times, so that the deepest grid keeps >= 4 voxels.
* SegResMamba's four encoder strides (stem, then three downsamplings) take the plan's first four pooling
  steps in order (stride 1 where the plan has fewer), so an axis that the plan does not pool at that
  depth is not pooled by the network either.
* Each level's CMMB halves its grid internally (conv k5 stride 2, then a transposed conv back). It does so
  on axis a only while the budget allows: level i halves a iff (halvings of a before level i) + 1 <= P_a.
  So no axis is ever shrunk further than nnU-Net's own U-Net shrinks it.

For the paper's setting (128^3, five isotropic pools) this gives exactly the paper's network; for
Hippocampus (40x56x40, three isotropic pools) the stem and the first two downsamplings pool, the third
only changes the width, and only levels 0 and 1 halve inside their CMMB.
"""

from __future__ import annotations

from typing import Sequence

from .blocks import Triple, as_triple
from .config import SegResMambaConfig

NUM_LEVELS = 4
MIN_DEEPEST_GRID = 2


class UnsupportedConfigurationError(ValueError):
    """The nnU-Net configuration cannot be served by SegResMamba (e.g. a 2d configuration)."""


class PatchTooSmallError(ValueError):
    """The patch leaves the network's deepest grid with fewer than MIN_DEEPEST_GRID voxels on an axis."""


def strides_from_plan(plan_strides: Sequence[Sequence[int]], num_levels: int = NUM_LEVELS
                      ) -> tuple[Triple, tuple[Triple, ...], tuple[Triple, ...]]:
    """(stem stride, down strides, CMMB inner strides) for a plan's per-stage strides."""
    steps = [as_triple(s) for s in plan_strides]
    if any(s not in (1, 2) for step in steps for s in step):
        raise UnsupportedConfigurationError(f"SegResMamba supports strides of 1 or 2 per axis; plan has {steps}")
    pools = [step for step in steps if step != (1, 1, 1)]
    budget = [sum(step[a] == 2 for step in pools) for a in range(3)]
    encoder = (pools + [(1, 1, 1)] * num_levels)[:num_levels]
    halvings = [0, 0, 0]
    inner = []
    for stride in encoder:
        halvings = [h + (s == 2) for h, s in zip(halvings, stride)]
        inner.append(tuple(2 if h + 1 <= b else 1 for h, b in zip(halvings, budget)))
    return encoder[0], tuple(encoder[1:]), tuple(inner)  # type: ignore[return-value]


def config_from_patch_and_strides(patch_size: Sequence[int], plan_strides: Sequence[Sequence[int]],
                                  in_channels: int, num_classes: int, **overrides) -> SegResMambaConfig:
    if len(patch_size) != 3:
        raise UnsupportedConfigurationError(
            f"SegResMamba is a 3D network, but this configuration has a {len(patch_size)}D patch "
            f"{list(patch_size)}. Train a 3D configuration instead: `nnUNetv2_train DATASET 3d_fullres FOLD "
            f"-tr nnUNetTrainerSegResMamba` (or 3d_lowres / 3d_cascade_fullres).")
    stem, down, inner = strides_from_plan(plan_strides)
    config = SegResMambaConfig(in_channels=in_channels, num_classes=num_classes, stem_stride=stem,
                               down_strides=down, inner_strides=inner, **overrides)
    deepest = config.deepest_grid(tuple(patch_size))
    if min(deepest) < MIN_DEEPEST_GRID:
        need = [MIN_DEEPEST_GRID * d for d in config.divisor]
        raise PatchTooSmallError(
            f"Patch {list(patch_size)} is too small for SegResMamba with strides {list(plan_strides)}: its deepest "
            f"grid would be {list(deepest)} voxels, and it needs at least {MIN_DEEPEST_GRID} per axis, i.e. a patch of "
            f"at least {need}. Re-plan with a larger patch (nnUNetv2_plan_experiment with a larger GPU memory target, "
            f"or edit patch_size in the plans file) or pool fewer times on the small axis.")
    return config


def config_from_plans(configuration_manager, num_input_channels: int, num_output_channels: int,
                      deep_supervision: bool = False, **overrides) -> SegResMambaConfig:
    """From an nnU-Net ``ConfigurationManager`` (``patch_size``, ``pool_op_kernel_sizes``)."""
    return config_from_patch_and_strides(configuration_manager.patch_size,
                                         configuration_manager.pool_op_kernel_sizes,
                                         num_input_channels, num_output_channels,
                                         deep_supervision=deep_supervision, **overrides)
