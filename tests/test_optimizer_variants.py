"""The optimiser variants keep weight decay off the parameters the ToM layers mark (A_log, D) and on the rest."""

import copy
import json
from pathlib import Path
from types import SimpleNamespace

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


def test_the_default_optimizer_is_nnunets_sgd_and_its_fused_form_makes_the_same_updates():
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    from nnunetv2_segresmamba.training import nnUNetTrainerSegResMamba

    def trainer_like(network: torch.nn.Module, fused: bool) -> SimpleNamespace:
        return SimpleNamespace(network=network, initial_lr=1e-2, weight_decay=3e-5, num_epochs=10,
                               fuses_optimizer=lambda: fused)

    torch.manual_seed(0)
    ours = torch.nn.Sequential(torch.nn.Conv3d(1, 4, 3), torch.nn.InstanceNorm3d(4, affine=True),
                               torch.nn.Conv3d(4, 2, 1))
    theirs, initial = copy.deepcopy(ours), copy.deepcopy(ours)
    fused, _ = nnUNetTrainerSegResMamba.configure_optimizers(trainer_like(ours, True))
    reference, _ = nnUNetTrainer.configure_optimizers(trainer_like(theirs, False))
    assert fused.defaults["fused"] and not reference.defaults.get("fused")
    assert {k: v for k, v in fused.defaults.items() if k not in ("fused", "foreach")} == \
        {k: v for k, v in reference.defaults.items() if k not in ("fused", "foreach")}
    for step in range(3):
        x = torch.randn(2, 1, 6, 6, 6, generator=torch.Generator().manual_seed(step))
        for network, optimizer in ((ours, fused), (theirs, reference)):
            optimizer.zero_grad()
            network(x).square().mean().backward()
            optimizer.step()
    for a, b in zip(ours.parameters(), theirs.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert max((a - b).abs().max() for a, b in zip(ours.parameters(), initial.parameters())) > 1e-3  # it trained
