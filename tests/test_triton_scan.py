"""The Triton selective scan against the float64 loop, forward and every gradient, as a registered operator.

On a CUDA GPU the kernels run compiled. Without one they run in Triton's interpreter (TRITON_INTERPRET=1,
NumPy on the CPU), which executes the same kernel code, so CI checks their logic too; the interpreter is
slow, so those shapes are small (a few chunks of the kernel's fixed chunk length at most). conftest.py turns
the interpreter on before Triton is imported: Triton reads the flag when it defines a kernel."""

import pytest
import torch

from nnunetv2_segresmamba import ssm
from nnunetv2_segresmamba.ssm import registry, selective_scan_reference, selective_scan_torch, selective_scan_triton

pytestmark = pytest.mark.skipif(not ssm.triton_available(), reason=f"Triton: {ssm.triton_import_error()}")
ON_GPU = torch.cuda.is_available()
DEVICE = torch.device("cuda" if ON_GPU else "cpu")


def scan_inputs(batch, channels, d_state, groups, length, seed, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    kw = dict(generator=g, dtype=torch.float64)
    tensors = [torch.randn(batch, channels, length, **kw), torch.randn(batch, channels, length, **kw),
               -torch.rand(channels, d_state, **kw) * 4 - 0.05, torch.randn(batch, groups, d_state, length, **kw),
               torch.randn(batch, groups, d_state, length, **kw), torch.randn(channels, **kw),
               torch.randn(channels, **kw) * 0.5]
    return [t.to(DEVICE) for t in tensors]


def rel(a, b):
    diff, ref = (a.double() - b.double()).norm().item(), b.double().norm().item()
    return diff / ref if ref > 0 else diff


CPU_SHAPES = [(2, 6, 16, 3, 5), (1, 6, 16, 3, 130), (2, 4, 5, 1, 64), (1, 2, 16, 1, 1)]
GPU_SHAPES = CPU_SHAPES + [(2, 288, 16, 3, 4099), (1, 768, 16, 3, 175), (3, 36, 16, 3, 1000), (1, 96, 7, 1, 777)]


@pytest.mark.parametrize("batch,channels,d_state,groups,length", GPU_SHAPES if ON_GPU else CPU_SHAPES)
def test_triton_scan_matches_float64_loop_forward_and_backward(batch, channels, d_state, groups, length):
    assert_matches_float64(batch, channels, d_state, groups, length, seed=length)


def assert_matches_float64(batch, channels, d_state, groups, length, seed):
    """The Triton scan in fp32 against the float64 loop (a float64 PyTorch scan past 1000 tokens): forward
    and every gradient, in fp32."""
    inputs64 = [t.requires_grad_() for t in scan_inputs(batch, channels, d_state, groups, length, seed=seed)]
    with_reference = length <= 1000
    fast_reference = selective_scan_reference if with_reference else selective_scan_torch
    reference = fast_reference(*inputs64)
    weights = torch.randn_like(reference)
    grads_ref = torch.autograd.grad((reference * weights).sum(), inputs64)

    inputs32 = [t.detach().float().requires_grad_() for t in inputs64]
    out = selective_scan_triton(*inputs32)
    grads = torch.autograd.grad((out * weights.float()).sum(), inputs32)

    assert out.dtype == torch.float32 and out.shape == reference.shape
    assert rel(out, reference) < 1e-5
    for name, g, g_ref in zip("u delta A B C D delta_bias".split(), grads, grads_ref):
        assert g.dtype == torch.float32 and g.shape == g_ref.shape, name
        assert rel(g, g_ref) < 1e-4, name


@pytest.mark.parametrize("forward_programs_per_sm,backward_programs_per_sm,max_channel_block,tiles_3d",
                         [(1, 1, 1, 0), (4096, 4096, 1, 0), (4096, 4096, 2, 0), (4096, 1, 2, 0), (1, 4096, 1, 0),
                          (4096, 4096, 2, 1)])
def test_every_kernel_setting_gives_the_same_gradients(monkeypatch, forward_programs_per_sm, backward_programs_per_sm,
                                                       max_channel_block, tiles_3d):
    # One program per group and chunk (B/C gradients stored), or a group's channels split over several
    # programs (B/C gradients added atomically), in either pass; one or two channels per loop iteration; B/C
    # tiles loaded as [states, tokens] or as [1, states, tokens].
    from nnunetv2_segresmamba.ssm.kernels import triton_scan
    monkeypatch.setattr(triton_scan, "FORWARD_PROGRAMS_PER_SM", forward_programs_per_sm)
    monkeypatch.setattr(triton_scan, "BACKWARD_PROGRAMS_PER_SM", backward_programs_per_sm)
    monkeypatch.setattr(triton_scan, "MAX_CHANNEL_BLOCK", max_channel_block)
    monkeypatch.setattr(triton_scan, "GROUP_TILES_3D", tiles_3d)
    batch, channels, groups = 1, 8, 2
    sm = triton_scan._multiprocessors(DEVICE)
    block = triton_scan.channel_block(channels // groups)
    splits = triton_scan.channel_splits(channels // groups, block, 2 * groups * batch, backward_programs_per_sm,
                                        DEVICE)
    assert block == max_channel_block and (splits > 1) == (backward_programs_per_sm * sm > 2 * groups * batch)
    assert_matches_float64(batch, channels, 16, groups, 70, seed=11)


@pytest.mark.parametrize("length,tiles_3d", [(72, 1), (70, 0)])
def test_aligned_rows_give_the_same_gradients(monkeypatch, length, tiles_3d):
    # The kernels told that the token count is a multiple of 8 (72) or of 2 (70), with either tile shape.
    from nnunetv2_segresmamba.ssm.kernels import triton_scan
    monkeypatch.setattr(triton_scan, "ALIGN_ROWS", 1)
    monkeypatch.setattr(triton_scan, "GROUP_TILES_3D", tiles_3d)
    assert triton_scan.row_alignment(length) == (8 if length == 72 else 2)
    assert_matches_float64(2, 8, 16, 2, length, seed=13)


def test_row_alignment_is_the_largest_power_of_two_up_to_16_dividing_the_length(monkeypatch):
    from nnunetv2_segresmamba.ssm.kernels import triton_scan
    monkeypatch.setattr(triton_scan, "ALIGN_ROWS", 1)
    assert [triton_scan.row_alignment(n) for n in (11200, 1400, 175, 96, 262144)] == [16, 8, 1, 16, 16]
    monkeypatch.setattr(triton_scan, "ALIGN_ROWS", 0)
    assert triton_scan.row_alignment(1400) == 1


def test_half_inputs_keep_the_state_in_float32():
    # Decay ~1 and a large input drive the state to ~1e6, past float16's 65504; the read-out is small.
    length, channels = 150, 4
    u = torch.full((1, channels, length), 100.0, device=DEVICE)
    delta = torch.full((1, channels, length), 1.0, device=DEVICE)
    A = torch.full((channels, 16), -1e-6, device=DEVICE)
    B = torch.full((1, 1, 16, length), 10.0, device=DEVICE)
    C = torch.full((1, 1, 16, length), 1e-4, device=DEVICE)
    reference = selective_scan_reference(*(t.double() for t in (u, delta, A, B, C)), delta_softplus=False)
    assert reference.abs().max() > 100 and reference.abs().max() < 6e4
    out = selective_scan_triton(u.half(), delta.half(), A, B.half(), C.half(), delta_softplus=False)
    assert out.dtype == torch.float16 and torch.isfinite(out).all()
    assert rel(out, reference) < 1e-3


def test_half_inputs_give_half_gradients_close_to_float32():
    inputs = [t.float() for t in scan_inputs(1, 6, 16, 3, 70, seed=3)]
    half = [t.half().requires_grad_() if i in (0, 1, 3, 4) else t.clone().requires_grad_() for i, t in enumerate(inputs)]
    full = [t.clone().requires_grad_() for t in inputs]
    out_half = selective_scan_triton(*half)
    out_full = selective_scan_triton(*full)
    weights = torch.randn_like(out_full)
    grads_half = torch.autograd.grad((out_half.float() * weights).sum(), half)
    grads_full = torch.autograd.grad((out_full * weights).sum(), full)
    assert rel(out_half, out_full) < 2e-3
    for name, gh, gf, t in zip("u delta A B C D delta_bias".split(), grads_half, grads_full, half):
        assert gh.dtype == t.dtype, name
        assert rel(gh, gf) < 1e-2, name


def test_registered_operator_passes_opcheck():
    inputs = [t.float() for t in scan_inputs(1, 4, 16, 2, 70, seed=5)]
    u, delta, A, B, C, D, bias = [t.requires_grad_() for t in inputs]
    B = B.transpose(2, 3).contiguous().transpose(2, 3)  # strided as in the network: outputs stay contiguous
    torch.library.opcheck(torch.ops.segresmamba.scan_fwd.default, ("triton", u, delta, A, B, C, D, bias, True),
                          test_utils=("test_schema", "test_autograd_registration", "test_faketensor"))
    u, delta, A, B, C = [t.detach() for t in (u, delta, A, B, C)]
    torch.library.opcheck(torch.ops.segresmamba.scan_fwd.default, ("triton", u, delta, A, B, C, None, None, False),
                          test_utils=("test_schema", "test_faketensor"))


def test_tom_compiles_without_graph_break_and_matches_eager(monkeypatch):
    from nnunetv2_segresmamba.network import TriOrientedMamba
    # Forced onto the Triton kernels (on a CPU: interpreted) whatever the device.
    monkeypatch.setattr(registry, "_backend_for", lambda choice, device_type: "triton")
    torch.manual_seed(0)
    # Small: on a CPU each Triton program runs in the interpreter, at about a second per chunk scan.
    tom = TriOrientedMamba(4).to(DEVICE)
    x = torch.randn(1, 4, 3, 4, 5, device=DEVICE, requires_grad=True)
    eager = tom(x)
    eager_grads = torch.autograd.grad(eager.square().sum(), [x, tom.orders["interslice"].A_log])
    torch._dynamo.reset()
    # fullgraph=True: a graph break would raise here.
    compiled = torch.compile(tom, backend="inductor" if ON_GPU else "aot_eager", fullgraph=True)
    out = compiled(x)
    grads = torch.autograd.grad(out.square().sum(), [x, tom.orders["interslice"].A_log])
    assert rel(out, eager) < 1e-5
    for g, g_eager in zip(grads, eager_grads):
        assert rel(g, g_eager) < 1e-4


def test_one_state_dict_gives_the_same_tom_on_triton_and_torch(monkeypatch):
    from nnunetv2_segresmamba.network import TriOrientedMamba
    torch.manual_seed(0)
    tom = TriOrientedMamba(8).to(DEVICE)
    x = torch.randn(1, 8, 4, 3, 5, device=DEVICE)
    monkeypatch.setattr(registry, "_backend_for", lambda choice, device_type: "triton")
    with torch.no_grad():
        on_triton = tom(x)
    monkeypatch.setattr(registry, "_backend_for", lambda choice, device_type: "torch")
    with torch.no_grad():
        on_torch = tom(x)
    assert rel(on_triton, on_torch) < 1e-5


@pytest.mark.skipif(not ON_GPU, reason="times CUDA events: needs a GPU")
def test_scan_timing_for_auto_measures_forward_and_backward():
    from nnunetv2_segresmamba.network.scan_shapes import ScanShape
    from nnunetv2_segresmamba.ssm.auto_select import time_scans
    shapes = [ScanShape(2, 288, 1400, 3, 16), ScanShape(2, 288, 11200, 3, 16)]
    small, large = time_scans(shapes[:1], "triton", DEVICE), time_scans(shapes, "triton", DEVICE)
    assert 0 < small < large
