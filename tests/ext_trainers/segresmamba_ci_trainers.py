"""A CI-sized SegResMamba trainer, found by nnU-Net through nnUNet_extTrainer like a user's own folder.

The paper's topology with narrow widths, no mirroring, and twice nnU-Net's learning rate so that it learns
within a few dozen CPU steps. Epochs and iterations per epoch come from SEGRESMAMBA_TEST_EPOCHS and
SEGRESMAMBA_TEST_ITERATIONS (default 1 and 2), so that a test can train a fold briefly, then continue it
with --c for longer.
"""

import os

import torch

from nnunetv2_segresmamba.training import nnUNetTrainerSegResMamba


class nnUNetTrainerSegResMamba_CITiny(nnUNetTrainerSegResMamba):
    network_options = dict(widths=(8, 16, 16, 32))

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        plans["configurations"][configuration]["batch_size"] = 2
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.initial_lr = 0.02
        self.num_epochs = int(os.environ.get("SEGRESMAMBA_TEST_EPOCHS", "1"))
        self.num_iterations_per_epoch = int(os.environ.get("SEGRESMAMBA_TEST_ITERATIONS", "2"))
        self.num_val_iterations_per_epoch = 1

    def configure_rotation_dummyDA_mirroring_and_inital_patch_size(self):
        rotation, dummy_2d, initial_patch_size, _ = super().configure_rotation_dummyDA_mirroring_and_inital_patch_size()
        self.inference_allowed_mirroring_axes = None
        return rotation, dummy_2d, initial_patch_size, None
