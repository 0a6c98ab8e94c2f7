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


def trainer_on(device: str, monkeypatch, backend: str | None = None):
    """A real trainer set up for ``device`` (nothing runs on it), its scan backend from the environment."""
    from nnunetv2_segresmamba.training import nnUNetTrainerSegResMamba
    if backend is None:
        monkeypatch.delenv(ssm.BACKEND_ENV, raising=False)
    else:
        monkeypatch.setenv(ssm.BACKEND_ENV, backend)
    plans = json.loads(PLANS.read_text())
    plans["continue_training"] = False  # nnU-Net's run_training adds this key
    dataset = json.loads((PLANS.parent / "hippocampus_dataset.json").read_text())
    trainer = nnUNetTrainerSegResMamba(plans, "3d_fullres", 0, dataset, torch.device(device))
    logged = []
    trainer.print_to_log_file = lambda *args, **kwargs: logged.append(" ".join(map(str, args)))
    return trainer, logged


def test_segresmamba_trainer_compiles_as_nnunet_does_on_a_registered_kernel(monkeypatch, tmp_path):
    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        monkeypatch.setenv(name, str(tmp_path / name))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # a GPU machine, as far as the set-up sees
    monkeypatch.setattr(ssm.registry, "unavailable_reason", lambda backend: None)  # both GPU kernels import
    monkeypatch.delenv("nnUNet_compile", raising=False)
    trainer, _ = trainer_on("cuda", monkeypatch)
    assert trainer._do_i_compile()  # nnU-Net's default: compile on a GPU; "auto" takes a registered kernel
    monkeypatch.setenv("nnUNet_compile", "true")
    assert trainer._do_i_compile()
    monkeypatch.setenv("nnUNet_compile", "false")
    assert not trainer._do_i_compile()
    monkeypatch.delenv("nnUNet_compile")
    # the network's configuration names the backend: the PyTorch scan never compiles, even on a GPU
    torch_trainer, logged = trainer_on("cuda", monkeypatch, backend="torch")
    assert torch_trainer.network_config.scan_backend == "torch"
    assert not torch_trainer._do_i_compile()
    assert any("torch backend" in line for line in logged)
    triton_trainer, _ = trainer_on("cuda", monkeypatch, backend="triton")
    assert triton_trainer._do_i_compile()
    cpu_trainer, _ = trainer_on("cpu", monkeypatch)
    assert not cpu_trainer._do_i_compile()  # nnU-Net never compiles on a CPU


def test_building_the_network_turns_inductors_padding_off(monkeypatch):
    """nnU-Net's trainer and predictor both build the network through build_network_architecture before either
    compiles it."""
    from nnunetv2_segresmamba.training import nnUNetTrainerSegResMamba
    monkeypatch.setattr(inductor_config, "comprehensive_padding", True)
    plans = PlansManager(json.loads(PLANS.read_text()))
    nnUNetTrainerSegResMamba.build_network_architecture(plans, plans.get_configuration("3d_fullres"), 1, 3, False)
    assert inductor_config.comprehensive_padding is False
