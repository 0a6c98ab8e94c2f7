"""GPU tests: mamba-ssm's CUDA scan against the float64 reference and the torch backend, one state_dict
on both backends, and fp16 training without NaNs. Skipped, with the reason, without a GPU or mamba-ssm."""

import pytest
import torch

from nnunetv2_segresmamba.network import SegResMamba, TriOrientedMamba, config_from_patch_and_strides
from nnunetv2_segresmamba.ssm import mamba_ssm_available, selective_scan_cuda, selective_scan_reference, selective_scan_torch

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine"),
    pytest.mark.skipif(not mamba_ssm_available(), reason="mamba-ssm is not installed (pip install '.[cuda]')"),
]
DEVICE = torch.device("cuda")


def rel(a, b):
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


def scan_inputs(length, groups=3, channels=48, d_state=16, batch=2, seed=0):
    g = torch.Generator(device=DEVICE).manual_seed(seed)
    kw = dict(device=DEVICE, generator=g)
    return [torch.randn(batch, channels, length, **kw), torch.randn(batch, channels, length, **kw),
            -torch.rand(channels, d_state, **kw) * 4 - 0.05, torch.randn(batch, groups, d_state, length, **kw),
            torch.randn(batch, groups, d_state, length, **kw), torch.randn(channels, **kw),
            torch.randn(channels, **kw) * 0.5]


@pytest.mark.parametrize("length", [7, 512, 4099])
def test_cuda_scan_matches_reference_and_torch_backend(length):
    inputs = [t.requires_grad_() for t in scan_inputs(length)]
    out = selective_scan_cuda(*inputs)
    weights = torch.randn_like(out)
    grads = torch.autograd.grad((out * weights).sum(), inputs)
    ref_inputs = [t.detach().double().requires_grad_() for t in inputs]
    ref = selective_scan_reference(*ref_inputs) if length <= 512 else None
    torch_inputs = [t.detach().clone().requires_grad_() for t in inputs]
    other = selective_scan_torch(*torch_inputs)
    other_grads = torch.autograd.grad((other * weights).sum(), torch_inputs)
    assert rel(out, other) < 1e-4
    for g, h in zip(grads, other_grads):
        assert rel(g, h) < 1e-3
    if ref is not None:
        assert rel(out, ref) < 1e-4
        ref_grads = torch.autograd.grad((ref * weights.double()).sum(), ref_inputs)
        for g, h in zip(grads, ref_grads):
            assert rel(g, h) < 1e-3


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_tom_is_the_same_function_on_both_backends(monkeypatch, dtype):
    torch.manual_seed(0)
    tom = TriOrientedMamba(48).to(DEVICE)
    x = torch.randn(2, 48, 12, 10, 14, device=DEVICE, requires_grad=True)

    def run(backend):
        tom.scan_backend = backend
        tom.zero_grad()
        x.grad = None
        with torch.autocast("cuda", dtype=dtype, enabled=dtype != torch.float32):
            out = tom(x)
        out.float().square().mean().backward()
        return out.float(), x.grad.clone(), tom.orders["interslice"].A_log.grad.clone()

    cuda_out, cuda_dx, cuda_dA = run("cuda")
    torch_out, torch_dx, torch_dA = run("torch")
    tol = 1e-4 if dtype == torch.float32 else 2e-2
    assert rel(cuda_out, torch_out) < tol
    assert rel(cuda_dx, torch_dx) < tol * 10
    assert rel(cuda_dA, torch_dA) < tol * 10


def test_one_state_dict_gives_the_same_logits_on_gpu_and_cpu(monkeypatch):
    # fp32 means fp32 here: TF32 convolutions and matmuls (on by default for cuDNN) differ by ~1e-3.
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    config = config_from_patch_and_strides([40, 56, 40], [[1, 1, 1]] + [[2, 2, 2]] * 3, 1, 3)
    torch.manual_seed(0)
    gpu_net = SegResMamba(config).to(DEVICE).eval()
    cpu_net = SegResMamba(config).eval()
    cpu_net.load_state_dict({k: v.cpu() for k, v in gpu_net.state_dict().items()}, strict=True)
    # The same weights on the GPU with the PyTorch scan: the backend is part of the configuration, not the weights.
    gpu_torch_net = SegResMamba(config.with_(scan_backend="torch")).to(DEVICE).eval()
    gpu_torch_net.load_state_dict(gpu_net.state_dict(), strict=True)
    x = torch.randn(1, 1, 40, 56, 40)
    with torch.no_grad():
        cpu_logits = cpu_net(x)  # torch backend, fp32
        gpu_fp32 = gpu_net(x.to(DEVICE)).cpu()  # CUDA backend, fp32
        with torch.autocast("cuda", dtype=torch.float16):
            gpu_fp16 = gpu_net(x.to(DEVICE)).float().cpu()
            gpu_fp16_torch = gpu_torch_net(x.to(DEVICE)).float().cpu()
    assert rel(gpu_fp32, cpu_logits) < 1e-4
    # Under fp16 autocast both backends are an fp16 rounding away from the fp32 logits, and from each other.
    fp16_error = max(rel(gpu_fp16, cpu_logits), rel(gpu_fp16_torch, cpu_logits))
    print(f"fp16 vs fp32: {fp16_error:.2e}; cuda vs torch under fp16: {rel(gpu_fp16, gpu_fp16_torch):.2e}")
    assert fp16_error < 5e-3
    assert rel(gpu_fp16, gpu_fp16_torch) < 3e-3  # measured 1.2e-3 on an H200
    assert rel(gpu_fp16, cpu_logits) < 1e-2


def test_200_fp16_training_steps_stay_finite():
    torch.manual_seed(0)
    config = config_from_patch_and_strides([64, 64, 64], [[1, 1, 1]] + [[2, 2, 2]] * 5, 1, 3,
                                           widths=(24, 48, 96, 192))
    net = SegResMamba(config).to(DEVICE)
    optimizer = torch.optim.SGD(net.parameters(), lr=1e-2, momentum=0.99, nesterov=True, weight_decay=3e-5)
    scaler = torch.amp.GradScaler("cuda")
    losses = []
    for step in range(200):
        x = torch.randn(2, 1, 64, 64, 64, device=DEVICE)
        target = (x > 0.5).long() + (x > 1.5).long()  # learnable: intensity thresholds
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.float16):
            loss = torch.nn.functional.cross_entropy(net(x), target[:, 0])
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(net.parameters(), 12)
        scaler.step(optimizer)
        scaler.update()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses))), losses
    assert all(torch.isfinite(p).all() for p in net.parameters())
    assert sum(losses[-20:]) / 20 < 0.8 * sum(losses[:20]) / 20  # and it learns (seen: 0.84 -> 0.57)
