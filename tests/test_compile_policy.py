"""When SegResMamba's trainers compile the network: only when nnUNet_compile=true asks for it, and only with
the scan on a registered GPU kernel."""

import torch

from nnunetv2_segresmamba import ssm


def test_segresmamba_trainer_compiles_only_when_asked_and_on_a_registered_kernel(monkeypatch):
    from nnunetv2_segresmamba.training import nnUNetTrainerSegResMamba
    trainer = object.__new__(nnUNetTrainerSegResMamba)  # only the compile decision is under test
    trainer.device = torch.device("cuda")
    logged = []
    trainer.print_to_log_file = lambda *args, **kwargs: logged.append(" ".join(map(str, args)))
    monkeypatch.setattr(ssm, "resolve_backend", lambda device: "cuda")
    monkeypatch.delenv("nnUNet_compile", raising=False)
    assert not trainer._do_i_compile()  # nnU-Net would compile here; SegResMamba waits to be asked
    monkeypatch.setenv("nnUNet_compile", "true")
    assert trainer._do_i_compile()
    monkeypatch.setattr(ssm, "resolve_backend", lambda device: "torch")
    assert not trainer._do_i_compile()
    assert any("torch backend" in line for line in logged)
    monkeypatch.setenv("nnUNet_compile", "false")
    assert not trainer._do_i_compile()
