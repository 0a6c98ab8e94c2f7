"""A cross-validation comparison of trainers from nnU-Net's own evaluations: each fold's mean foreground Dice,
and the paired per-case difference against the first trainer.

In nnU-Net's 5-fold split every training case is validated exactly once, so the folds' ``validation/summary.json``
together hold one Dice per case and trainer. The paired difference is taken over the cases both trainers
validated (each case's mean Dice over the foreground labels, labels absent from both reference and prediction
left out, as nnU-Net leaves them out), with its standard error (sample standard deviation / sqrt(cases)).
A fold without ``validation/summary.json`` is None in ``fold_dice`` and contributes no cases.
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any

from ..nnunet_paths import trainer_folder
from .collect import EXPECTED_FOLDS, find_dataset_folder, number, read_json


def case_identifier(path: str, file_ending: str) -> str:
    name = Path(path).name
    return name[: -len(file_ending)] if file_ending and name.endswith(file_ending) else name


def case_dice(summary: dict, file_ending: str) -> dict[str, float]:
    """Case identifier -> mean Dice over the foreground labels that are defined for it."""
    cases = {}
    for entry in summary.get("metric_per_case", []):
        dice = [number(metrics.get("Dice")) for metrics in entry.get("metrics", {}).values()]
        dice = [d for d in dice if d is not None]
        if dice:
            cases[case_identifier(entry["reference_file"], file_ending)] = statistics.fmean(dice)
    return cases


def trainer_cross_validation(dataset_folder: Path, trainer: str, plans: str, configuration: str,
                             folds: tuple[int, ...] = EXPECTED_FOLDS) -> dict[str, Any]:
    """{"trainer", "epochs", "fold_dice", "cases", "gpu"} of one trainer."""
    folder = trainer_folder(dataset_folder.parent, dataset_folder.name, trainer, plans, configuration)
    file_ending = (read_json(folder / "dataset.json") or {}).get("file_ending", "")
    fold_dice, cases, epochs, gpus = [], {}, set(), set()
    for fold in folds:
        fold_folder = folder / f"fold_{fold}"
        summary = read_json(fold_folder / "validation" / "summary.json")
        fold_dice.append(None if summary is None else number(summary.get("foreground_mean", {}).get("Dice")))
        if summary is not None:
            cases.update(case_dice(summary, file_ending))
            debug = read_json(fold_folder / "debug.json") or {}
            epochs.add(int(debug["num_epochs"]) if str(debug.get("num_epochs", "")).isdigit() else None)
            gpus.add(debug.get("gpu_name"))
    return {"trainer": trainer, "epochs": _one(epochs), "fold_dice": fold_dice, "cases": cases, "gpu": _one(gpus)}


def _one(values: set) -> Any:
    """The one value all folds agree on, else None (unknown, or folds that differ)."""
    values = {v for v in values if v is not None}
    return values.pop() if len(values) == 1 else None


def paired_difference(cases: dict[str, float], baseline_cases: dict[str, float]) -> dict[str, Any]:
    """Mean of (cases - baseline) over the cases both have, its standard error, and how often each is better."""
    shared = sorted(cases.keys() & baseline_cases.keys())
    differences = [cases[c] - baseline_cases[c] for c in shared]
    if not differences:
        return {"cases": 0, "mean": None, "standard_error": None, "better": 0, "worse": 0}
    error = statistics.stdev(differences) / math.sqrt(len(differences)) if len(differences) > 1 else None
    return {"cases": len(differences), "mean": statistics.fmean(differences), "standard_error": error,
            "better": sum(d > 0 for d in differences), "worse": sum(d < 0 for d in differences)}


def cross_validation(results: Path, dataset: str | int, trainers: list[str], plans: str = "nnUNetPlans",
                     configuration: str = "3d_fullres") -> dict[str, Any]:
    """{"dataset", "device", "rows": [{"trainer", "epochs", "fold_dice", "mean_dice", "paired_vs_first"}]}."""
    dataset_folder = find_dataset_folder(Path(results), dataset)
    per_trainer = [trainer_cross_validation(dataset_folder, t, plans, configuration) for t in trainers]
    baseline = per_trainer[0]["cases"]
    rows = []
    for result in per_trainer:
        present = [d for d in result["fold_dice"] if d is not None]
        rows.append({"trainer": result["trainer"], "epochs": result["epochs"], "fold_dice": result["fold_dice"],
                     "mean_dice": statistics.fmean(present) if present else None,
                     "paired_vs_first": paired_difference(result["cases"], baseline)})
    return {"dataset": dataset_folder.name, "device": _one({r["gpu"] for r in per_trainer}), "rows": rows}


def markdown(comparison: dict[str, Any]) -> str:
    """Mean and per-fold Dice, and the paired difference against the first trainer."""
    def fmt(value: float | None, digits: int = 4) -> str:
        return "—" if value is None else f"{value:.{digits}f}"

    first = comparison["rows"][0]["trainer"]
    lines = [f"| trainer | epochs | mean Dice | folds 0-4 | paired difference vs {first} (SE), cases | better / worse |",
             "|---|---|---|---|---|---|"]
    for row in comparison["rows"]:
        paired = row["paired_vs_first"]
        difference = (f"{fmt(paired['mean'])} ({fmt(paired['standard_error'])}), {paired['cases']}"
                      if row["trainer"] != first else "—")
        counts = f"{paired['better']} / {paired['worse']}" if row["trainer"] != first else "—"
        done = sum(d is not None for d in row["fold_dice"])
        # A mean over fewer folds is over other cases: say so beside it rather than compare it unmarked.
        covered = "" if done == len(row["fold_dice"]) else f" ({done} of {len(row['fold_dice'])} folds)"
        lines.append(f"| {row['trainer']} | {row['epochs'] or '—'} | {fmt(row['mean_dice'])}{covered} | "
                     f"{' / '.join(fmt(d) for d in row['fold_dice'])} | {difference} | {counts} |")
    return "\n".join(lines)
