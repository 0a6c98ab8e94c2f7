"""scripts/train_folds.py's slots: how many folds train at once, and on which GPU each one runs."""

import importlib.util
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "train_folds.py"


def load_script():
    spec = importlib.util.spec_from_file_location("train_folds", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_one_fold_per_gpu_by_default():
    slots = load_script().training_slots(["0", "1"], per_gpu=1, cpu_jobs=0)
    assert slots == {"GPU 0": {"CUDA_VISIBLE_DEVICES": "0"}, "GPU 1": {"CUDA_VISIBLE_DEVICES": "1"}}


def test_several_folds_per_gpu_spread_over_the_gpus_in_turn():
    slots = load_script().training_slots(["0", "1"], per_gpu=3, cpu_jobs=0)
    assert list(slots) == ["GPU 0 job 0", "GPU 1 job 0", "GPU 0 job 1", "GPU 1 job 1", "GPU 0 job 2", "GPU 1 job 2"]
    # the first two folds started go to different GPUs
    assert [slots[name]["CUDA_VISIBLE_DEVICES"] for name in list(slots)[:2]] == ["0", "1"]


def test_cpu_jobs_ignore_the_gpus():
    assert load_script().training_slots(["0"], per_gpu=2, cpu_jobs=2) == {"CPU job 0": {}, "CPU job 1": {}}


def test_per_gpu_below_one_is_refused_before_anything_runs(tmp_path):
    result = subprocess.run([sys.executable, str(SCRIPT), "4", "nnUNetTrainerSegResMamba", "--gpus", "0",
                             "--per-gpu", "0", "--logs", str(tmp_path / "logs")], capture_output=True, text=True)
    assert result.returncode == 2 and "--per-gpu must be 1 or more, not 0" in result.stderr
    assert not (tmp_path / "logs").exists()
