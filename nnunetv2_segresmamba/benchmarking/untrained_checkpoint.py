"""``python -m nnunetv2_segresmamba.benchmarking.untrained_checkpoint DATASET TRAINER``: fold 0 of a trainer with
random weights, as nnU-Net writes a trained one (checkpoint_final.pth, plans.json, dataset.json), for timing
inference without training first: its cost does not depend on the weights' values.

Run as its own process, with nnU-Net's folder variables set for it: nnU-Net reads them when it is imported.
"""

from __future__ import annotations

import sys

import torch


def write_untrained_checkpoint(dataset: str, trainer_name: str, configuration: str = "3d_fullres") -> str:
    from batchgenerators.utilities.file_and_folder_operations import join, save_json
    from nnunetv2.run.run_training import get_trainer_from_args

    trainer = get_trainer_from_args(dataset, configuration, 0, trainer_name, device=torch.device("cpu"))
    trainer.initialize()
    trainer.configure_rotation_dummyDA_mirroring_and_inital_patch_size()  # sets the mirroring axes for TTA
    save_json(trainer.plans_manager.plans, join(trainer.output_folder_base, "plans.json"), sort_keys=False)
    save_json(trainer.dataset_json, join(trainer.output_folder_base, "dataset.json"), sort_keys=False)
    path = join(trainer.output_folder, "checkpoint_final.pth")
    trainer.save_checkpoint(path)
    return path


if __name__ == "__main__":
    write_untrained_checkpoint(sys.argv[1], sys.argv[2])
