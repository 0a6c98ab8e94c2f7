"""Inference of one real Hippocampus case through ``nnUNetv2_predict``, SegResMamba against nnU-Net's default.

Used by ``scripts/benchmark.py predict``. What is timed is what a user waits for: the whole
``nnUNetv2_predict`` process (start-up, reading, preprocessing, sliding window, export), with and without
nnU-Net's mirroring test-time augmentation, the median of ``repeats`` runs.

The checkpoints are nnU-Net's own, written by each trainer's ``initialize()`` + ``save_checkpoint()`` with
random weights (``untrained_checkpoint.py``): inference cost does not depend on the weights' values, and no
training is needed first. The timing itself is ``inference_time.timed_predict``, as for trained folds.
The bundled demo dataset (real cases of MSD Task04 Hippocampus) is planned with nnU-Net's default planner.
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from ..demo.run_demo import DATASET_ID, DATASET_NAME, prepare_raw_data
from ..nnunet_cli import nnunet_environment, run_nnunet
from .inference_time import predict_command, timed_predict

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
            subprocess.run([sys.executable, "-m", "nnunetv2_segresmamba.benchmarking.untrained_checkpoint",
                            str(DATASET_ID), trainer], env=env, check=True, capture_output=True)
            for tta in (True, False):
                print(f"[predict] {trainer} on {device.type}, TTA {'on' if tta else 'off'}", flush=True)
                command = predict_command(images, work / "prediction", str(DATASET_ID), trainer, 0, device.type, tta,
                                          "-npp", "1", "-nps", "1")
                times = []
                for _ in range(args.repeats):
                    shutil.rmtree(work / "prediction", ignore_errors=True)
                    times.append(timed_predict(command, env))
                rows.append(dict(trainer=trainer, case=case.name.removesuffix("_0000.nii.gz"), patch=patch,
                                 tta="mirroring" if tta else "off", repeats=args.repeats,
                                 predict_s=statistics.median(times), min_s=min(times)))
        return rows
    finally:
        shutil.rmtree(work, ignore_errors=True)
