"""Optimiser variants: candidates for SegResMamba's default recipe, to be chosen on cross-validation.

nnU-Net's optimiser applies its weight decay to every parameter. Mamba's convention keeps it off the state
space parameters (A_log and D, marked ``_no_weight_decay`` by the ToM layers), so that decay does not pull
the decay rates towards zero; these variants honour the mark.
"""

import torch
from nnunetv2.training.lr_scheduler.polylr import PolyLRScheduler
from torch import nn

from ..nnUNetTrainerSegResMamba import nnUNetTrainerSegResMamba


def parameter_groups(network: nn.Module, weight_decay: float) -> list[dict]:
    """Two optimiser groups: the parameters marked ``_no_weight_decay`` without decay, the rest with it."""
    exempt = [p for p in network.parameters() if getattr(p, "_no_weight_decay", False)]
    exempt_ids = {id(p) for p in exempt}
    return [dict(params=[p for p in network.parameters() if id(p) not in exempt_ids], weight_decay=weight_decay),
            dict(params=exempt, weight_decay=0.0)]


class nnUNetTrainerSegResMamba_SSMNoWD(nnUNetTrainerSegResMamba):
    """nnU-Net's SGD recipe, without weight decay on A_log and D."""

    def configure_optimizers(self):
        optimizer = torch.optim.SGD(parameter_groups(self.network, self.weight_decay), self.initial_lr,
                                    momentum=0.99, nesterov=True, fused=self.fuses_optimizer())
        return optimizer, PolyLRScheduler(optimizer, self.initial_lr, self.num_epochs)


class nnUNetTrainerSegResMamba_AdamW1en3(nnUNetTrainerSegResMamba):
    """AdamW (the optimiser of the paper and most Mamba work) at lr 1e-3 with nnU-Net's poly schedule, loss
    and deep supervision; no weight decay on A_log and D."""

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.initial_lr = 1e-3

    def configure_optimizers(self):
        optimizer = torch.optim.AdamW(parameter_groups(self.network, self.weight_decay), lr=self.initial_lr,
                                      fused=self.fuses_optimizer())
        return optimizer, PolyLRScheduler(optimizer, self.initial_lr, self.num_epochs)


class nnUNetTrainerSegResMamba_AdamW3en4(nnUNetTrainerSegResMamba_AdamW1en3):
    """As _AdamW1en3, at lr 3e-4."""

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.initial_lr = 3e-4
