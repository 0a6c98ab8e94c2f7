"""The stock nnU-Net CLI end to end on bundled real cases, on the CPU, in subprocesses:
plan/preprocess, train two folds with --npz in parallel (scripts/train_folds.py), continue fold 0 for longer
with --c, kill it mid-run and resume it with --c, predict with both folds, find_best_configuration,
ensemble, evaluate, time one fold's prediction (scripts/time_inference.py)."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from conftest import FEW_WORKERS, copy_demo_preprocessed
from nnunetv2_segresmamba.demo.run_demo import DATASET_ID, DATASET_NAME
from nnunetv2_segresmamba.nnunet_cli import nnunet_command, nnunet_environment, run_nnunet

TRAINER = "nnUNetTrainerSegResMamba_CITiny"
SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
RESULTS = f"{TRAINER}__nnUNetPlans__3d_fullres"
pytestmark = pytest.mark.slow
# Fold 0 is continued to LONG_EPOCHS epochs of LONG_ITERATIONS steps: long enough to learn (its Dice is then
# checked against what an untrained network reaches), and killed once on the way.
LONG_EPOCHS, LONG_ITERATIONS = 7, 10
# On these validation cases a constant or a uniformly random label map scores about 0.06 foreground Dice
# per class, and fold 0 after its first 2 steps about 0.07; after the ~60 steps of the continued run it
# scores well above this.
TRAINED_DICE = 0.2


def checkpoint_epoch(path: Path) -> int:
    return torch.load(path, weights_only=False, map_location="cpu")["current_epoch"]


def train_and_kill(env: dict, log: Path, fold_dir: Path, kill_at_epoch: int, timeout_s: float = 900) -> int:
    """Run `nnUNetv2_train ... --c` and kill it (with its data-loader processes) as soon as its
    checkpoint_latest.pth records ``kill_at_epoch`` or later; the epoch it recorded."""
    command = [nnunet_command("nnUNetv2_train"), str(DATASET_ID), "3d_fullres", "0", "-tr", TRAINER,
               "-device", "cpu", "--npz", "--c"]
    latest = fold_dir / "checkpoint_latest.pth"
    with open(log, "a") as handle:
        process = subprocess.Popen(command, env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and process.poll() is None:
            # written atomically (write, then rename): whatever exists is complete
            if latest.exists() and checkpoint_epoch(latest) >= kill_at_epoch:
                break
            time.sleep(0.2)
        assert process.poll() is None, "training ended before it could be killed:\n" + log.read_text()[-3000:]
        assert time.monotonic() < deadline, "no checkpoint_latest.pth in time:\n" + log.read_text()[-3000:]
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    return checkpoint_epoch(latest)


def read_labels(path: Path) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def check_label_maps(folder: Path, cases: list[str], raw: Path) -> None:
    for case in cases:
        prediction = read_labels(folder / f"{case}.nii.gz")
        image = read_labels(raw / "imagesTr" / f"{case}_0000.nii.gz")
        assert prediction.shape == image.shape, case
        assert set(np.unique(prediction)) <= {0, 1, 2}, case


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory, demo_preprocessed):
    work = tmp_path_factory.mktemp("nnunet")
    ext = str(Path(__file__).parent / "ext_trainers")
    env = nnunet_environment(work, {"nnUNet_extTrainer": ext, "nnUNet_n_proc_DA": "1", **FEW_WORKERS,
                                    "nnUNet_compile": "false", "SEGRESMAMBA_TEST_EPOCHS": "1"})
    # planned and preprocessed by nnUNetv2_plan_and_preprocess (the session's demo_preprocessed, in conftest.py)
    copy_demo_preprocessed(demo_preprocessed, work)
    log = work / "cli.log"
    run = lambda *args, **kw: run_nnunet(*args, env={**env, **kw}, log=log)  # noqa: E731

    # Folds 0 and 1 side by side, each a stock `nnUNetv2_train ... --npz -device cpu` started by the
    # parallel-folds script, which then runs nnUNetv2_find_best_configuration on them.
    with open(log, "a") as handle:
        folds = subprocess.run([sys.executable, str(SCRIPTS / "train_folds.py"), str(DATASET_ID), TRAINER,
                                "--folds", "0", "1", "--cpu-jobs", "2", "--logs", str(work / "fold_logs")],
                               env=env, stdout=handle, stderr=subprocess.STDOUT)
    assert folds.returncode == 0, "".join(open(log).readlines()[-40:])
    results = work / "nnUNet_results" / DATASET_NAME / RESULTS
    fold_dir = results / "fold_0"
    epochs_before = checkpoint_epoch(fold_dir / "checkpoint_final.pth")
    # Continue the finished fold 0 for longer, kill it after its first new epoch, resume: --c must pick the
    # newer checkpoint_latest.pth over checkpoint_final.pth, and continue from the epoch it recorded.
    longer = {**env, "SEGRESMAMBA_TEST_EPOCHS": str(LONG_EPOCHS), "SEGRESMAMBA_TEST_ITERATIONS": str(LONG_ITERATIONS)}
    killed_at = train_and_kill(longer, log, fold_dir, kill_at_epoch=epochs_before + 1)
    epochs_at_kill = checkpoint_epoch(fold_dir / "checkpoint_final.pth")
    logs_before = set(fold_dir.glob("training_log_*.txt"))
    run("nnUNetv2_train", DATASET_ID, "3d_fullres", 0, "-tr", TRAINER, "-device", "cpu", "--npz", "--c",
        SEGRESMAMBA_TEST_EPOCHS=str(LONG_EPOCHS), SEGRESMAMBA_TEST_ITERATIONS=str(LONG_ITERATIONS))
    (resumed_log,) = set(fold_dir.glob("training_log_*.txt")) - logs_before
    epochs_after = checkpoint_epoch(fold_dir / "checkpoint_final.pth")

    raw = work / "nnUNet_raw" / DATASET_NAME
    splits = json.loads((work / "nnUNet_preprocessed" / DATASET_NAME / "splits_final.json").read_text())
    cases = sorted(splits[0]["val"])
    images, labels = work / "test_images", work / "test_labels"
    images.mkdir()
    labels.mkdir()
    for case in cases:
        shutil.copy(raw / "imagesTr" / f"{case}_0000.nii.gz", images)
        shutil.copy(raw / "labelsTr" / f"{case}.nii.gz", labels)
    common = ["-i", images, "-d", DATASET_ID, "-c", "3d_fullres", "-tr", TRAINER, "-device", "cpu"]
    # Both folds as one model, and fold 0 alone; their probabilities then ensembled.
    run("nnUNetv2_predict", *common, "-o", work / "pred_folds01", "-f", "0", "1", "--save_probabilities")
    run("nnUNetv2_predict", *common, "-o", work / "pred_fold0", "-f", "0", "--save_probabilities")
    run("nnUNetv2_find_best_configuration", DATASET_ID, "-c", "3d_fullres", "-tr", TRAINER, "-f", "0", "1")
    run("nnUNetv2_ensemble", "-i", work / "pred_folds01", work / "pred_fold0", "-o", work / "ensemble")
    run("nnUNetv2_evaluate_folder", labels, work / "ensemble",
        "-djfile", results / "dataset.json", "-pfile", results / "plans.json")
    # Fold 1's validation cases predicted again and timed, for scripts/compare.py's inference column.
    with open(log, "a") as handle:
        timing = subprocess.run([sys.executable, str(SCRIPTS / "time_inference.py"), str(DATASET_ID), TRAINER,
                                 "-f", "1", "--devices", "cpu"], env=env, stdout=handle, stderr=subprocess.STDOUT)
    assert timing.returncode == 0, "".join(open(log).readlines()[-40:])
    return dict(work=work, raw=raw, cases=cases, results=results, log=log, epochs_before=epochs_before,
                killed_at=killed_at, epochs_at_kill=epochs_at_kill, resumed_log=resumed_log.read_text(),
                epochs_after=epochs_after)


def test_training_writes_checkpoints_and_npz_validation(pipeline):
    log = pipeline["log"].read_text()
    assert "folds [0, 1] on CPU job 0, CPU job 1" in log and "FAILED" not in log
    for fold in (0, 1):
        fold_dir = pipeline["results"] / f"fold_{fold}"
        assert (fold_dir / "checkpoint_final.pth").exists()
        summary = json.loads((fold_dir / "validation" / "summary.json").read_text())
        assert 0.0 <= summary["foreground_mean"]["Dice"] <= 1.0
        assert list(fold_dir.glob("validation/*.npz")), "--npz must save validation probabilities"
        # debug.json records the network that trained: 3 outputs (background + 2 labels), deep supervision on.
        network_config = json.loads((fold_dir / "debug.json").read_text())["network_config"]
        assert "num_classes=3," in network_config and "deep_supervision=True" in network_config
    plans = json.loads((pipeline["results"] / "plans.json").read_text())
    assert plans["configurations"]["3d_fullres"]["batch_size"] == 2  # what trained is what is recorded


def test_killed_training_resumes_from_the_last_saved_epoch(pipeline):
    assert pipeline["epochs_before"] == 1
    # killed mid-run: after at least one new epoch, before the end (checkpoint_final still from the first run)
    assert pipeline["epochs_at_kill"] == 1 and 2 <= pipeline["killed_at"] < LONG_EPOCHS
    resumed = pipeline["resumed_log"]
    assert re.search(rf"Resuming training at epoch {pipeline['killed_at']} \(of {LONG_EPOCHS}\) from \S*"
                     rf"checkpoint_latest\.pth", resumed), resumed[-3000:]
    epochs_run = [int(n) for n in re.findall(r"^\S+ \S+: Epoch (\d+)\s*$", resumed, flags=re.M)]
    assert epochs_run == list(range(pipeline["killed_at"], LONG_EPOCHS)), epochs_run
    assert pipeline["epochs_after"] == LONG_EPOCHS


def test_the_longer_trained_fold_has_learned(pipeline):
    """Fold 0 trained for LONG_EPOCHS x LONG_ITERATIONS steps: its validation Dice (nnU-Net's own, on its
    validation cases) must exceed what an untrained network reaches."""
    summary = json.loads((pipeline["results"] / "fold_0" / "validation" / "summary.json").read_text())
    assert summary["foreground_mean"]["Dice"] > TRAINED_DICE, summary["mean"]


def test_predictions_are_label_maps_of_the_input_size(pipeline):
    for folder in ("pred_folds01", "pred_fold0", "ensemble"):
        check_label_maps(pipeline["work"] / folder, pipeline["cases"], pipeline["raw"])


def test_find_best_configuration_and_evaluation_outputs(pipeline):
    dataset_results = pipeline["results"].parent
    inference_info = json.loads((dataset_results / "inference_information.json").read_text())
    assert inference_info["best_model_or_ensemble"]["selected_model_or_models"][0]["trainer"] == TRAINER
    summary = json.loads((pipeline["work"] / "ensemble" / "summary.json").read_text())
    assert len(summary["metric_per_case"]) == len(pipeline["cases"])
    assert 0.0 <= summary["foreground_mean"]["Dice"] <= 1.0


def test_inference_time_is_recorded_for_the_comparison(pipeline):
    from nnunetv2_segresmamba.comparison import collect_fold

    splits = json.loads((pipeline["work"] / "nnUNet_preprocessed" / DATASET_NAME / "splits_final.json").read_text())
    record = json.loads((pipeline["results"] / "fold_1" / "inference_time.json").read_text())
    assert record["torch_device"] == "cpu" and record["tta"] is False
    assert record["cases"] == len(splits[1]["val"]) and record["seconds"] > 0
    assert 0.0 <= record["runs"][0]["mean_dice"] <= 1.0
    fold = collect_fold(pipeline["results"] / "fold_1", {})
    assert (fold["inference_seconds"], fold["inference_cases"]) == (record["seconds"], record["cases"])
