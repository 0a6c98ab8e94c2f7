"""SegResMamba built from nnU-Net-like plans: shapes, gradients, ablations, plan mapping, MACs."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
from batchgeneratorsv2.transforms.utils.deep_supervision_downsampling import DownsampleSegForDSTransform
from nnunetv2.run.load_pretrained_weights import load_pretrained_weights
from nnunetv2.training.loss.compound_losses import DC_and_CE_loss
from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper
from nnunetv2.training.loss.dice import MemoryEfficientSoftDiceLoss

from nnunetv2_segresmamba.benchmarking.complexity import count_macs, count_parameters
from nnunetv2_segresmamba.network import (PatchTooSmallError, SegResMamba, SegResMambaConfig, TriOrientedMamba,
                                          UnsupportedConfigurationError, config_from_patch_and_strides)
from nnunetv2_segresmamba.network.encoder_blocks import ConvMambaMixedBlock, SegMambaStage
from nnunetv2_segresmamba.network.from_plans import strides_from_plan

DATA = Path(__file__).parent / "data"
SMALL = dict(widths=(8, 16, 16, 32))  # the paper's topology with narrow channels: fast on a CPU

HIPPOCAMPUS = ([40, 56, 40], [[1, 1, 1], [2, 2, 2], [2, 2, 2], [2, 2, 2]], 1, 3)
BTCV_LIKE = ([32, 96, 96], [[1, 1, 1], [1, 2, 2], [2, 2, 2], [2, 2, 2], [2, 2, 2], [1, 2, 2]], 1, 14)
BRATS_LIKE = ([64, 64, 64], [[1, 1, 1], [2, 2, 2], [2, 2, 2], [2, 2, 2], [2, 2, 2]], 4, 3)
# nnU-Net pools the in-plane axes twice before it pools the first axis.
ANISOTROPIC = ([16, 64, 64], [[1, 1, 1], [1, 2, 2], [1, 2, 2], [2, 2, 2], [2, 2, 2]], 1, 2)
# Thick slices: the plan convolves the first axis only from stage 2 on.
THICK_SLICES_KERNELS = [[1, 3, 3], [1, 3, 3], [3, 3, 3], [3, 3, 3], [3, 3, 3]]


def nnunet_grids(patch, plan_strides) -> list[tuple[int, ...]]:
    """The grids of nnU-Net's U-Net for a plan: the patch over the cumulative products of the strides."""
    return [tuple(p // s for p, s in zip(patch, cumulative)) for cumulative in np.cumprod(plan_strides, axis=0)]


def grids_computed_on(net: SegResMamba, size) -> tuple[set, set, torch.Tensor]:
    """(grids every conv writes, grids every ToM runs on, the logits) of one forward pass."""
    conv_grids, tom_grids = set(), set()
    hooks = [m.register_forward_hook(lambda m, i, o: (tom_grids if isinstance(m, TriOrientedMamba) else conv_grids)
                                     .add(tuple(o.shape[2:])))
             for m in net.modules() if isinstance(m, (nn.Conv3d, nn.ConvTranspose3d, TriOrientedMamba))]
    with torch.no_grad():
        out = net(torch.randn(1, net.config.in_channels, *size))
    for hook in hooks:
        hook.remove()
    return conv_grids, tom_grids, out


@pytest.mark.parametrize("plan", [HIPPOCAMPUS, BTCV_LIKE, BRATS_LIKE, ANISOTROPIC],
                         ids=["hippocampus", "btcv", "brats", "anisotropic"])
@pytest.mark.parametrize("odd", [False, True])
def test_logits_have_the_input_size_and_every_grid_is_an_nnunet_grid(plan, odd):
    patch, strides, channels, classes = plan
    config = config_from_patch_and_strides(patch, strides, channels, classes, **SMALL)
    net = SegResMamba(config).eval()
    size = [p - 3 if odd else p for p in patch]  # odd sizes need internal padding and cropping
    conv_grids, tom_grids, out = grids_computed_on(net, size)
    assert out.shape == (1, classes, *size)
    assert torch.isfinite(out).all()
    if not odd:  # on the plan's patch: only the grids nnU-Net's U-Net for this plan has
        allowed = set(nnunet_grids(patch, strides))
        assert tom_grids <= allowed, sorted(tom_grids - allowed)
        assert conv_grids <= allowed, sorted(conv_grids - allowed)


def test_full_width_network_on_the_hippocampus_patch():
    net = SegResMamba(config_from_patch_and_strides(*HIPPOCAMPUS)).eval()
    assert count_parameters(net) > 70e6
    with torch.no_grad():
        out = net(torch.randn(1, 1, 40, 56, 40))
    assert out.shape == (1, 3, 40, 56, 40)


def test_gradients_reach_every_parameter_with_deep_supervision():
    config = config_from_patch_and_strides(*BRATS_LIKE, deep_supervision=True, **SMALL)
    net = SegResMamba(config)
    outputs = net(torch.randn(2, 4, 61, 64, 62))
    # nnU-Net's target sizes: Python's round(), halves to even (61 / 2 = 30.5 -> 30)
    assert [tuple(o.shape[2:]) for o in outputs] == [(61, 64, 62), (30, 32, 31), (15, 16, 16), (8, 8, 8)]
    sum(o.square().mean() for o in outputs).backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, missing


def test_deep_supervision_scales_follow_anisotropic_strides():
    net = SegResMamba(config_from_patch_and_strides(*BTCV_LIKE, deep_supervision=True, **SMALL))
    assert net.deep_supervision_scales() == [[1, 1, 1], [1, 0.5, 0.5], [0.5, 0.25, 0.25], [0.25, 0.125, 0.125]]
    outputs = net(torch.randn(1, 1, 32, 96, 96))
    for out, scale in zip(outputs, net.deep_supervision_scales()):
        assert list(out.shape[2:]) == [int(s * f) for s, f in zip((32, 96, 96), scale)]


def test_plan_mapping_pools_only_where_the_plan_pools():
    # Hippocampus: three isotropic pools -> stem + two downsamplings pool, inner halving on levels 0, 1.
    stem, down, inner = strides_from_plan(HIPPOCAMPUS[1])
    assert stem == (2, 2, 2) and down == ((2, 2, 2), (2, 2, 2), (1, 1, 1))
    assert inner == ((2, 2, 2), (2, 2, 2), (1, 1, 1), (1, 1, 1))
    # BTCV-like: the first axis is pooled 3 times by the plan, the others 5 times.
    config = config_from_patch_and_strides(*BTCV_LIKE)
    assert config.stem_stride == (1, 2, 2)
    assert config.divisor == (8, 32, 32)
    for patch, strides, *_ in (HIPPOCAMPUS, BTCV_LIKE, BRATS_LIKE):
        plan_divisor = torch.tensor(strides).prod(0).tolist()
        config = config_from_patch_and_strides(patch, strides, 1, 2)
        assert list(config.divisor) == plan_divisor  # never shrinks an axis more than nnU-Net's U-Net does
    # The paper's own setting is reproduced exactly.
    paper = config_from_patch_and_strides([128] * 3, [[1, 1, 1]] + [[2, 2, 2]] * 5, 1, 14)
    assert paper == SegResMambaConfig()


def test_clear_errors_for_2d_and_too_small_patches():
    with pytest.raises(UnsupportedConfigurationError, match="3d_fullres"):
        config_from_patch_and_strides([256, 256], [[1, 1], [2, 2]], 1, 2)
    with pytest.raises(PatchTooSmallError, match="at least"):
        config_from_patch_and_strides([8, 64, 64], [[1, 1, 1]] + [[2, 2, 2]] * 3, 1, 2)


def test_ablations_of_table_4_build_what_their_options_name():
    """Exp 1: SegMamba stages, no extra conv; Exp 2: CMMB, no extra conv; Exp 3 (the full model): CMMB with the
    extra conv before each downsampling."""
    variants = {
        "exp1": (dict(encoder_block="segmamba", extra_conv_before_downsampling=False), SegMambaStage, 2),
        "exp2": (dict(encoder_block="cmmb", extra_conv_before_downsampling=False), ConvMambaMixedBlock, 2),
        "exp3": (dict(), ConvMambaMixedBlock, 3),
    }
    for name, (options, block, layers_per_level) in variants.items():
        net = SegResMamba(config_from_patch_and_strides(*BRATS_LIKE, **SMALL, **options)).eval()
        assert len(net.levels[0]) == 1 and isinstance(net.levels[0][0], block), name
        for level in net.levels[1:]:
            assert len(level) == layers_per_level and isinstance(level[-1], block), name
            downsampling = level[-2][1]
            assert downsampling.stride == (2, 2, 2) and downsampling.kernel_size == (2, 2, 2), name
            if layers_per_level == 3:  # the extra conv: k3, stride 1, same width
                extra = level[0][1]
                assert extra.kernel_size == (3, 3, 3) and extra.stride == (1, 1, 1), name
                assert extra.in_channels == extra.out_channels == downsampling.in_channels, name
        with torch.no_grad():
            assert net(torch.randn(1, 4, 64, 64, 64)).shape == (1, 3, 64, 64, 64)

def test_paper_configuration_macs_and_parameters():
    net = SegResMamba()  # the paper's defaults: 1 channel, 14 classes, 128^3
    macs = count_macs(net, (1, 1, 128, 128, 128))
    assert abs(macs / 336.45e9 - 1) < 0.02, macs
    # The counts of docs/architecture.md: the plan mapping and kernel rules must leave them unchanged.
    assert (count_parameters(net), macs) == (76_807_592, 333_246_431_232)
    hippocampus = SegResMamba(config_from_patch_and_strides(*HIPPOCAMPUS))
    assert count_parameters(hippocampus) == 76_275_612
    assert count_macs(hippocampus, (1, 1, 40, 56, 40)) == 24_186_892_800


def test_anisotropic_plan_halves_an_axis_only_where_the_plan_has():
    stem, down, inner = strides_from_plan(ANISOTROPIC[1])
    assert stem == (1, 2, 2) and down == ((1, 2, 2), (2, 2, 2), (2, 2, 2))
    # level 0 (16x32x32) halves like the plan's next stage (to 16x16x16), not to 8x16x16
    assert inner == ((1, 2, 2), (2, 2, 2), (2, 2, 2), (1, 1, 1))


def conv_kernels_by_grid(net: SegResMamba, size) -> dict:
    """Output grid -> the kernels of the convs with a spatial extent (> 1 somewhere) that write it."""
    found: dict = {}
    hooks = [m.register_forward_hook(lambda m, i, o: found.setdefault(tuple(o.shape[2:]), set()).add(m.kernel_size))
             for m in net.modules() if isinstance(m, (nn.Conv3d, nn.ConvTranspose3d)) and max(m.kernel_size) > 1
             and m.kernel_size != m.stride]  # kernel == stride: the downsamplings and the final upsampling
    with torch.no_grad():
        net(torch.randn(1, 1, *size))
    for hook in hooks:
        hook.remove()
    return found


@pytest.mark.parametrize("encoder_block", ["cmmb", "segmamba"])
def test_convs_follow_the_plans_kernel_anisotropy(encoder_block):
    patch, strides, channels, classes = ANISOTROPIC
    config = config_from_patch_and_strides(patch, strides, channels, classes, plan_kernels=THICK_SLICES_KERNELS,
                                           encoder_block=encoder_block, **SMALL)
    net = SegResMamba(config).eval()
    assert net.stem.kernel_size == (1, 7, 7)
    grid_kernel = dict(zip(nnunet_grids(patch, strides), THICK_SLICES_KERNELS))
    for grid, kernels in conv_kernels_by_grid(net, patch).items():
        for kernel in kernels:
            # the plan's kernel-1 axes get 1; elsewhere the paper's sizes (7, 5, 3), never 1
            assert all((k == 1) == (p == 1) for k, p in zip(kernel, grid_kernel[grid])), (grid, kernel)
    # Where the plan convolves every axis the network is the same as with the default kernels.
    isotropic = SegResMamba(config_from_patch_and_strides(*HIPPOCAMPUS, plan_kernels=[[3, 3, 3]] * 4, **SMALL))
    reference = SegResMamba(config_from_patch_and_strides(*HIPPOCAMPUS, **SMALL))
    assert [v.shape for v in isotropic.state_dict().values()] == [v.shape for v in reference.state_dict().values()]


@pytest.mark.parametrize("patch", [[42, 56, 40], [45, 51, 37]])
def test_any_patch_trains_with_nnunets_deep_supervision_targets(patch):
    """Outputs of exactly the sizes nnU-Net's DownsampleSegForDSTransform gives the targets, through nnU-Net's
    deep-supervision loss."""
    _, strides, channels, classes = HIPPOCAMPUS
    net = SegResMamba(config_from_patch_and_strides(patch, strides, channels, classes, deep_supervision=True,
                                                    **SMALL))
    scales = net.deep_supervision_scales()
    seg = torch.randint(0, classes, (1, *patch), dtype=torch.int16)
    targets = DownsampleSegForDSTransform(scales)(segmentation=seg)["segmentation"]
    outputs = net(torch.randn(1, channels, *patch))
    assert [tuple(o.shape[2:]) for o in outputs] == [tuple(t.shape[1:]) for t in targets]
    weights = [1 / 2 ** i for i in range(len(scales))]
    loss = DeepSupervisionWrapper(DC_and_CE_loss({"batch_dice": False, "smooth": 1e-5, "do_bg": False}, {},
                                                 dice_class=MemoryEfficientSoftDiceLoss), weights)
    value = loss(outputs, [t[None].long() for t in targets])
    value.backward()
    assert math.isfinite(value.item())


def test_pretrained_weights_fine_tune_to_another_class_count(tmp_path):
    """nnUNetv2_train -pretrained_weights: nnU-Net's own loader skips the class-dependent layers."""
    source = SegResMamba(config_from_patch_and_strides(*BRATS_LIKE[:3], 14, deep_supervision=True, **SMALL))
    torch.save({"network_weights": source.state_dict()}, tmp_path / "checkpoint_final.pth")
    target = SegResMamba(config_from_patch_and_strides(*BRATS_LIKE[:3], 3, deep_supervision=True, **SMALL))
    seg_layers_before = {k: v.clone() for k, v in target.state_dict().items() if ".seg_layers." in k}
    assert len(seg_layers_before) == 2 * 4  # final conv + 3 heads, weight and bias each
    load_pretrained_weights(target, str(tmp_path / "checkpoint_final.pth"))
    for key, value in target.state_dict().items():
        if ".seg_layers." in key:  # 3 classes here, 14 in the source: kept as initialised
            assert value.shape != source.state_dict()[key].shape and torch.equal(value, seg_layers_before[key]), key
        else:
            assert torch.equal(value, source.state_dict()[key]), key


def test_state_dict_names_and_shapes_are_those_of_release_0_1_0():
    """Checkpoints written by 0.1.0 load strictly (--c, nnUNetv2_predict): the same tensor names and shapes,
    recorded from that release for both encoder kinds at the Hippocampus plan."""
    recorded = json.loads((DATA / "segresmamba_state_dict_v0.1.0.json").read_text())
    for name, options in {"cmmb": {}, "segmamba": dict(encoder_block="segmamba",
                                                       extra_conv_before_downsampling=False)}.items():
        net = SegResMamba(config_from_patch_and_strides(*HIPPOCAMPUS[:2], 1, 3, deep_supervision=True, **SMALL,
                                                        **options))
        assert {k: list(v.shape) for k, v in net.state_dict().items()} == recorded[name], name
