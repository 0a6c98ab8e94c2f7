"""SegResMamba built from nnU-Net-like plans: shapes, gradients, ablations, plan mapping, MACs."""

import pytest
import torch

from nnunetv2_segresmamba.network import (PatchTooSmallError, SegResMamba, SegResMambaConfig,
                                          UnsupportedConfigurationError, config_from_patch_and_strides)
from nnunetv2_segresmamba.network.complexity import count_macs, count_parameters
from nnunetv2_segresmamba.network.from_plans import strides_from_plan

SMALL = dict(widths=(8, 16, 16, 32))  # the paper's topology with narrow channels: fast on a CPU

HIPPOCAMPUS = ([40, 56, 40], [[1, 1, 1], [2, 2, 2], [2, 2, 2], [2, 2, 2]], 1, 3)
BTCV_LIKE = ([32, 96, 96], [[1, 1, 1], [1, 2, 2], [2, 2, 2], [2, 2, 2], [2, 2, 2], [1, 2, 2]], 1, 14)
BRATS_LIKE = ([64, 64, 64], [[1, 1, 1], [2, 2, 2], [2, 2, 2], [2, 2, 2], [2, 2, 2]], 4, 3)


@pytest.mark.parametrize("plan", [HIPPOCAMPUS, BTCV_LIKE, BRATS_LIKE], ids=["hippocampus", "btcv", "brats"])
@pytest.mark.parametrize("odd", [False, True])
def test_logits_have_the_input_size(plan, odd):
    patch, strides, channels, classes = plan
    config = config_from_patch_and_strides(patch, strides, channels, classes, **SMALL)
    net = SegResMamba(config).eval()
    size = [p - 3 if odd else p for p in patch]  # odd sizes need internal padding and cropping
    with torch.no_grad():
        out = net(torch.randn(1, channels, *size))
    assert out.shape == (1, classes, *size)
    assert torch.isfinite(out).all()


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
    assert [tuple(o.shape[2:]) for o in outputs] == [(61, 64, 62), (31, 32, 31), (16, 16, 16), (8, 8, 8)]
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


def test_ablations_of_table_4_build_and_differ():
    variants = {
        "exp1": dict(encoder_block="segmamba", extra_conv_before_downsampling=False),
        "exp2": dict(encoder_block="cmmb", extra_conv_before_downsampling=False),
        "exp3": dict(),
    }
    counts = {}
    for name, options in variants.items():
        net = SegResMamba(config_from_patch_and_strides(*BRATS_LIKE, **SMALL, **options)).eval()
        with torch.no_grad():
            assert net(torch.randn(1, 4, 64, 64, 64)).shape == (1, 3, 64, 64, 64)
        counts[name] = count_parameters(net)
    assert len(set(counts.values())) == 3


def test_paper_configuration_macs_and_parameters():
    net = SegResMamba()  # the paper's defaults: 1 channel, 14 classes, 128^3
    macs = count_macs(net, (1, 1, 128, 128, 128))
    assert abs(macs / 336.45e9 - 1) < 0.02, macs
    assert 76e6 < count_parameters(net) < 78e6
