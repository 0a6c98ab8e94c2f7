"""The paper's training recipe inside nnU-Net's pipeline: Adam (decoupled weight decay), lr 1e-4,
weight decay 1e-5, cosine annealing, Dice loss, one output (no deep supervision)."""

import torch
from nnunetv2.training.loss.dice import MemoryEfficientSoftDiceLoss
from nnunetv2.utilities.helpers import softmax_helper_dim1
from torch.optim.lr_scheduler import CosineAnnealingLR

from ..nnUNetTrainerSegResMamba import nnUNetTrainerSegResMamba


class nnUNetTrainerSegResMamba_PaperRecipe(nnUNetTrainerSegResMamba):
    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.initial_lr = 1e-4
        self.weight_decay = 1e-5
        self.enable_deep_supervision = False

    def configure_optimizers(self):
        optimizer = torch.optim.AdamW(self.network.parameters(), lr=self.initial_lr, weight_decay=self.weight_decay)
        return optimizer, CosineAnnealingLR(optimizer, T_max=self.num_epochs)

    def _build_loss(self):
        regions = self.label_manager.has_regions
        return MemoryEfficientSoftDiceLoss(batch_dice=self.configuration_manager.batch_dice, do_bg=regions,
                                           smooth=1e-5, ddp=self.is_ddp,
                                           apply_nonlin=torch.sigmoid if regions else softmax_helper_dim1)
