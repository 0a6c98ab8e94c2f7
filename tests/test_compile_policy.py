"""When SegResMamba's trainers compile the network: whenever nnU-Net would compile its own (nnUNet_compile unset
or true, on a GPU), with the scan on a registered GPU kernel, and always with inductor's comprehensive padding
off (the setting under which compiled gradients match eager ones)."""

import torch
import torch._inductor.config as inductor_config

from nnunetv2_segresmamba import ssm


def test_segresmamba_trainer_compiles_as_nnunet_does_on_a_registered_kernel(monkeypatch):
    from nnunetv2_segresmamba.training import nnUNetTrainerSegResMamba
    trainer = object.__new__(nnUNetTrainerSegResMamba)  # only the compile decision is under test
    trainer.device = torch.device("cuda")
    logged = []
    trainer.print_to_log_file = lambda *args, **kwargs: logged.append(" ".join(map(str, args)))
    monkeypatch.setattr(ssm, "resolve_backend", lambda device: "cuda")
    monkeypatch.setattr(inductor_config, "comprehensive_padding", True)
    monkeypatch.delenv("nnUNet_compile", raising=False)
    assert trainer._do_i_compile()  # nnU-Net's default: compile on a GPU
    assert inductor_config.comprehensive_padding is False
    monkeypatch.setenv("nnUNet_compile", "true")
    assert trainer._do_i_compile()
    monkeypatch.setattr(ssm, "resolve_backend", lambda device: "torch")
    assert not trainer._do_i_compile()
    assert any("torch backend" in line for line in logged)
    monkeypatch.setattr(ssm, "resolve_backend", lambda device: "triton")
    monkeypatch.setenv("nnUNet_compile", "false")
    assert not trainer._do_i_compile()
    trainer.device = torch.device("cpu")
    monkeypatch.delenv("nnUNet_compile", raising=False)
    assert not trainer._do_i_compile()  # nnU-Net never compiles on a CPU
