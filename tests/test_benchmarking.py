"""The benchmark tables: ratios against a baseline of the same run, and the baseline always measured."""

import pytest

from nnunetv2_segresmamba.benchmarking import networks
from nnunetv2_segresmamba.benchmarking.report import MissingBaselineError, add_ratios


def test_ratios_are_taken_against_the_matching_baseline_row():
    rows = [dict(network="PlainConvUNet", case="a", step=10.0), dict(network="SegResMamba", case="a", step=25.0),
            dict(network="PlainConvUNet", case="b", step=4.0), dict(network="SegResMamba", case="b", step=2.0)]
    add_ratios(rows, {"network": "PlainConvUNet"}, ["step"], ["case"])
    assert [row["step_ratio"] for row in rows] == [1.0, 2.5, 1.0, 0.5]


def test_a_missing_baseline_is_an_error_that_says_so():
    rows = [dict(network="SegResMamba", case="a", step=25.0)]
    with pytest.raises(MissingBaselineError, match="network=PlainConvUNet"):
        add_ratios(rows, {"network": "PlainConvUNet"}, ["step"], ["case"])


def test_networks_run_always_measures_its_baseline(monkeypatch):
    measured = []

    def fake_measure(name, case, mode, device, warmup, repeats):
        measured.append((name, mode))
        return dict(network=name, patch=case.label, batch=case.batch, compile=mode, train_step_ms=1.0 + len(measured))

    monkeypatch.setattr(networks, "measure_in_own_process", fake_measure)
    rows = networks.run([networks.Case((8, 8, 8), 2, 1)], ["SegResMamba"], ["default"], "cpu", 0, 1,
                        baseline_compile="none")
    assert ("PlainConvUNet", "none") in measured and ("SegResMamba", "default") in measured
    by_name = {(r["network"], r["compile"]): r for r in rows}
    assert by_name[("PlainConvUNet", "none")]["train_step_ms_ratio"] == 1.0
    assert by_name[("SegResMamba", "default")]["train_step_ms_ratio"] == pytest.approx(
        by_name[("SegResMamba", "default")]["train_step_ms"] / by_name[("PlainConvUNet", "none")]["train_step_ms"])


@pytest.mark.parametrize("ddp", [False, True])
def test_the_benchmark_loss_weights_the_outputs_as_nnunet_does(ddp):
    import torch
    import torch.nn.functional as F

    from nnunetv2_segresmamba.benchmarking.measure import deep_supervision_loss
    torch.manual_seed(0)
    outputs = [torch.randn(2, 3, 8, 8, 8), torch.randn(2, 3, 4, 4, 4), torch.randn(2, 3, 2, 2, 2)]
    target = torch.randint(0, 3, (2, 8, 8, 8))

    def soft_dice_loss(logits, labels):
        # nnU-Net's MemoryEfficientSoftDiceLoss per sample and class, background left out, smooth 1e-5.
        probabilities = logits.softmax(1)[:, 1:]
        one_hot = F.one_hot(labels, logits.shape[1]).movedim(-1, 1)[:, 1:].float()
        axes = (2, 3, 4)
        intersection = (probabilities * one_hot).sum(axes)
        dice = (2 * intersection + 1e-5) / (probabilities.sum(axes) + one_hot.sum(axes) + 1e-5).clip(min=1e-8)
        return -dice.mean()

    per_output = []
    for out in outputs:
        labels = F.interpolate(target[:, None].float(), size=out.shape[2:])[:, 0].long()
        per_output.append(F.cross_entropy(out, labels) + soft_dice_loss(out, labels))
    lowest = 1e-6 if ddp else 0.0  # nnU-Net's weight of the coarsest output (DDP needs a gradient there)
    expected = (per_output[0] + per_output[1] / 2 + lowest * per_output[2]) / (1 + 1 / 2 + lowest)
    assert deep_supervision_loss(outputs, target, ddp=ddp).item() == pytest.approx(expected.item(), rel=1e-5)
    assert deep_supervision_loss(outputs[0], target).item() == pytest.approx(per_output[0].item(), rel=1e-5)


def test_scan_benchmark_finds_the_scans_a_training_step_runs():
    from nnunetv2_segresmamba.benchmarking import scan_kernels
    shapes = scan_kernels.network_scan_shapes((40, 56, 40), 3, 7)
    # Hippocampus plan: levels 0 and 1 scan their CMMB's inner grid, then their own grid; levels 2 and 3
    # (inner stride 1) scan the 5x7x5 grid twice each.
    assert [(s.channels, s.length) for s in shapes] == [(288, 1400), (288, 11200), (576, 175), (576, 1400),
                                                        (1152, 175), (1152, 175), (2304, 175), (2304, 175)]
    assert all(s.batch == 7 and s.groups == 3 and s.d_state == 16 for s in shapes)


def test_scan_benchmark_settings_are_checked_and_restored():
    from nnunetv2_segresmamba.benchmarking import scan_kernels
    from nnunetv2_segresmamba import ssm
    if not ssm.triton_available():
        pytest.skip(f"Triton: {ssm.triton_import_error()}")
    from nnunetv2_segresmamba.ssm.kernels import triton_scan
    assert scan_kernels.parse_setting("default") == {}
    setting = scan_kernels.parse_setting("CHUNK=16,BACKWARD_WARPS=2")
    assert setting == {"CHUNK": 16, "BACKWARD_WARPS": 2}
    with pytest.raises(ValueError, match="NAME=INTEGER"):
        scan_kernels.parse_setting("CHUNKS=16")
    before = triton_scan.CHUNK, triton_scan.BACKWARD_WARPS
    with pytest.raises(RuntimeError):
        with scan_kernels.kernel_setting(setting):
            assert (triton_scan.CHUNK, triton_scan.BACKWARD_WARPS) == (16, 2)
            raise RuntimeError("a failed measurement")
    assert (triton_scan.CHUNK, triton_scan.BACKWARD_WARPS) == before


@pytest.mark.parametrize("name,kind", [
    ("_backward_kernel", "selective scan"),
    ("triton_red_fused__native_batch_norm_legit_convolution_backward_leaky_relu_backward", "generated by torch.compile"),
    ("void cudnn::engines_precompiled::nchwToNhwcKernel<__half, __half, float, false, true>", "layout conversions"),
    ("sm90_xmma_dgrad_implicit_gemm_f16f16_f16f32_f32_nhwckrsc_nhwc_tilesize64x128x64", "convolutions"),
    ("cudnn_generated_fort_native_sm80_convFwd_knob_21_128x128x32_4_0", "convolutions"),
    ("void cudnn::cnn::wgrad2d_grouped_direct_kernel<false, true, int, __half, float, float>", "convolutions"),
    ("nvjet_sm90_hsh_32x64_64x16_2x2_h_bz_NTN", "matrix products"),
    ("void at::native::(anonymous namespace)::multi_tensor_apply_kernel<FusedSgdMathFunctor>", "optimizer, "
     "gradient scaling and clipping"),
    ("Memcpy HtoD (Pinned -> Device)", "copies"),
    ("void at::native::vectorized_elementwise_kernel<4, at::native::FillFunctor<float>>", "other"),
])
def test_step_profile_sorts_kernels_by_kind(name, kind):
    from nnunetv2_segresmamba.benchmarking.step_profile import kernel_kind
    assert kernel_kind(name) == kind
