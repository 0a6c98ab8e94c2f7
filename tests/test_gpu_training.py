"""SegResMamba's trainer, its steps in CUDA graphs, through nnU-Net's whole training life on a GPU, in
subprocesses: `nnUNetv2_train` compiled as nnU-Net compiles by default, with checkpoints, the final validation
and --npz; continued with --c; then `nnUNetv2_predict` with the fold. What tests/test_cli_end_to_end.py checks
on the CPU, where nothing is compiled."""

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import FEW_WORKERS, copy_demo_preprocessed
from nnunetv2_segresmamba import ssm
from nnunetv2_segresmamba.demo.run_demo import DATASET_ID, DATASET_NAME
from nnunetv2_segresmamba.nnunet_cli import nnunet_environment, run_nnunet

pytestmark = [pytest.mark.gpu, pytest.mark.slow,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine"),
              pytest.mark.skipif(not ssm.triton_available(), reason="Triton is not installed")]

TRAINER = "nnUNetTrainerSegResMamba_CITiny"  # the default trainer, at CI size
FIRST_EPOCHS, LATER_EPOCHS, ITERATIONS = 2, 3, 4


def checkpoint(path: Path) -> dict:
    return torch.load(path, weights_only=False, map_location="cpu")


@pytest.fixture(scope="module")
def trained(tmp_path_factory, demo_preprocessed):
    work = tmp_path_factory.mktemp("gpu_training")
    env = nnunet_environment(work, {"nnUNet_extTrainer": str(Path(__file__).parent / "ext_trainers"),
                                    "nnUNet_n_proc_DA": "2", **FEW_WORKERS, "SEGRESMAMBA_TEST_ITERATIONS":
                                    str(ITERATIONS)})
    env["nnUNet_compile"] = "true"  # nnU-Net's default on a GPU, whatever this shell says
    copy_demo_preprocessed(demo_preprocessed, work)
    log = work / "train.log"
    train = ["nnUNetv2_train", DATASET_ID, "3d_fullres", 0, "-tr", TRAINER, "-device", "cuda", "--npz"]
    run_nnunet(*train, env={**env, "SEGRESMAMBA_TEST_EPOCHS": str(FIRST_EPOCHS)}, log=log)
    fold = work / "nnUNet_results" / DATASET_NAME / f"{TRAINER}__nnUNetPlans__3d_fullres" / "fold_0"
    first = checkpoint(fold / "checkpoint_final.pth")
    first_summary = json.loads((fold / "validation" / "summary.json").read_text())
    logs_before = set(fold.glob("training_log_*.txt"))
    run_nnunet(*train, "--c", env={**env, "SEGRESMAMBA_TEST_EPOCHS": str(LATER_EPOCHS)}, log=log)
    (resumed_log,) = set(fold.glob("training_log_*.txt")) - logs_before
    predictions, images = work / "predictions", work / "images"
    images.mkdir()
    for image in sorted((work / "nnUNet_raw" / DATASET_NAME / "imagesTr").glob("*_0000.nii.gz"))[:3]:
        shutil.copy(image, images)
    run_nnunet("nnUNetv2_predict", "-i", images, "-o", predictions, "-d", DATASET_ID, "-c", "3d_fullres",
               "-tr", TRAINER, "-f", 0, "-device", "cuda", env=env, log=log)
    return dict(fold=fold, first=first, first_summary=first_summary, resumed_log=resumed_log.read_text(),
                log=log.read_text(), predictions=predictions, images=images)


def test_it_trains_compiled_with_cuda_graphs_and_validates(trained):
    assert "Compiled again with mode='reduce-overhead'" in trained["log"], trained["log"][-3000:]
    assert trained["first"]["current_epoch"] == FIRST_EPOCHS
    losses = trained["first"]["logging"]["train_losses"]
    assert len(losses) == FIRST_EPOCHS and all(np.isfinite(losses)), losses
    assert 0.0 <= trained["first_summary"]["foreground_mean"]["Dice"] <= 1.0
    assert list(trained["fold"].glob("validation/*.npz")), "--npz must save validation probabilities"
    weights = trained["first"]["network_weights"]
    assert not any(key.startswith("_orig_mod.") for key in weights)  # the plain network's keys
    assert all(torch.isfinite(w).all() for w in weights.values() if w.is_floating_point())


def test_continue_resumes_the_compiled_training(trained):
    resumed = trained["resumed_log"]
    assert re.search(rf"Resuming training at epoch {FIRST_EPOCHS} \(of {LATER_EPOCHS}\)", resumed), resumed[-3000:]
    final = checkpoint(trained["fold"] / "checkpoint_final.pth")
    assert final["current_epoch"] == LATER_EPOCHS
    assert final["logging"]["train_losses"][:FIRST_EPOCHS] == trained["first"]["logging"]["train_losses"]
    changed = [not torch.equal(final["network_weights"][k], w) for k, w in trained["first"]["network_weights"].items()
               if w.is_floating_point()]
    assert any(changed)  # the resumed epoch trained


def test_the_fold_predicts_on_the_gpu(trained):
    cases = sorted(p.name.replace("_0000.nii.gz", "") for p in trained["images"].glob("*_0000.nii.gz"))
    predicted = sorted(p.name.replace(".nii.gz", "") for p in trained["predictions"].glob("*.nii.gz"))
    assert predicted == cases and cases
