"""A few-minute run for the bundled demo: the real network, few and small steps."""

import torch

from ..nnUNetTrainerSegResMamba import nnUNetTrainerSegResMamba


class nnUNetTrainerSegResMamba_Demo(nnUNetTrainerSegResMamba):
    """Epochs of a few iterations, batch size 2, no test-time mirroring. On a CPU the torch scan makes a
    step take seconds, so the CPU run is shorter; it shows the pipeline working, not a converged model."""

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        # The batch size lives in the plans, which nnU-Net copies into the results folder: change it
        # there so that what trained is what is recorded.
        plans["configurations"][configuration]["batch_size"] = 2
        super().__init__(plans, configuration, fold, dataset_json, device)
        on_gpu = self.device.type == "cuda"
        self.num_epochs = 10 if on_gpu else 2
        self.num_iterations_per_epoch = 50 if on_gpu else 6
        self.num_val_iterations_per_epoch = 10 if on_gpu else 2

    def configure_rotation_dummyDA_mirroring_and_inital_patch_size(self):
        rotation, dummy_2d, initial_patch_size, _ = super().configure_rotation_dummyDA_mirroring_and_inital_patch_size()
        self.inference_allowed_mirroring_axes = None
        return rotation, dummy_2d, initial_patch_size, None
