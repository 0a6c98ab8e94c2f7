"""A CI-sized SegResMamba trainer, found by nnU-Net through nnUNet_extTrainer like a user's own folder.

The paper's topology with narrow widths, two iterations per epoch, no mirroring. The number of epochs
comes from SEGRESMAMBA_TEST_EPOCHS so that a test can train one epoch, then resume to two with --c.
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
        self.num_epochs = int(os.environ.get("SEGRESMAMBA_TEST_EPOCHS", "1"))
        self.num_iterations_per_epoch = 2
        self.num_val_iterations_per_epoch = 1

    def configure_rotation_dummyDA_mirroring_and_inital_patch_size(self):
        rotation, dummy_2d, initial_patch_size, _ = super().configure_rotation_dummyDA_mirroring_and_inital_patch_size()
        self.inference_allowed_mirroring_axes = None
        return rotation, dummy_2d, initial_patch_size, None
