"""GPU: SegResMamba compiled as its trainers compile it (torch.compile with network/compile_settings.py applied)
computes what the eager network computes, on every GPU scan backend present. Skipped, with the reason, without
a GPU.

Eager GPU gradients are not bitwise repeatable (the scan kernels accumulate with atomics), so each test first
measures how far two identical eager runs differ and allows the compiled run a margin above that floor."""

import pytest
import torch

from nnunetv2_segresmamba import ssm
from nnunetv2_segresmamba.network import SegResMamba, config_from_patch_and_strides
from nnunetv2_segresmamba.network.compile_settings import apply_inductor_settings
from nnunetv2_segresmamba.network.encoder_blocks import ConvMambaMixedBlock

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")]
DEVICE = torch.device("cuda")
HIPPOCAMPUS_PATCH = [40, 56, 40]


def rel(a, b):
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


def backends_present():
    return [b for b in ssm.GPU_BACKENDS if ssm.available(b)]


BACKENDS = backends_present() or [pytest.param("none", marks=pytest.mark.skip(reason="neither Triton nor mamba-ssm "
                                                                                      "is present"))]


def gradient_errors(make_grads, compile_kwargs=None) -> tuple[dict, float]:
    """(relative error of every gradient that holds signal, compiled against eager; eager's run-to-run noise)."""
    eager, eager_again = make_grads(None), make_grads(None)
    apply_inductor_settings()
    torch._dynamo.reset()
    compiled = make_grads(compile_kwargs or {})
    largest = max(g.norm().item() for g in eager.values())
    # Parameters whose gradient vanishes analytically (conv biases before an InstanceNorm) hold rounding noise in
    # every run: compare the gradients that hold signal.
    signal = {n: g for n, g in eager.items() if g.norm().item() > 1e-4 * largest}
    noise = max(rel(eager_again[n], g) for n, g in signal.items())
    return {n: rel(compiled[n], g) for n, g in signal.items()}, noise


@pytest.mark.parametrize("backend", BACKENDS)
def test_compiled_cmmb_matches_eager_on_the_hippocampus_grid(monkeypatch, backend):
    """Level 0's block at the Hippocampus patch, fp32: its inner ToM runs on a 10x14x10 grid, 1400 tokens per
    channel, the size at which inductor's padding made the compiled gradients of everything before the inner
    scan unrelated to the eager ones."""
    monkeypatch.setenv(ssm.BACKEND_ENV, backend)
    torch.manual_seed(0)
    block = ConvMambaMixedBlock(48).to(DEVICE)
    x = torch.randn(2, 48, *[s // 2 for s in HIPPOCAMPUS_PATCH], device=DEVICE)
    upstream = torch.randn_like(x)

    def grads(compile_kwargs):
        block.zero_grad(set_to_none=True)
        inp = x.clone().requires_grad_()
        model = block if compile_kwargs is None else torch.compile(block, fullgraph=True, **compile_kwargs)
        (model(inp) * upstream).sum().backward()
        return {"<input>": inp.grad, **{n: p.grad.clone() for n, p in block.named_parameters() if p.grad is not None}}

    errors, noise = gradient_errors(grads)
    worst = sorted(errors.items(), key=lambda item: -item[1])[:3]
    print(f"{backend}: worst compiled-vs-eager gradients {worst}; eager run-to-run {noise:.1e}")
    assert worst[0][1] < max(1e-2, 100 * noise), worst


@pytest.mark.parametrize("backend", BACKENDS)
def test_compiled_network_matches_eager_under_fp16(monkeypatch, backend):
    """The whole network at the Hippocampus plan, as nnU-Net trains it (fp16 autocast, deep supervision)."""
    monkeypatch.setenv(ssm.BACKEND_ENV, backend)
    config = config_from_patch_and_strides(HIPPOCAMPUS_PATCH, [[1, 1, 1]] + [[2, 2, 2]] * 3, 1, 3,
                                           deep_supervision=True)
    torch.manual_seed(0)
    net = SegResMamba(config).to(DEVICE)
    x = torch.randn(2, 1, *HIPPOCAMPUS_PATCH, device=DEVICE)
    logits = {}

    def grads(compile_kwargs):
        net.zero_grad(set_to_none=True)
        model = net if compile_kwargs is None else torch.compile(net, fullgraph=True, **compile_kwargs)
        with torch.autocast("cuda", dtype=torch.float16):
            outputs = model(x)
        sum(o.float().square().mean() for o in outputs).backward()
        logits["compiled" if compile_kwargs is not None else "eager"] = outputs[0].float().detach()
        return {n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None}

    errors, noise = gradient_errors(grads)
    worst = sorted(errors.items(), key=lambda item: -item[1])[:3]
    logit_error = rel(logits["compiled"], logits["eager"])
    print(f"{backend}: compiled vs eager logits {logit_error:.1e}; worst gradients {worst}; eager run-to-run "
          f"{noise:.1e}")
    assert logit_error < 5e-3  # the fp16 tolerance of tests/test_gpu.py
    assert worst[0][1] < max(5e-2, 10 * noise), worst
