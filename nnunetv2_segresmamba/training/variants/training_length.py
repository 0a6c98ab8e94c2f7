"""Training-length variants, named as nnU-Net names its own (nnUNetTrainer_Xepochs)."""

import torch

from ..baseline_trainers import nnUNetTrainerEnergy
from ..nnUNetTrainerSegResMamba import nnUNetTrainerSegResMamba
from .optimizer import (nnUNetTrainerSegResMamba_AdamW1en3, nnUNetTrainerSegResMamba_AdamW3en4,
                        nnUNetTrainerSegResMamba_SSMNoWD)


class FixedEpochs:
    """Mixin: ``epochs`` training epochs. Put it first in the bases."""

    epochs: int = 1000

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = self.epochs


class nnUNetTrainerSegResMamba_1epochs(FixedEpochs, nnUNetTrainerSegResMamba):
    epochs = 1


class nnUNetTrainerSegResMamba_5epochs(FixedEpochs, nnUNetTrainerSegResMamba):
    epochs = 5


class nnUNetTrainerSegResMamba_10epochs(FixedEpochs, nnUNetTrainerSegResMamba):
    epochs = 10


class nnUNetTrainerSegResMamba_20epochs(FixedEpochs, nnUNetTrainerSegResMamba):
    epochs = 20


class nnUNetTrainerSegResMamba_50epochs(FixedEpochs, nnUNetTrainerSegResMamba):
    epochs = 50


class nnUNetTrainerSegResMamba_100epochs(FixedEpochs, nnUNetTrainerSegResMamba):
    epochs = 100


class nnUNetTrainerSegResMamba_250epochs(FixedEpochs, nnUNetTrainerSegResMamba):
    epochs = 250


class nnUNetTrainerSegResMamba_500epochs(FixedEpochs, nnUNetTrainerSegResMamba):
    epochs = 500


# The recipe candidates at the length of the five-fold comparison (docs/results/hippocampus.md).
class nnUNetTrainerSegResMamba_SSMNoWD_50epochs(FixedEpochs, nnUNetTrainerSegResMamba_SSMNoWD):
    epochs = 50


class nnUNetTrainerSegResMamba_AdamW1en3_50epochs(FixedEpochs, nnUNetTrainerSegResMamba_AdamW1en3):
    epochs = 50


class nnUNetTrainerSegResMamba_AdamW3en4_50epochs(FixedEpochs, nnUNetTrainerSegResMamba_AdamW3en4):
    epochs = 50


# nnU-Net's default trainer with energy logging, at the same lengths, for same-budget comparisons.
class nnUNetTrainerEnergy_1epochs(FixedEpochs, nnUNetTrainerEnergy):
    epochs = 1


class nnUNetTrainerEnergy_5epochs(FixedEpochs, nnUNetTrainerEnergy):
    epochs = 5


class nnUNetTrainerEnergy_10epochs(FixedEpochs, nnUNetTrainerEnergy):
    epochs = 10


class nnUNetTrainerEnergy_20epochs(FixedEpochs, nnUNetTrainerEnergy):
    epochs = 20


class nnUNetTrainerEnergy_50epochs(FixedEpochs, nnUNetTrainerEnergy):
    epochs = 50


class nnUNetTrainerEnergy_100epochs(FixedEpochs, nnUNetTrainerEnergy):
    epochs = 100


class nnUNetTrainerEnergy_250epochs(FixedEpochs, nnUNetTrainerEnergy):
    epochs = 250
