"""What nnU-Net's trainer lookup imports from the folder that nnUNet_extTrainer names.

nnU-Net imports every module in that folder as a top-level module and looks for the class by name,
so this file only re-exports our trainers. It must stay importable without mamba-ssm.
"""

from nnunetv2_segresmamba.training import *  # noqa: F401,F403
