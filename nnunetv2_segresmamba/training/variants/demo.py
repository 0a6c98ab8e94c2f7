"""Few-minute runs for the bundled demo (nnunetv2-segresmamba-demo picks one by device)."""

import torch

from ..nnUNetTrainerSegResMamba import nnUNetTrainerSegResMamba


class nnUNetTrainerSegResMamba_Demo(nnUNetTrainerSegResMamba):
    """The paper's network for 10 epochs of 50 iterations, batch size 2, no test-time mirroring: a GPU
    demo that shows the pipeline working and the model learning, not a converged model."""

    num_demo_epochs = 10
    num_demo_iterations = 50

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        # The batch size lives in the plans, which nnU-Net copies into the results folder: change it
        # there so that what trained is what is recorded.
        plans["configurations"][configuration]["batch_size"] = 2
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = self.num_demo_epochs
        self.num_iterations_per_epoch = self.num_demo_iterations
        self.num_val_iterations_per_epoch = 4

    def configure_rotation_dummyDA_mirroring_and_inital_patch_size(self):
        rotation, dummy_2d, initial_patch_size, _ = super().configure_rotation_dummyDA_mirroring_and_inital_patch_size()
        self.inference_allowed_mirroring_axes = None
        return rotation, dummy_2d, initial_patch_size, None


class nnUNetTrainerSegResMamba_DemoCPU(nnUNetTrainerSegResMamba_Demo):
    """The CPU demo: the same architecture at a third of the paper's widths (8.6 M instead of 76 M
    parameters), because a full-width step takes ~14 s on 2 CPU threads with the PyTorch scan and the
    narrow one ~3 s; 4 epochs of 25 iterations fit in about 7 minutes."""

    network_options = dict(widths=(16, 32, 64, 128))
    num_demo_epochs = 4
    num_demo_iterations = 25
