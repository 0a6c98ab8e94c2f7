"""The trainings of trainers x configurations x folds, and where each one stands on disk.

Shared by ``scripts/train_folds.py`` (one machine) and the SLURM arrays (``cluster/slurm.py``), so that
both skip the same finished trainings, resume the same interrupted ones with ``--c``, and run nnU-Net's
commands with the same arguments.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from ..comparison import find_dataset_folder
from ..nnunet_cli import nnunet_command
from ..nnunet_paths import fold_folder

# nnU-Net's cascade trains on 3d_lowres's predictions of each fold, so it cannot run beside 3d_lowres.
CASCADE, CASCADE_INPUT = "3d_cascade_fullres", "3d_lowres"


class State(Enum):
    NEW = "new"
    RESUMABLE = "resumable"  # a checkpoint that `nnUNetv2_train ... --c` continues from
    FINISHED = "finished"


@dataclass(frozen=True)
class Training:
    """One ``nnUNetv2_train DATASET CONFIGURATION FOLD -tr TRAINER -p PLANS``."""

    dataset: str
    configuration: str
    trainer: str
    fold: int
    plans: str = "nnUNetPlans"

    def folder(self, results: Path, dataset_name: str) -> Path:
        """nnU-Net's output folder of this training under ``results`` (the nnUNet_results folder)."""
        return fold_folder(results, dataset_name, self.trainer, self.plans, self.configuration, self.fold)

    def label(self) -> str:
        return f"{self.trainer} {self.configuration} fold {self.fold}"

    def command(self, resume: bool, device: str = "cuda", num_gpus: int = 1) -> list[str]:
        """The training command. ``--npz`` always: find_best_configuration ensembles the saved probabilities."""
        command = [nnunet_command("nnUNetv2_train"), self.dataset, self.configuration, str(self.fold),
                   "-tr", self.trainer, "-p", self.plans, "--npz"]
        if device != "cuda":
            command += ["-device", device]
        if num_gpus > 1:
            command += ["-num_gpus", str(num_gpus)]
        if resume:
            command.append("--c")
        return command


def training_matrix(dataset: str, trainers: list[str], configurations: list[str], folds: list[int],
                    plans: str = "nnUNetPlans") -> list[Training]:
    """Every trainer x configuration x fold, in that nesting order."""
    if CASCADE in configurations and CASCADE_INPUT in configurations:
        raise ValueError(f"{CASCADE} trains on the predictions of the finished {CASCADE_INPUT} folds: train "
                         f"{CASCADE_INPUT} first, then {CASCADE} with a second command")
    return [Training(str(dataset), configuration, trainer, int(fold), plans)
            for trainer in trainers for configuration in configurations for fold in folds]


def training_state(folder: Path) -> State:
    """Finished once nnU-Net wrote both the final checkpoint and the validation summary: it saves
    checkpoint_final.pth *before* it predicts the validation cases, and `--c` with that checkpoint trains no
    further epoch but redoes the validation, which find_best_configuration needs. Otherwise resumable where
    `--c` has a checkpoint to load (final, latest, best: nnU-Net tries them in that order), else new."""
    if (folder / "checkpoint_final.pth").is_file() and (folder / "validation" / "summary.json").is_file():
        return State.FINISHED
    if any((folder / name).is_file() for name in ("checkpoint_final.pth", "checkpoint_latest.pth",
                                                  "checkpoint_best.pth")):
        return State.RESUMABLE
    return State.NEW


def nnunet_folder(name: str) -> Path:
    """An nnU-Net folder variable (nnUNet_results, ...), which must be set."""
    value = os.environ.get(name)
    if not value:
        raise RuntimeError(f"{name} is not set: export nnU-Net's folders (nnUNet_raw, nnUNet_preprocessed, "
                           f"nnUNet_results) as for nnUNetv2_train")
    return Path(value)


def dataset_name(dataset: str) -> str:
    """``990`` or ``Dataset990_X`` -> ``Dataset990_X``, from nnUNet_preprocessed (training needs it there)."""
    try:
        return find_dataset_folder(nnunet_folder("nnUNet_preprocessed"), dataset).name
    except FileNotFoundError as error:
        raise RuntimeError(f"{error}: run nnUNetv2_plan_and_preprocess for it first") from None


def training_states(trainings: list[Training]) -> dict[Training, State]:
    """The state of each training in the nnUNet_results folder of the current environment."""
    results = nnunet_folder("nnUNet_results")
    names = {dataset: dataset_name(dataset) for dataset in {t.dataset for t in trainings}}
    return {t: training_state(t.folder(results, names[t.dataset])) for t in trainings}


def find_best_command(dataset: str, trainers: list[str], configurations: list[str], folds: list[int],
                      plans: str = "nnUNetPlans") -> list[str]:
    return [nnunet_command("nnUNetv2_find_best_configuration"), str(dataset), "-c", *configurations,
            "-tr", *trainers, "-p", plans, "-f", *map(str, folds)]
