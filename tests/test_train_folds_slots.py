"""scripts/train_folds.py's slots: how many folds train at once, and on which GPU each one runs."""

import importlib.util
import itertools
import re
import subprocess
import sys
from pathlib import Path

import pytest

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


def test_several_trainers_share_the_slots_and_are_compared_on_the_folds_all_finished(tmp_path, monkeypatch,
                                                                                     capsys):
    from nnunetv2_segresmamba.cluster.trainings import State, training_matrix
    script = load_script()
    trainings = training_matrix("4", ["A", "B"], ["3d_fullres"], [0, 1])
    states = dict(zip(trainings, [State.NEW, State.FINISHED, State.NEW, State.NEW]))  # A0 A1 B0 B1
    monkeypatch.setattr(script, "training_states", lambda _: states)
    started, ran = [], []

    class Finished:  # a training that ends at once: B fold 1 fails
        def __init__(self, command, env, stdout, stderr):
            started.append((command[command.index("-tr") + 1], command[3], Path(stdout.name).name))
            self.returncode = 1 if started[-1][:2] == ("B", "1") else 0

        def poll(self):
            return self.returncode

    monkeypatch.setattr(script.subprocess, "Popen", Finished)
    monkeypatch.setattr(script.subprocess, "run", lambda command, check: ran.append(command))
    monkeypatch.setattr(script.time, "sleep", lambda seconds: None)
    clock = itertools.count(0.0, 90.0)  # each reading of the clock 90 s later
    monkeypatch.setattr(script.time, "time", lambda: next(clock))
    monkeypatch.setattr(sys, "argv", ["train_folds.py", "4", "A", "B", "--folds", "0", "1", "--cpu-jobs", "2",
                                      "--logs", str(tmp_path / "logs")])
    assert script.main() == 1  # a training failed; the others ran
    assert started == [("A", "0", "A_fold_0.log"), ("B", "0", "B_fold_0.log"), ("B", "1", "B_fold_1.log")]
    (find_best,) = ran
    assert find_best[find_best.index("-tr") + 1:find_best.index("-p")] == ["A", "B"]
    assert find_best[find_best.index("-f") + 1:] == ["0"]  # fold 1 of B failed: compared on fold 0 only
    # the two trainings that finished in this run (A fold 1 was finished before), per hour with 2 slots
    minutes, rate = re.search(r"2 trainings finished in ([\d.]+) min with 2 at once: ([\d.]+) per hour",
                              capsys.readouterr().out).groups()
    assert float(rate) == pytest.approx(2 / (float(minutes) / 60), rel=0.01) and float(minutes) > 0
