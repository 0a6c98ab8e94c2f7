"""nnU-Net trainers: SegResMamba with one small subclass per variant, and nnU-Net's own trainer with
energy logging (nnUNetTrainerEnergy) for same-budget comparisons."""

from .baseline_trainers import nnUNetTrainerEnergy
from .nnUNetTrainerSegResMamba import nnUNetTrainerSegResMamba
from .nonfinite_loss import NonFiniteLossError, NonFiniteLossGuard
from .variants.benchmarking import (nnUNetTrainerBenchmarkPipeline_5epochs, nnUNetTrainerSegResMambaBenchmark_5epochs,
                                    nnUNetTrainerSegResMambaNoCudaGraphsBenchmark_5epochs)
from .variants.cuda_graphs import nnUNetTrainerSegResMambaCudaGraphs, nnUNetTrainerSegResMambaNoCudaGraphs
from .variants.ablations import nnUNetTrainerSegResMamba_Exp1SegMambaEncoder, nnUNetTrainerSegResMamba_Exp2NoExtraConv
from .variants.deep_supervision import nnUNetTrainerSegResMamba_noDS
from .variants.demo import nnUNetTrainerSegResMamba_Demo, nnUNetTrainerSegResMamba_DemoCPU
from .variants.memory import nnUNetTrainerSegResMamba_recomputeToM0
from .variants.optimizer import (nnUNetTrainerSegResMamba_AdamW1en3, nnUNetTrainerSegResMamba_AdamW3en4,
                                  nnUNetTrainerSegResMamba_SSMNoWD)
from .variants.paper_recipe import nnUNetTrainerSegResMamba_PaperRecipe
from .variants.precision import nnUNetTrainerSegResMamba_noAMP
from .variants.training_length import *  # noqa: F401,F403  (the _Xepochs variants)

TRAINERS = [name for name in dir()
            if name.startswith(("nnUNetTrainerSegResMamba", "nnUNetTrainerEnergy", "nnUNetTrainerBenchmarkPipeline"))]
__all__ = TRAINERS + ["NonFiniteLossError", "NonFiniteLossGuard"]
