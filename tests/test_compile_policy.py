"""When SegResMamba's trainers compile the network: whenever nnU-Net would compile its own (nnUNet_compile unset
or true, on a GPU), with the scan on a registered GPU kernel; and that the network is built for inductor with
comprehensive padding off (the setting under which compiled gradients match eager ones)."""

import json
from pathlib import Path

import torch
import torch._inductor.config as inductor_config
from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

from nnunetv2_segresmamba import ssm

PLANS = Path(__file__).parent / "data" / "hippocampus_plans.json"


def test_segresmamba_trainer_compiles_as_nnunet_does_on_a_registered_kernel(monkeypatch):
    from nnunetv2_segresmamba.training import nnUNetTrainerSegResMamba
    trainer = object.__new__(nnUNetTrainerSegResMamba)  # only the compile decision is under test
    trainer.device = torch.device("cuda")
    logged = []
    trainer.print_to_log_file = lambda *args, **kwargs: logged.append(" ".join(map(str, args)))
    monkeypatch.setattr(ssm, "resolve_backend", lambda device: "cuda")
    monkeypatch.delenv("nnUNet_compile", raising=False)
    assert trainer._do_i_compile()  # nnU-Net's default: compile on a GPU
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


def test_building_the_network_turns_inductors_padding_off(monkeypatch):
    """nnU-Net's trainer and predictor both build the network through build_network_architecture before either
    compiles it."""
    from nnunetv2_segresmamba.training import nnUNetTrainerSegResMamba
    monkeypatch.setattr(inductor_config, "comprehensive_padding", True)
    plans = PlansManager(json.loads(PLANS.read_text()))
    nnUNetTrainerSegResMamba.build_network_architecture(plans, plans.get_configuration("3d_fullres"), 1, 3, False)
    assert inductor_config.comprehensive_padding is False
