"""The SLURM submission without a cluster: which trainings are left, the sbatch scripts (run by bash with a
stand-in for nnUNetv2_train) and what is handed to sbatch (a stand-in that records its input)."""

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from nnunetv2_segresmamba.cluster.checks import SubmissionError, check_configurations, resolve_trainers
from nnunetv2_segresmamba.cluster.slurm import (ArrayTask, SbatchOptions, dry_run_text, prepare,
                                                render_array_script, submit)
from nnunetv2_segresmamba.cluster.trainings import State, Training, training_matrix, training_states

REPO = Path(__file__).resolve().parents[1]
DATASET = "Dataset990_HippocampusDemo"
TRAINER = "nnUNetTrainerSegResMamba"


def make_tree(root: Path, monkeypatch) -> Path:
    """nnU-Net's folders with the trainer's fold 0 finished, fold 1 interrupted, fold 2 aborted in its
    validation (final checkpoint, no summary), fold 3 never started."""
    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        (root / name / DATASET).mkdir(parents=True)
        monkeypatch.setenv(name, str(root / name))
    # nnU-Net's plans for Hippocampus: 2d and 3d_fullres
    shutil.copy(REPO / "tests" / "data" / "hippocampus_plans.json",
                root / "nnUNet_preprocessed" / DATASET / "nnUNetPlans.json")
    folder = root / "nnUNet_results" / DATASET / f"{TRAINER}__nnUNetPlans__3d_fullres"
    for fold, files in {0: ["checkpoint_final.pth", "validation/summary.json"], 1: ["checkpoint_latest.pth"],
                        2: ["checkpoint_final.pth"]}.items():
        for name in files:
            (folder / f"fold_{fold}" / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / f"fold_{fold}" / name).write_text("{}")
    return folder


def write_executable(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_states_of_the_trainings_on_disk(tmp_path, monkeypatch):
    make_tree(tmp_path, monkeypatch)
    states = training_states(training_matrix("990", [TRAINER], ["3d_fullres"], [0, 1, 2, 3]))
    assert [s for s in states.values()] == [State.FINISHED, State.RESUMABLE, State.RESUMABLE, State.NEW]
    # Another trainer, and the same trainer with other plans, have nothing on disk.
    other = training_states(training_matrix(DATASET, ["nnUNetTrainer"], ["3d_fullres"], [0])
                            + training_matrix("990", [TRAINER], ["3d_fullres"], [0], plans="nnUNetResEncUNetMPlans"))
    assert set(other.values()) == {State.NEW}


def test_unknown_dataset_and_cascade_errors_say_what_to_do(tmp_path, monkeypatch):
    make_tree(tmp_path, monkeypatch)
    with pytest.raises(RuntimeError, match="run nnUNetv2_plan_and_preprocess"):
        training_states(training_matrix("4", [TRAINER], ["3d_fullres"], [0]))
    monkeypatch.delenv("nnUNet_results")
    with pytest.raises(RuntimeError, match="nnUNet_results is not set"):
        training_states(training_matrix("990", [TRAINER], ["3d_fullres"], [0]))
    with pytest.raises(ValueError, match="train 3d_lowres first"):
        training_matrix("990", [TRAINER], ["3d_lowres", "3d_cascade_fullres"], [0])


def test_submission_leaves_out_finished_and_resumes_interrupted(tmp_path, monkeypatch):
    make_tree(tmp_path, monkeypatch)
    states = training_states(training_matrix("990", [TRAINER], ["3d_fullres"], [0, 1, 2, 3]))
    options = SbatchOptions(logs=tmp_path / "logs", partition="gpu", time="1-00:00:00", gpus_per_task=2,
                            max_parallel=3, extra=("qos=high", "--constraint=a100"))
    submission = prepare(states, options, [["echo", "summary"]], num_gpus=2,
                         environment={"nnUNet_results": "/data/my results", "SEGRESMAMBA_SCAN_BACKEND": "cuda"})
    assert [t.fold for t in submission.skipped] == [0]
    assert [(t.training.fold, t.resume) for t in submission.tasks] == [(1, True), (2, True), (3, False)]
    assert [t.command[-1] == "--c" for t in submission.tasks] == [True, True, False]
    for task in submission.tasks:
        assert "--npz" in task.command and task.command[task.command.index("-num_gpus") + 1] == "2"
    script = submission.array_script
    for line in ("#SBATCH --array=0-2%3", "#SBATCH --gres=gpu:2", "#SBATCH --partition=gpu",
                 "#SBATCH --time=1-00:00:00", "#SBATCH --qos=high", "#SBATCH --constraint=a100",
                 f"#SBATCH --output={tmp_path / 'logs'}/%x_%A_%a.out"):
        assert line in script.splitlines()
    assert "--gres" not in submission.summary_script  # the summary needs no GPU
    assert "#SBATCH --partition=gpu" in submission.summary_script.splitlines()
    assert "export nnUNet_results='/data/my results'" in submission.summary_script.splitlines()
    printed = dry_run_text(submission)
    assert printed.count("#!/bin/bash") == 2 and "--dependency=afterok:" in printed
    with pytest.raises(ValueError, match="-num_gpus 4 needs at least 4 GPUs"):
        prepare(states, options, [], num_gpus=4)


def test_cpu_trainings_request_no_gpu(tmp_path, monkeypatch):
    make_tree(tmp_path, monkeypatch)
    states = training_states(training_matrix("990", [TRAINER], ["3d_fullres"], [3]))
    submission = prepare(states, SbatchOptions(logs=tmp_path), [], device="cpu", environment={})
    assert "--gres" not in submission.array_script
    assert submission.tasks[0].command[-2:] == ["-device", "cpu"]


def test_array_script_runs_the_training_of_its_task(tmp_path):
    """bash runs the rendered script as SLURM would: the array index picks the command, the environment is
    exported exactly (spaces, quotes), an index without a training fails."""
    fake = write_executable(tmp_path / "fake_train", '#!/bin/bash\necho "args: $*"\necho "results: $nnUNet_results"\n')
    tasks = [ArrayTask(Training("990", "3d_fullres", TRAINER, fold), [str(fake), "fold", str(fold), "it's"], False)
             for fold in (3, 4)]
    environment = {"nnUNet_results": "/data/it's my results"}
    script = tmp_path / "array.sh"
    script.write_text(render_array_script(tasks, SbatchOptions(logs=tmp_path), environment, with_gpus=False))
    clean = {"PATH": os.environ["PATH"]}

    def run(index: str | None) -> subprocess.CompletedProcess:
        env = clean if index is None else {**clean, "SLURM_ARRAY_TASK_ID": index}
        return subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True)

    second = run("1")
    assert second.returncode == 0, second.stderr
    assert "args: fold 4 it's" in second.stdout.splitlines()
    assert "results: /data/it's my results" in second.stdout.splitlines()
    assert "args: fold 3 it's" in run("0").stdout.splitlines()
    missing = run("2")
    assert missing.returncode == 2 and "no training for array task 2" in missing.stderr
    assert run(None).returncode != 0


@pytest.fixture
def fake_sbatch(tmp_path, monkeypatch):
    """An sbatch that records its arguments and script and answers job ids 41, 42, ... as --parsable does."""
    calls = tmp_path / "sbatch_calls"
    calls.mkdir()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    write_executable(bin_dir / "sbatch", f"""#!/bin/bash
n=$(ls {calls}/*.args 2>/dev/null | wc -l)
printf '%s\\n' "$@" > {calls}/$n.args
cat > {calls}/$n.script
[ -n "${{FAIL_SBATCH:-}}" ] && {{ echo "sbatch: error: invalid partition" >&2; exit 1; }}
echo "$((41 + n));mycluster"
""")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")

    def recorded() -> list[tuple[list[str], str]]:
        return [((calls / f"{i}.args").read_text().split(), (calls / f"{i}.script").read_text())
                for i in range(len(list(calls.glob("*.args"))))]
    return recorded


def test_submit_chains_the_summary_after_the_array(tmp_path, monkeypatch, fake_sbatch):
    make_tree(tmp_path, monkeypatch)
    states = training_states(training_matrix("990", [TRAINER], ["3d_fullres"], [0, 1]))
    options = SbatchOptions(logs=tmp_path / "new" / "logs")
    submission = prepare(states, options, [["echo", "summary"]])
    assert submit(submission, options) == ("41", "42")
    (array_args, array_script), (summary_args, summary_script) = fake_sbatch()
    assert array_args == ["--parsable"] and array_script == submission.array_script
    assert summary_args == ["--parsable", "--dependency=afterok:41", "--kill-on-invalid-dep=yes"]
    assert summary_script == submission.summary_script
    assert options.logs.is_dir()  # sbatch does not create the folder of --output


def test_submit_with_everything_finished_runs_only_the_summary(tmp_path, monkeypatch, fake_sbatch):
    make_tree(tmp_path, monkeypatch)
    states = training_states(training_matrix("990", [TRAINER], ["3d_fullres"], [0]))
    submission = prepare(states, SbatchOptions(logs=tmp_path), [["echo", "summary"]])
    assert submission.array_script is None
    assert submit(submission, SbatchOptions(logs=tmp_path)) == (None, "41")
    assert [args for args, _ in fake_sbatch()] == [["--parsable"]]
    monkeypatch.setenv("FAIL_SBATCH", "1")
    with pytest.raises(RuntimeError, match="invalid partition"):
        submit(submission, SbatchOptions(logs=tmp_path))


def test_command_line_dry_run_and_errors(tmp_path, monkeypatch):
    make_tree(tmp_path, monkeypatch)
    command = [sys.executable, str(REPO / "scripts" / "slurm_submit.py"), "990", "-tr", TRAINER, "nnUNetTrainer",
               "-f", "0", "1", "--device", "cpu", "--logs", str(tmp_path / "logs"), "--dry-run"]
    result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "PATH": "/nonexistent"})
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert f"finished, skipped: {TRAINER} 3d_fullres fold 0" in lines
    assert f"resumes with --c: {TRAINER} 3d_fullres fold 1" in lines
    assert "#SBATCH --array=0-2" in lines  # TRAINER fold 1, nnUNetTrainer folds 0 and 1
    summary = lines[lines.index("#SBATCH --job-name=nnunet_summary"):]
    find_best = next(line for line in summary if "nnUNetv2_find_best_configuration" in line)
    assert find_best.endswith(f"990 -c 3d_fullres -tr {TRAINER} nnUNetTrainer -p nnUNetPlans -f 0 1")
    assert any(str(REPO / "scripts" / "compare.py") in line for line in summary)
    assert not (tmp_path / "logs").exists()  # a dry run writes nothing
    gpus = subprocess.run(command[:-1] + ["--device", "cuda", "--num-gpus", "2", "--gpus-per-task", "1", "--dry-run"],
                          capture_output=True, text=True)
    assert gpus.returncode == 2 and "-num_gpus 2 needs at least 2 GPUs" in gpus.stderr
    no_data = subprocess.run([*command[:2], "4", *command[3:]], capture_output=True, text=True)
    assert no_data.returncode == 2 and "run nnUNetv2_plan_and_preprocess" in no_data.stderr


# --- checks before anything is written ---------------------------------------------------------------------

def test_trainer_names_resolve_through_nnunets_lookup(tmp_path, monkeypatch):
    trainers = resolve_trainers([TRAINER, "nnUNetTrainer", TRAINER])
    assert [cls.__name__ for cls in trainers.values()] == [TRAINER, "nnUNetTrainer"]
    with pytest.raises(SubmissionError) as error:
        resolve_trainers(["nnUNetTrainerSegResMambaa", "nnUNetTrainer", "NoSuchThing"])
    lines = str(error.value).splitlines()
    assert lines[0].startswith("unknown trainer 'nnUNetTrainerSegResMambaa'; did you mean nnUNetTrainerSegResMamba")
    assert lines[1] == "unknown trainer 'NoSuchThing'"
    assert "nnUNetTrainerSegResMamba_noAMP" in lines[2]  # the valid SegResMamba names
    # a folder of one's own in nnUNet_extTrainer is searched as nnUNetv2_train searches it
    monkeypatch.setenv("nnUNet_extTrainer", str(REPO / "tests" / "ext_trainers"))
    assert resolve_trainers(["nnUNetTrainerSegResMamba_CITiny"])["nnUNetTrainerSegResMamba_CITiny"].__name__ \
        == "nnUNetTrainerSegResMamba_CITiny"


def test_configurations_are_checked_against_the_plans_and_the_trainers(tmp_path, monkeypatch):
    make_tree(tmp_path, monkeypatch)
    trainers = resolve_trainers([TRAINER, "nnUNetTrainer"])
    check_configurations("990", "nnUNetPlans", ["3d_fullres"], trainers)
    check_configurations("990", "nnUNetPlans", ["2d"], {"nnUNetTrainer": trainers["nnUNetTrainer"]})
    with pytest.raises(SubmissionError) as error:
        check_configurations("990", "nnUNetPlans", ["2d", "3d_lowres"], trainers)
    assert str(error.value).splitlines() == [
        "configuration '3d_lowres' is not in nnUNetPlans.json; it has 2d, 3d_fullres",
        f"{TRAINER} cannot train 2d: SegResMamba is a 3D network, but this configuration has a 2D patch [56, 40]. "
        f"Train a 3D configuration instead: `nnUNetv2_train DATASET 3d_fullres FOLD -tr nnUNetTrainerSegResMamba` "
        f"(or 3d_lowres / 3d_cascade_fullres)."]
    with pytest.raises(SubmissionError, match="no plans .*nnUNetResEncUNetMPlans.json.*pick one of -p nnUNetPlans"):
        check_configurations("990", "nnUNetResEncUNetMPlans", ["3d_fullres"], trainers)


def test_command_line_refuses_before_writing_any_job_and_lists_every_mistake(tmp_path, monkeypatch, fake_sbatch):
    make_tree(tmp_path, monkeypatch)
    command = [sys.executable, str(REPO / "scripts" / "slurm_submit.py"), "990", "-tr", "nnUNetTrainerSegResMambaa",
               TRAINER, "-c", "3d_fullres", "2d", "-f", "0", "--logs", str(tmp_path / "logs")]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 2, result.stderr
    assert "error: unknown trainer 'nnUNetTrainerSegResMambaa'; did you mean nnUNetTrainerSegResMamba" in result.stderr
    assert f"{TRAINER} cannot train 2d: SegResMamba is a 3D network" in result.stderr
    assert "#!/bin/bash" not in result.stdout and fake_sbatch() == [] and not (tmp_path / "logs").exists()
