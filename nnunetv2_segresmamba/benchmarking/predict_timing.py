"""Inference of one real Hippocampus case through ``nnUNetv2_predict``, SegResMamba against nnU-Net's default.

Used by ``scripts/benchmark.py predict``. What is timed is what a user waits for: the whole
``nnUNetv2_predict`` process (start-up, reading, preprocessing, sliding window, export), with and without
nnU-Net's mirroring test-time augmentation, the median of ``repeats`` runs.

The checkpoints are nnU-Net's own, written by each trainer's ``initialize()`` + ``save_checkpoint()`` with
random weights: inference cost does not depend on the weights' values, and no training is needed first.
The bundled demo dataset (real cases of MSD Task04 Hippocampus) is planned with nnU-Net's default planner.
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from nnunetv2_segresmamba.demo.run_demo import DATASET_ID, DATASET_NAME, prepare_raw_data
from nnunetv2_segresmamba.nnunet_cli import nnunet_command, nnunet_environment, run_nnunet

# Runs in a child process: nnU-Net reads its folder variables when it is imported.
_WRITE_UNTRAINED_CHECKPOINT = """
import sys, torch
from batchgenerators.utilities.file_and_folder_operations import join, save_json
from nnunetv2.run.run_training import get_trainer_from_args
trainer = get_trainer_from_args(sys.argv[1], "3d_fullres", 0, sys.argv[2], device=torch.device("cpu"))
trainer.initialize()
trainer.configure_rotation_dummyDA_mirroring_and_inital_patch_size()  # sets the mirroring axes for TTA
save_json(trainer.plans_manager.plans, join(trainer.output_folder_base, "plans.json"), sort_keys=False)
save_json(trainer.dataset_json, join(trainer.output_folder_base, "dataset.json"), sort_keys=False)
trainer.save_checkpoint(join(trainer.output_folder, "checkpoint_final.pth"))
"""


def _timed_predict(env: dict[str, str], images: Path, out: Path, trainer: str, device: str, tta: bool) -> float:
    shutil.rmtree(out, ignore_errors=True)
    command = [nnunet_command("nnUNetv2_predict"), "-i", str(images), "-o", str(out), "-d", str(DATASET_ID),
               "-c", "3d_fullres", "-f", "0", "-tr", trainer, "-device", device, "-npp", "1", "-nps", "1"]
    if not tta:
        command.append("--disable_tta")
    start = time.perf_counter()
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return seconds


def time_predict(args, device) -> list[dict]:
    work = Path(tempfile.mkdtemp(prefix="segresmamba_predict_timing_"))
    try:
        # The torch backend is what a CPU machine has; on a GPU "auto" picks mamba-ssm's kernels where installed.
        env = nnunet_environment(work, {"nnUNet_compile": "false",
                                        "SEGRESMAMBA_SCAN_BACKEND": "torch" if device.type == "cpu" else "auto"})
        prepare_raw_data(work)
        run_nnunet("nnUNetv2_plan_and_preprocess", "-d", DATASET_ID, "-c", "3d_fullres", "-np", "2", env=env,
                   log=work / "plan.log")
        images = work / "one_case"
        images.mkdir()
        case = sorted((work / "nnUNet_raw" / DATASET_NAME / "imagesTr").glob("*_0000.nii.gz"))[0]
        shutil.copy(case, images)

        plans = json.loads((work / "nnUNet_preprocessed" / DATASET_NAME / "nnUNetPlans.json").read_text())
        patch = "x".join(map(str, plans["configurations"]["3d_fullres"]["patch_size"]))
        rows = []
        for trainer in args.trainers:
            subprocess.run([sys.executable, "-c", _WRITE_UNTRAINED_CHECKPOINT, str(DATASET_ID), trainer], env=env,
                           check=True, capture_output=True)
            for tta in (True, False):
                print(f"[predict] {trainer} on {device.type}, TTA {'on' if tta else 'off'}", flush=True)
                times = [_timed_predict(env, images, work / "prediction", trainer, device.type, tta)
                         for _ in range(args.repeats)]
                rows.append(dict(trainer=trainer, case=case.name.removesuffix("_0000.nii.gz"), patch=patch,
                                 tta="mirroring" if tta else "off", repeats=args.repeats,
                                 predict_s=statistics.median(times), min_s=min(times)))
        return rows
    finally:
        shutil.rmtree(work, ignore_errors=True)
