"""Collecting a comparison of trainers on one dataset from what nnU-Net (and our trainers) already wrote.

Reads ``<results>/<DatasetXXX_Name>/<Trainer>__<Plans>__<Config>/`` and, in each ``fold_<k>``:
``validation/summary.json`` (nnU-Net's evaluation of the fold's validation cases), ``training_log_*.txt``
(the ``Epoch time`` lines), ``energy.json`` (written by our EnergyLoggingMixin), ``inference_time.json``
(see ``benchmarking/inference_time.py``) and ``debug.json`` (the GPU name).
Nothing is re-run except building each trainer's network once, on the CPU, to count its parameters and
its forward MACs at the plan's patch size (batch 1; the MACs on the meta device, so no arithmetic).

Only folds with a ``validation/summary.json`` count as present, and every figure (Dice, epoch time,
energy, memory) is taken over those folds only, so that the numbers of one row describe the same
trainings. Whatever is absent is listed in the row's ``missing`` and shown as missing, never as 0.
The first epoch of each training log is left out of the mean epoch time when the log has more than one:
it includes torch.compile, cuDNN autotuning and data loader start-up.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import re
import statistics
from pathlib import Path
from typing import Any

from ..nnunet_paths import trainer_folder

EXPECTED_FOLDS = (0, 1, 2, 3, 4)
EPOCH_TIME = re.compile(r"Epoch time: ([0-9.]+) s")
EPOCH_TIME_NOTE = ("mean over the epochs of the present folds' training logs; the first epoch of each log is "
                   "skipped when the log has more than one (it includes compilation and warm-up)")
MISSING = "—"


def read_json(path: Path) -> Any:
    """The parsed file, or None when it does not exist or is cut short (energy.json is rewritten every epoch,
    so a running training can be caught mid-write): a missing file is data here, reported, not an error."""
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def number(value: Any) -> float | None:
    """A plain float, or None for anything absent or not finite (nnU-Net writes NaN for empty classes)."""
    if value is None or isinstance(value, bool):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def mean_or_none(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.fmean(present) if present else None


def fold_list(folds: list[int]) -> str:
    return ", ".join(map(str, folds))


def folds_phrase(folds: list[int]) -> str:
    return ("fold " if len(folds) == 1 else "folds ") + fold_list(folds)


# --- finding things ------------------------------------------------------------------------------------

def find_dataset_folder(results: Path, dataset: str | int) -> Path:
    """``4``, ``"4"``, ``"Dataset004_Hippocampus"`` or ``"Hippocampus"`` -> the dataset's results folder."""
    dataset = str(dataset)
    if dataset.isdigit():
        matches = sorted(results.glob(f"Dataset{int(dataset):03d}_*"))
    else:
        matches = [results / dataset] if (results / dataset).is_dir() else sorted(results.glob(f"Dataset*_{dataset}"))
    matches = [m for m in matches if m.is_dir()]
    if len(matches) != 1:
        found = ", ".join(m.name for m in matches) or "none"
        raise FileNotFoundError(f"dataset {dataset!r}: expected one folder in {results}, found {found}")
    return matches[0]


def fold_folders(trainer_folder: Path) -> dict[int, Path]:
    folders = {}
    for path in trainer_folder.glob("fold_*"):
        suffix = path.name[len("fold_"):]
        if path.is_dir() and suffix.isdigit():  # fold_all is a different experiment; it is not compared
            folders[int(suffix)] = path
    return dict(sorted(folders.items()))


# --- one fold --------------------------------------------------------------------------------------------

def label_names(dataset_json: dict | None) -> dict[str, str]:
    """summary.json's label keys ("1", or "(1, 2, 3)" for a region) -> the names in dataset.json."""
    names = {}
    for name, value in (dataset_json or {}).get("labels", {}).items():
        key = str(tuple(value)) if isinstance(value, (list, tuple)) else str(value)  # nnU-Net's str(label)
        if key not in ("0", "(0,)") and name != "ignore":
            names[key] = name
    return names


def dice_from_summary(summary: dict, names: dict[str, str]) -> tuple[dict[str, float | None], float | None]:
    per_class = {names.get(key, key): number(metrics.get("Dice")) for key, metrics in summary.get("mean", {}).items()}
    return per_class, number(summary.get("foreground_mean", {}).get("Dice"))


def epoch_times(fold_folder: Path) -> tuple[list[float], int]:
    """(epoch times used, epochs skipped): all logs of the fold in time order, each log's first epoch
    left out when the log has more than one (a resumed training starts a new log and warms up again)."""
    used, skipped = [], 0
    for log in sorted(fold_folder.glob("training_log_*.txt")):
        times = [float(t) for t in EPOCH_TIME.findall(log.read_text(errors="replace"))]
        if len(times) > 1:
            times, skipped = times[1:], skipped + 1
        used += times
    return used, skipped


def collect_fold(fold_folder: Path, names: dict[str, str]) -> dict[str, Any]:
    """Everything of one fold, None where its file is missing."""
    fold: dict[str, Any] = {"summary": False}
    summary = read_json(fold_folder / "validation" / "summary.json")
    if summary is not None:
        fold["summary"] = True
        fold["dice_per_class"], fold["mean_dice"] = dice_from_summary(summary, names)
    fold["epoch_times_s"], fold["epochs_skipped"] = epoch_times(fold_folder)
    energy = read_json(fold_folder / "energy.json") or {}
    fold["energy_kWh"], fold["co2_kg"] = number(energy.get("total_kWh")), number(energy.get("co2_kg"))
    fold["peak_gpu_memory_GiB"] = number(energy.get("peak_gpu_memory_GiB"))
    fold["peak_gpu_reserved_GiB"] = number(energy.get("peak_gpu_reserved_GiB"))
    # Other processes computed on the fold's GPU (several trainings at once, scripts/train_folds.py --per-gpu):
    # its epoch times and the GPU's energy are not the training's own.
    fold["gpu_shared"] = bool(number(energy.get("gpu_other_processes_max")))
    debug = read_json(fold_folder / "debug.json") or {}
    fold["gpu"] = energy.get("gpu") or debug.get("gpu_name")
    timing = read_json(fold_folder / "inference_time.json") or {}
    fold["inference_seconds"], fold["inference_cases"] = number(timing.get("seconds")), timing.get("cases")
    fold["inference_device"], fold["inference_tta"] = timing.get("device"), timing.get("tta")
    return fold


# --- network figures ---------------------------------------------------------------------------------------

def network_figures(trainer: str, plans: dict, dataset_json: dict, configuration: str) -> dict[str, Any]:
    """Parameters and forward MACs of the network the trainer builds from these plans, at batch 1 and the
    plan's patch size, as nnU-Net's predictor builds it (deep supervision off). The error text instead of
    numbers when the trainer cannot be found or built."""
    import nnunetv2_segresmamba_ext

    from ..benchmarking.complexity import count_macs, count_parameters

    nnunetv2_segresmamba_ext.register()  # as the .pth hook does at start-up; editable installs lack the hook
    try:
        from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name
        from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
        from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

        plans_manager = PlansManager(plans)
        config = plans_manager.get_configuration(configuration)
        channels = determine_num_input_channels(plans_manager, config, dataset_json)  # a cascade adds labels
        outputs = plans_manager.get_label_manager(dataset_json).num_segmentation_heads
        with contextlib.redirect_stdout(io.StringIO()):  # nnU-Net narrates its trainer search
            trainer_class = recursive_find_trainer_class_by_name(trainer)
            network = trainer_class.build_network_architecture(plans_manager, config, channels, outputs, False)
        shape = [1, channels, *config.patch_size]
        return {"params": count_parameters(network), "macs": count_macs(network, tuple(shape)),
                "macs_input_shape": shape, "network_error": None}
    except Exception as error:  # reported in the row; the other trainers are still compared
        return {"params": None, "macs": None, "macs_input_shape": None,
                "network_error": f"{type(error).__name__}: {error}".strip()}


# --- one trainer -----------------------------------------------------------------------------------------

def summed(folds: dict[int, dict], key: str) -> tuple[float | None, list[int]]:
    """Sum of ``key`` over the folds that recorded it, and those folds."""
    have = [k for k, fold in folds.items() if fold[key] is not None]
    return (sum(folds[k][key] for k in have) if have else None), have


def collect_trainer(dataset_folder: Path, trainer: str, plans: str, configuration: str,
                    with_network: bool = True) -> dict[str, Any]:
    folder = trainer_folder(dataset_folder.parent, dataset_folder.name, trainer, plans, configuration)
    row: dict[str, Any] = {"trainer": trainer, "folder": str(folder), "missing": []}
    missing = row["missing"]
    if not folder.is_dir():
        missing.append(f"trainer folder {folder.name}")
    plans_json, dataset_json = read_json(folder / "plans.json"), read_json(folder / "dataset.json")
    names = label_names(dataset_json)

    all_folds = {k: collect_fold(path, names) for k, path in fold_folders(folder).items()}
    folds = {k: fold for k, fold in all_folds.items() if fold["summary"]}
    row["folds_present"] = sorted(folds)
    row["folds_missing"] = [k for k in EXPECTED_FOLDS if k not in folds]
    row["folds_unfinished"] = [k for k, fold in all_folds.items() if not fold["summary"]]
    if row["folds_missing"]:
        missing.append(folds_phrase(row["folds_missing"]))
    if row["folds_unfinished"]:
        missing.append(f"validation/summary.json ({folds_phrase(row['folds_unfinished'])}, unfinished?)")

    classes = list(dict.fromkeys(name for fold in folds.values() for name in fold["dice_per_class"]))
    row["dice_per_class"] = {name: mean_or_none([fold["dice_per_class"].get(name) for fold in folds.values()])
                             for name in classes}
    row["mean_dice"] = mean_or_none([fold["mean_dice"] for fold in folds.values()])

    # Epoch time and energy only from folds that had their GPU to themselves.
    row["folds_sharing_gpu"] = [k for k, fold in folds.items() if fold["gpu_shared"]]
    alone = {k: fold for k, fold in folds.items() if not fold["gpu_shared"]}
    if row["folds_sharing_gpu"] and not alone:
        missing.append(f"epoch time and energy of a training alone on its GPU "
                       f"({folds_phrase(row['folds_sharing_gpu'])} shared theirs)")
    times = [t for fold in alone.values() for t in fold["epoch_times_s"]]
    row["epoch_time_s"] = statistics.fmean(times) if times else None
    row["epochs_timed"] = len(times)
    row["first_epochs_skipped"] = sum(fold["epochs_skipped"] for fold in alone.values())
    row["epoch_time_note"] = EPOCH_TIME_NOTE
    if alone and not times:
        missing.append("epoch times")

    row["energy_kWh"], row["energy_folds"] = summed(alone, "energy_kWh")
    row["co2_kg"], _ = summed(alone, "co2_kg")
    without_energy = [k for k in alone if k not in row["energy_folds"]]
    if without_energy:
        missing.append(f"energy.json ({folds_phrase(without_energy)})")
    peaks = [fold["peak_gpu_memory_GiB"] for fold in folds.values() if fold["peak_gpu_memory_GiB"] is not None]
    row["peak_gpu_memory_GiB"] = max(peaks) if peaks else None
    if folds and not peaks:
        missing.append("peak GPU memory")
    # Reserved memory counts CUDA graphs' pools, which allocated memory leaves out: with graphs it is the fair
    # figure. energy.json written before it was recorded has none; that is not reported missing.
    reserved = [fold["peak_gpu_reserved_GiB"] for fold in folds.values() if fold["peak_gpu_reserved_GiB"] is not None]
    row["peak_gpu_reserved_GiB"] = max(reserved) if reserved else None

    timed = [k for k, fold in folds.items() if fold["inference_seconds"] is not None and fold["inference_cases"]]
    cases = sum(int(folds[k]["inference_cases"]) for k in timed)
    row["inference_s_per_case"] = sum(folds[k]["inference_seconds"] for k in timed) / cases if timed else None
    row["inference_folds"] = timed
    row["inference_devices"] = sorted({str(folds[k]["inference_device"]) for k in timed})
    row["inference_tta"] = sorted({bool(folds[k]["inference_tta"]) for k in timed
                                   if folds[k]["inference_tta"] is not None})
    untimed = [k for k in folds if k not in timed]
    if untimed:
        missing.append(f"inference_time.json ({folds_phrase(untimed)})")

    row["gpus"] = sorted({fold["gpu"] for fold in folds.values() if fold["gpu"]})
    if plans_json is None or dataset_json is None:
        what = " and ".join(n for n, j in (("plans.json", plans_json), ("dataset.json", dataset_json)) if j is None)
        row.update(params=None, macs=None, macs_input_shape=None, network_error=f"{what} missing")
    elif with_network:
        row.update(network_figures(trainer, plans_json, dataset_json, configuration))
    else:
        row.update(params=None, macs=None, macs_input_shape=None, network_error="not computed")
    if row["network_error"]:
        missing.append("network figures (see network_error)")
    row["per_fold"] = {str(k): {key: v for key, v in fold.items() if key != "summary"} for k, fold in folds.items()}
    return row


# --- the dataset -------------------------------------------------------------------------------------------

def dataset_extras(dataset_folder: Path) -> dict[str, Any]:
    """nnU-Net's own model selection (``nnUNetv2_find_best_configuration``) and its ensembles, if run."""
    extras: dict[str, Any] = {"best_configuration": None, "ensembles": []}
    info = read_json(dataset_folder / "inference_information.json")
    if info is not None:
        best = info.get("best_model_or_ensemble", {})
        extras["best_configuration"] = {
            "selected": ["__".join((m["trainer"], m["plans_identifier"], m["configuration"]))
                         for m in best.get("selected_model_or_models", [])],
            "dice_before_postprocessing": number(best.get("result_on_crossval_pre_pp")),
            "dice_after_postprocessing": number(best.get("result_on_crossval_post_pp")),
            "all_results": {name: number(dice) for name, dice in info.get("all_results", {}).items()},
        }
    for folder in sorted((dataset_folder / "ensembles").glob("ensemble___*")):
        summary = read_json(folder / "summary.json")
        extras["ensembles"].append({"name": folder.name, "mean_dice": number(
            summary.get("foreground_mean", {}).get("Dice")) if summary else None})
    return extras


def collect(results: Path, dataset: str | int, trainers: list[str], plans: str = "nnUNetPlans",
            configuration: str = "3d_fullres", with_network: bool = True) -> dict[str, Any]:
    """The comparison of ``trainers`` on ``dataset``: plain JSON-serialisable data."""
    dataset_folder = find_dataset_folder(Path(results), dataset)
    rows = [collect_trainer(dataset_folder, t, plans, configuration, with_network) for t in trainers]
    return {"dataset": dataset_folder.name, "plans": plans, "configuration": configuration,
            "results": str(dataset_folder), "rows": rows, **dataset_extras(dataset_folder)}
