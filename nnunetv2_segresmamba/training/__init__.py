"""nnU-Net trainers for SegResMamba: the main trainer and one small subclass per variant."""

from .nnUNetTrainerSegResMamba import nnUNetTrainerSegResMamba
from .nonfinite_loss import NonFiniteLossError, NonFiniteLossGuard
from .variants.ablations import nnUNetTrainerSegResMamba_Exp1SegMambaEncoder, nnUNetTrainerSegResMamba_Exp2NoExtraConv
from .variants.deep_supervision import nnUNetTrainerSegResMamba_noDS
from .variants.demo import nnUNetTrainerSegResMamba_Demo
from .variants.paper_recipe import nnUNetTrainerSegResMamba_PaperRecipe
from .variants.precision import nnUNetTrainerSegResMamba_noAMP
from .variants.training_length import (nnUNetTrainerSegResMamba_1epochs, nnUNetTrainerSegResMamba_5epochs,
                                       nnUNetTrainerSegResMamba_10epochs, nnUNetTrainerSegResMamba_20epochs,
                                       nnUNetTrainerSegResMamba_50epochs, nnUNetTrainerSegResMamba_100epochs,
                                       nnUNetTrainerSegResMamba_250epochs, nnUNetTrainerSegResMamba_500epochs)

TRAINERS = [name for name in dir() if name.startswith("nnUNetTrainerSegResMamba")]
__all__ = TRAINERS + ["NonFiniteLossError", "NonFiniteLossGuard"]
