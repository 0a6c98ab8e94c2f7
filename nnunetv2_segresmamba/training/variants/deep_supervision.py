"""Deep supervision off: one output, as in the paper (the heads are still built, unused)."""

import torch

from ..nnUNetTrainerSegResMamba import nnUNetTrainerSegResMamba


class nnUNetTrainerSegResMamba_noDS(nnUNetTrainerSegResMamba):
    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.enable_deep_supervision = False
