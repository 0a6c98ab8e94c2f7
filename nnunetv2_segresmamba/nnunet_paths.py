"""nnU-Net's folder layout, named through nnU-Net's own helpers, under folders given as arguments.

nnU-Net's ``get_output_folder`` and ``maybe_convert_to_dataset_name`` read nnUNet_results and friends once, when
``nnunetv2.paths`` is imported; the cluster, comparison and timing tools take the folders as arguments (or from
an environment they pass to nnU-Net's CLI), so they name the folders with the helper ``get_output_folder`` itself
uses, here and nowhere else.
"""

from __future__ import annotations

import json
from pathlib import Path

from nnunetv2.utilities.file_path_utilities import convert_trainer_plans_config_to_identifier


def trainer_folder(results: Path | str, dataset_name: str, trainer: str, plans: str, configuration: str) -> Path:
    """``get_output_folder(dataset, trainer, plans, configuration)`` under ``results`` (an nnUNet_results folder)."""
    return Path(results) / dataset_name / convert_trainer_plans_config_to_identifier(trainer, plans, configuration)


def fold_folder(results: Path | str, dataset_name: str, trainer: str, plans: str, configuration: str,
                fold: int) -> Path:
    """``get_output_folder(dataset, trainer, plans, configuration, fold)`` under ``results``."""
    return trainer_folder(results, dataset_name, trainer, plans, configuration) / f"fold_{fold}"


def validation_cases(preprocessed_dataset: Path | str, fold: int) -> list[str]:
    """The fold's validation case identifiers from nnU-Net's ``splits_final.json`` (written by nnUNetv2_train)."""
    splits_file = Path(preprocessed_dataset) / "splits_final.json"
    if not splits_file.is_file():
        raise FileNotFoundError(f"{splits_file} does not exist: train the fold first (nnUNetv2_train makes it)")
    splits = json.loads(splits_file.read_text())
    if fold >= len(splits):
        raise ValueError(f"{splits_file} has {len(splits)} folds; fold {fold} is not one of them")
    return sorted(splits[fold]["val"])
