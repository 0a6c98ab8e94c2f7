"""The optimiser variants keep weight decay off the parameters the ToM layers mark (A_log, D) and on the rest."""

import pytest
import torch

from nnunetv2_segresmamba.network import SegResMamba, config_from_patch_and_strides
from nnunetv2_segresmamba.training import (nnUNetTrainerSegResMamba_AdamW1en3, nnUNetTrainerSegResMamba_AdamW3en4,
                                           nnUNetTrainerSegResMamba_SSMNoWD)


@pytest.mark.parametrize("trainer_class,optimizer_class,lr", [
    (nnUNetTrainerSegResMamba_SSMNoWD, torch.optim.SGD, 1e-2),
    (nnUNetTrainerSegResMamba_AdamW1en3, torch.optim.AdamW, 1e-3),
    (nnUNetTrainerSegResMamba_AdamW3en4, torch.optim.AdamW, 3e-4)])
def test_weight_decay_skips_the_state_space_parameters(trainer_class, optimizer_class, lr):
    trainer = object.__new__(trainer_class)  # only configure_optimizers is under test
    config = config_from_patch_and_strides([16, 16, 16], [[1, 1, 1]] + [[2, 2, 2]] * 3, 1, 3, widths=(8, 8, 8, 8))
    trainer.network = SegResMamba(config)
    trainer.initial_lr, trainer.weight_decay, trainer.num_epochs = lr, 3e-5, 10
    optimizer, _ = trainer.configure_optimizers()
    assert isinstance(optimizer, optimizer_class)
    decay_of = {id(p): group["weight_decay"] for group in optimizer.param_groups for p in group["params"]}
    names = dict(trainer.network.named_parameters())
    assert len(decay_of) == len(names)  # every parameter in exactly one group
    for name, p in names.items():
        expected = 0.0 if name.endswith(("A_log", ".D")) else 3e-5
        assert decay_of[id(p)] == expected, name
    assert optimizer.param_groups[0]["lr"] == lr
