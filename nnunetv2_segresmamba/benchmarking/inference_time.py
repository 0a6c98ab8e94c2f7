"""``fold_<k>/inference_time.json``: how long ``nnUNetv2_predict`` took on a fold's validation cases.

The file is not nnU-Net's: ``scripts/time_inference.py`` (``time_fold_inference`` below) writes it, and
anything else that times inference can write the same::

    {"device": "NVIDIA H100 80GB HBM3",  # what ran it: the GPU's name, or the CPU model
     "torch_device": "cuda",             # nnUNetv2_predict's -device
     "cases": 40,                        # cases predicted (files written)
     "seconds": 47.3,                    # wall time of the whole run for those cases
     "tta": false,                       # mirroring test-time augmentation on or off
     "measured": "...",                  # in words, what "seconds" includes
     "runs": [{...}, ...]}               # optional: every run timed (same keys), the top level is runs[0]

``collect.py`` reads ``device``, ``cases``, ``seconds`` (required for a fold to count as timed; the table
shows seconds / cases summed over the timed folds) and ``tta`` (shown beside the device). The other keys
are for people. ``time_fold_inference`` times the whole ``nnUNetv2_predict`` process, so "seconds"
includes process start-up, checkpoint loading, preprocessing and export, not only the network.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from .. import nnunet_paths
from ..nnunet_cli import nnunet_command
from ..nnunet_paths import validation_cases
from .measure import device_name

FILE_NAME = "inference_time.json"
MEASURED = ("wall time of one nnUNetv2_predict process over the fold's validation cases: process start-up, "
            "checkpoint loading, preprocessing, sliding-window prediction and export included")


def inference_record(runs: list[dict[str, Any]], command: str) -> dict[str, Any]:
    """The file's content for ``runs`` (each with device, torch_device, cases, seconds, tta): the first run
    is the top level, the one the comparison table reads."""
    if not runs:
        raise ValueError("no timed run to record")
    return dict(runs[0], measured=MEASURED, command=command, runs=runs)


def write_inference_time(fold_folder: Path, runs: list[dict[str, Any]], command: str) -> Path:
    path = Path(fold_folder) / FILE_NAME
    path.write_text(json.dumps(inference_record(runs, command), indent=1) + "\n")
    return path


def copy_case_images(raw_dataset: Path, cases: list[str], destination: Path) -> int:
    """Copies every channel file (``CASE_XXXX.ext``) of ``cases`` from imagesTr; returns how many files."""
    copied = 0
    for case in cases:
        files = sorted((Path(raw_dataset) / "imagesTr").glob(f"{case}_[0-9][0-9][0-9][0-9].*"))
        if not files:
            raise FileNotFoundError(f"no image of case {case} in {raw_dataset / 'imagesTr'}")
        for file in files:
            shutil.copy(file, destination)
            copied += 1
    return copied


def predict_command(images: Path, output: Path, dataset: str, trainer: str, fold: int, torch_device: str, tta: bool,
                    *options: str, plans: str = "nnUNetPlans", configuration: str = "3d_fullres") -> list[str]:
    """``nnUNetv2_predict`` of fold ``fold`` of ``trainer`` for the images in ``images``."""
    command = [nnunet_command("nnUNetv2_predict"), "-i", str(images), "-o", str(output), "-d", dataset,
               "-c", configuration, "-p", plans, "-tr", trainer, "-f", str(fold), "-device", torch_device, *options]
    return command if tta else command + ["--disable_tta"]


def timed_predict(command: list[str], env: dict[str, str]) -> float:
    """Wall seconds of one whole ``nnUNetv2_predict`` process (what a user waits for); its output is kept from
    the console, which would time the terminal too, and shown only if it fails."""
    start = time.perf_counter()
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return seconds


def _mean_dice(summary_file: Path) -> float | None:
    try:
        return json.loads(summary_file.read_text())["foreground_mean"]["Dice"]
    except (FileNotFoundError, KeyError, json.JSONDecodeError):
        return None


def time_fold_inference(dataset: str, trainer: str, fold: int, devices: list[str], plans: str = "nnUNetPlans",
                        configuration: str = "3d_fullres", tta: bool = False,
                        env: dict[str, str] | None = None) -> dict[str, Any]:
    """Predicts ``fold``'s validation cases with that fold's ``checkpoint_final.pth``, once per device, timing
    each whole ``nnUNetv2_predict`` process; evaluates each prediction with ``nnUNetv2_evaluate_folder``;
    writes ``inference_time.json`` into the fold's folder after each run (so a failing later run keeps the
    earlier ones) and returns its content. nnU-Net's folders come from ``env`` (default: this process's)."""
    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name

    env = dict(os.environ if env is None else env)
    missing = [name for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results") if not env.get(name)]
    if missing:
        raise RuntimeError(f"set {', '.join(missing)} (nnU-Net's folders) first")
    name = maybe_convert_to_dataset_name(dataset)
    raw = Path(env["nnUNet_raw"]) / name
    fold_folder = nnunet_paths.fold_folder(env["nnUNet_results"], name, trainer, plans, configuration, fold)
    if not (fold_folder / "checkpoint_final.pth").is_file():
        raise FileNotFoundError(f"{fold_folder / 'checkpoint_final.pth'} does not exist: train fold {fold} first")
    cases = validation_cases(Path(env["nnUNet_preprocessed"]) / name, fold)
    command = f"scripts/time_inference.py {dataset} {trainer} -f {fold} --devices {' '.join(devices)}"

    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="segresmamba_inference_") as work:
        images = Path(work) / "images"
        images.mkdir()
        copy_case_images(raw, cases, images)
        for torch_device in devices:
            prediction = Path(work) / f"prediction_{torch_device}"
            predict = predict_command(images, prediction, name, trainer, fold, torch_device, tta, plans=plans,
                                      configuration=configuration)
            print(f"[inference] {trainer} fold {fold}: {len(cases)} cases on {torch_device}", flush=True)
            seconds = timed_predict(predict, env)
            ending = json.loads((raw / "dataset.json").read_text())["file_ending"]
            predicted = len(list(prediction.glob(f"*{ending}")))
            subprocess.run([nnunet_command("nnUNetv2_evaluate_folder"), str(raw / "labelsTr"), str(prediction),
                            "-djfile", str(prediction / "dataset.json"), "-pfile", str(prediction / "plans.json"),
                            "--chill"], env=env, check=True, stdout=subprocess.DEVNULL)
            runs.append({"device": device_name(torch.device(torch_device)), "torch_device": torch_device,
                         "cases": predicted,
                         "seconds": round(seconds, 2), "tta": tta,
                         "mean_dice": _mean_dice(prediction / "summary.json")})
            write_inference_time(fold_folder, runs, command)
            print(f"[inference] {predicted} cases in {seconds:.1f} s, mean Dice {runs[-1]['mean_dice']}", flush=True)
    return inference_record(runs, command)
