"""Training-length variants, named as nnU-Net names its own (nnUNetTrainer_Xepochs)."""

import torch

from ..nnUNetTrainerSegResMamba import nnUNetTrainerSegResMamba


class _FixedEpochs(nnUNetTrainerSegResMamba):
    epochs: int = 1000

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = self.epochs


class nnUNetTrainerSegResMamba_1epochs(_FixedEpochs):
    epochs = 1


class nnUNetTrainerSegResMamba_5epochs(_FixedEpochs):
    epochs = 5


class nnUNetTrainerSegResMamba_10epochs(_FixedEpochs):
    epochs = 10


class nnUNetTrainerSegResMamba_20epochs(_FixedEpochs):
    epochs = 20


class nnUNetTrainerSegResMamba_50epochs(_FixedEpochs):
    epochs = 50


class nnUNetTrainerSegResMamba_100epochs(_FixedEpochs):
    epochs = 100


class nnUNetTrainerSegResMamba_250epochs(_FixedEpochs):
    epochs = 250


class nnUNetTrainerSegResMamba_500epochs(_FixedEpochs):
    epochs = 500
