"""nnU-Net's own trainer with the same energy logging as ours, so a comparison measures both alike."""

from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from .energy import EnergyLoggingMixin


class nnUNetTrainerEnergy(EnergyLoggingMixin, nnUNetTrainer):
    """Exactly nnUNetTrainer (network, recipe, compile), plus GPU energy per epoch."""
