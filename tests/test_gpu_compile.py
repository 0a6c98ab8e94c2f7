"""GPU: SegResMamba compiled as nnU-Net compiles it (torch.compile, fp16 autocast) computes what the eager
network computes: logits and gradients within the fp16 tolerance, on every GPU scan backend present.
Skipped, with the reason, without a GPU."""

import pytest
import torch

from nnunetv2_segresmamba import ssm
from nnunetv2_segresmamba.network import SegResMamba, config_from_patch_and_strides

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")]
DEVICE = torch.device("cuda")


def rel(a, b):
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


def backends_present():
    return [b for b in ssm.GPU_BACKENDS if ssm._unavailable_reason(b) is None]


@pytest.mark.parametrize("backend", backends_present() or [pytest.param("none", marks=pytest.mark.skip(
    reason="neither Triton nor mamba-ssm is present"))])
def test_compiled_network_matches_eager_under_fp16(monkeypatch, backend):
    monkeypatch.setenv(ssm.BACKEND_ENV, backend)
    torch._dynamo.reset()
    config = config_from_patch_and_strides([40, 56, 40], [[1, 1, 1]] + [[2, 2, 2]] * 3, 1, 3, deep_supervision=True)
    torch.manual_seed(0)
    net = SegResMamba(config).to(DEVICE)
    x = torch.randn(2, 1, 40, 56, 40, device=DEVICE)

    def outputs_and_grads(model):
        net.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.float16):
            outputs = model(x)
        loss = sum(o.float().square().mean() for o in outputs)
        loss.backward()
        return [o.float() for o in outputs], {n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None}

    eager_out, eager_grads = outputs_and_grads(net)
    # As nnU-Net compiles its networks; fullgraph=True makes a graph break raise (it compiles the same graph).
    compiled = torch.compile(net, fullgraph=True)
    compiled_out, compiled_grads = outputs_and_grads(compiled)
    errors = [rel(c, e) for c, e in zip(compiled_out, eager_out)]
    # Parameters whose gradient vanishes analytically (conv biases before an InstanceNorm) hold rounding noise in
    # both runs: compare the gradients that hold signal.
    largest = max(g.norm().item() for g in eager_grads.values())
    grad_errors = {n: rel(compiled_grads[n], g) for n, g in eager_grads.items() if g.norm().item() > 1e-3 * largest}
    worst = sorted(grad_errors.items(), key=lambda item: -item[1])[:5]
    print(f"{backend}: compiled vs eager logits {max(errors):.1e}; worst gradients {worst}")
    assert max(errors) < 5e-3  # the fp16 tolerance of tests/test_gpu.py
    assert worst[0][1] < 5e-2, worst
