"""The pure-PyTorch selective scan against the float64 loop, and the backend choice."""

import inspect
from dataclasses import replace

import pytest
import torch

from nnunetv2_segresmamba import ssm
from nnunetv2_segresmamba.ssm import kernels
from nnunetv2_segresmamba.ssm import (ScanBackendError, resolve_backend, selective_scan_reference,
                                      selective_scan_torch)


def random_scan_inputs(batch, channels, d_state, groups, length, seed):
    g = torch.Generator().manual_seed(seed)
    kw = dict(generator=g, dtype=torch.float64)
    return [
        torch.randn(batch, channels, length, **kw),                # u
        torch.randn(batch, channels, length, **kw),                # delta (before softplus)
        -torch.rand(channels, d_state, **kw) * 4 - 0.05,           # A < 0
        torch.randn(batch, groups, d_state, length, **kw),         # B
        torch.randn(batch, groups, d_state, length, **kw),         # C
        torch.randn(channels, **kw),                               # D
        torch.randn(channels, **kw) * 0.5,                         # delta_bias
    ]


def relative_error(a, b):
    """|a - b| / |b|; 0 when both are exactly zero (e.g. dL/dA for a one-token sequence)."""
    diff, ref = (a.double() - b.double()).norm().item(), b.double().norm().item()
    return diff / ref if ref > 0 else diff


@pytest.mark.parametrize("length,chunk,groups", [
    (1, None, 1), (5, None, 3), (63, 8, 1), (64, 8, 3), (65, 8, 3), (257, 16, 1), (1000, None, 3), (777, 31, 1)])
def test_torch_scan_matches_float64_loop_forward_and_backward(length, chunk, groups):
    inputs64 = [t.requires_grad_() for t in random_scan_inputs(2, 6, 16, groups, length, seed=length)]
    reference = selective_scan_reference(*inputs64)
    weights = torch.randn_like(reference)
    grads_ref = torch.autograd.grad((reference * weights).sum(), inputs64)

    inputs32 = [t.detach().float().requires_grad_() for t in inputs64]
    out = selective_scan_torch(*inputs32, chunk_size=chunk)
    grads = torch.autograd.grad((out * weights.float()).sum(), inputs32)

    assert out.dtype == torch.float32 and out.shape == reference.shape
    assert relative_error(out, reference) < 1e-5
    for name, g, g_ref in zip("u delta A B C D delta_bias".split(), grads, grads_ref):
        assert relative_error(g, g_ref) < 1e-5, name


def test_scan_state_stays_in_float32_for_half_inputs():
    # Decay ~1 and a large input drive the state to ~1e6, past float16's 65504; the read-out is small.
    length, channels = 600, 4
    u = torch.full((1, channels, length), 100.0)
    delta = torch.full((1, channels, length), 1.0)
    A = torch.full((channels, 16), -1e-6)
    B = torch.full((1, 1, 16, length), 10.0)
    C = torch.full((1, 1, 16, length), 1e-4)
    reference = selective_scan_reference(*(t.double() for t in (u, delta, A, B, C)), delta_softplus=False)
    assert reference.abs().max() < 6e4  # the output fits float16, only the state does not
    out = selective_scan_torch(u.half(), delta.half(), A, B.half(), C.half(), delta_softplus=False)
    assert out.dtype == torch.float16
    assert torch.isfinite(out).all()
    assert relative_error(out, reference) < 1e-3


def test_backend_choice(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.delenv(ssm.BACKEND_ENV, raising=False)
    assert resolve_backend(cpu) == "torch"
    monkeypatch.setenv(ssm.BACKEND_ENV, "torch")
    assert resolve_backend(cpu) == "torch"
    monkeypatch.setenv(ssm.BACKEND_ENV, "cuda")
    with pytest.raises(ScanBackendError, match="need a CUDA GPU"):
        resolve_backend(cpu)
    monkeypatch.setenv(ssm.BACKEND_ENV, "triton")
    with pytest.raises(ScanBackendError, match="need a CUDA GPU"):
        resolve_backend(cpu)
    monkeypatch.setenv(ssm.BACKEND_ENV, "mamba")
    with pytest.raises(ScanBackendError, match="not one of"):
        resolve_backend(cpu)


def test_forcing_cuda_without_mamba_ssm_says_how_to_install(monkeypatch):
    monkeypatch.setenv(ssm.BACKEND_ENV, "cuda")
    monkeypatch.setattr(kernels, "mamba_ssm_import_error", lambda: "ModuleNotFoundError: No module named 'mamba_ssm'")
    with pytest.raises(ScanBackendError, match=r"nnunetv2-segresmamba-install build-mamba"):
        resolve_backend(torch.device("cuda"))


def test_package_imports_without_mamba_ssm():
    import subprocess
    import sys
    code = ("import sys, nnunetv2_segresmamba.network, nnunetv2_segresmamba.ssm; "
            "assert 'mamba_ssm' not in sys.modules, 'mamba_ssm imported at module load'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_every_registered_backend_takes_the_one_scan_signature():
    """A backend whose parameters drift from ssm.SelectiveScan (a renamed, reordered or re-defaulted argument)
    would silently take the wrong tensors from the network's keyword call."""
    expected = list(inspect.signature(ssm.SelectiveScan.__call__).parameters.values())[1:]  # without self
    for name, backend in ssm.REGISTRY.items():
        parameters = list(inspect.signature(backend.scan).parameters.values())[:len(expected)]
        assert [(p.name, p.default) for p in parameters] == [(p.name, p.default) for p in expected], name


def test_the_network_configuration_names_the_backend_and_defaults_to_the_environment(monkeypatch):
    from nnunetv2_segresmamba.network import SegResMambaConfig, TriOrientedMamba
    monkeypatch.setenv(ssm.BACKEND_ENV, "Reference")
    assert SegResMambaConfig().scan_backend == "reference"
    monkeypatch.setenv(ssm.BACKEND_ENV, "bogus")
    with pytest.raises(ScanBackendError, match="bogus"):
        SegResMambaConfig()
    assert SegResMambaConfig(scan_backend="torch").scan_backend == "torch"  # the variable is not read then
    calls = []

    def recording_scan(*args, **kwargs):
        calls.append(kwargs)
        return selective_scan_torch(*args, **kwargs)

    monkeypatch.setitem(ssm.REGISTRY, "reference", replace(ssm.REGISTRY["reference"], scan=recording_scan))
    tom = TriOrientedMamba(4, scan_backend="reference")
    tom(torch.randn(1, 4, 2, 3, 2))
    assert len(calls) == 1 and calls[0]["delta_softplus"] is True
