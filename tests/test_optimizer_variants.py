"""The optimiser variants keep weight decay off the parameters the ToM layers mark (A_log, D) and on the rest."""

import copy
import json
from pathlib import Path

import pytest
import torch

from nnunetv2_segresmamba.training import (nnUNetTrainerSegResMamba_AdamW1en3, nnUNetTrainerSegResMamba_AdamW3en4,
                                           nnUNetTrainerSegResMamba_SSMNoWD)

DATA = Path(__file__).parent / "data"
PLANS = json.loads((DATA / "hippocampus_plans.json").read_text())
DATASET = json.loads((DATA / "hippocampus_dataset.json").read_text())


@pytest.mark.parametrize("trainer_class,optimizer_class,lr", [
    (nnUNetTrainerSegResMamba_SSMNoWD, torch.optim.SGD, 1e-2),
    (nnUNetTrainerSegResMamba_AdamW1en3, torch.optim.AdamW, 1e-3),
    (nnUNetTrainerSegResMamba_AdamW3en4, torch.optim.AdamW, 3e-4)])
def test_weight_decay_skips_the_state_space_parameters(trainer_class, optimizer_class, lr, tmp_path, monkeypatch):
    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        monkeypatch.setenv(name, str(tmp_path / name))
    preprocessed = tmp_path / "nnUNet_preprocessed" / PLANS["dataset_name"] / "nnUNetPlans_3d_fullres"
    preprocessed.mkdir(parents=True)
    (preprocessed / "case.b2nd").touch()  # initialize() infers the dataset class from it
    plans = copy.deepcopy(PLANS)
    plans["configurations"]["3d_fullres"]["patch_size"] = [16, 24, 16]
    plans["continue_training"] = False  # nnU-Net's run_training adds this key

    class Narrow(trainer_class):
        network_options = dict(widths=(8, 8, 8, 8))

    # The optimizer as nnU-Net's initialize() makes it, for the network the trainer builds.
    trainer = Narrow(plans, "3d_fullres", 0, copy.deepcopy(DATASET), torch.device("cpu"))
    trainer.weight_decay = 3e-5
    trainer.initialize()
    optimizer = trainer.optimizer
    assert isinstance(optimizer, optimizer_class)
    decay_of = {id(p): group["weight_decay"] for group in optimizer.param_groups for p in group["params"]}
    names = dict(trainer.network.named_parameters())
    assert len(decay_of) == len(names)  # every parameter in exactly one group
    for name, p in names.items():
        expected = 0.0 if name.endswith(("A_log", ".D")) else 3e-5
        assert decay_of[id(p)] == expected, name
    assert optimizer.param_groups[0]["lr"] == lr
