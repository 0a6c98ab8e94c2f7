"""scripts/slurm_submit.py against a real SLURM: Debian's controller, node daemon and munge, started on this
machine as a one-node cluster with its own configuration in a temporary folder.

A CPU array of two short folds of the bundled demo data; one task is cancelled in its second epoch, which
also cancels the summary job waiting on the array; the same command, run again, skips the finished fold and
resumes the cancelled one with --c; then the summary job runs find_best_configuration and compare.py.
Skips (with the reason) where SLURM cannot be installed or started: not root, no apt-get, no daemons.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import FEW_WORKERS, copy_demo_preprocessed
from nnunetv2_segresmamba.demo.run_demo import DATASET_ID, DATASET_NAME
from nnunetv2_segresmamba.nnunet_cli import nnunet_environment

pytestmark = pytest.mark.slow

TRAINER = "nnUNetTrainerSegResMamba_CITiny"
REPO = Path(__file__).resolve().parents[1]
PACKAGES = ["slurmctld", "slurmd", "slurm-client", "munge"]
PROGRAMS = ["slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "scancel", "munged"]
ENDED = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED", "BOOT_FAIL",
         "DEADLINE"}


def tail(path: Path, lines: int = 30) -> str:
    return "".join(path.read_text(errors="replace").splitlines(keepends=True)[-lines:]) if path.exists() else ""


def install_slurm() -> None:
    """Debian's packages, where they are missing; pytest.skip where that is not possible here."""
    if all(shutil.which(p) for p in PROGRAMS):
        return
    if os.geteuid() != 0:
        pytest.skip(f"SLURM is not installed and installing it needs root: apt-get install {' '.join(PACKAGES)}")
    if shutil.which("apt-get") is None:
        pytest.skip(f"SLURM is not installed and there is no apt-get to install {' '.join(PACKAGES)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update"], ["apt-get", "install", "-y", "--no-install-recommends", *PACKAGES]):
        result = subprocess.run(command, env=env, capture_output=True, text=True)
        if result.returncode != 0:
            pytest.skip(f"{' '.join(command)} failed: {result.stderr.strip()[-500:]}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def slurm_conf(folder: Path, node: str) -> str:
    """One node with 2 CPUs, no cgroups, no accounting database: jobs are tracked as process trees and their
    records kept by the controller (MinJobAge) long enough for the test to read their final state."""
    return f"""\
ClusterName=segresmambatest
SlurmctldHost={node}(127.0.0.1)
SlurmctldPort={free_port()}
SlurmdPort={free_port()}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={folder}/munge.socket
SlurmUser=root
SlurmdUser=root
StateSaveLocation={folder}/state
SlurmdSpoolDir={folder}/spool
SlurmctldPidFile={folder}/slurmctld.pid
SlurmdPidFile={folder}/slurmd.pid
SlurmctldLogFile={folder}/slurmctld.log
SlurmdLogFile={folder}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SlurmdParameters=config_overrides
MpiDefault=none
ReturnToService=2
MinJobAge=3600
KillWait=5
NodeName={node} NodeAddr=127.0.0.1 CPUs=2 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    """SLURM_CONF of a running one-node cluster; on exit every job is cancelled and the daemons stopped."""
    install_slurm()
    if os.geteuid() != 0:
        pytest.skip("starting slurmd needs root")
    folder = tmp_path_factory.mktemp("slurm")
    folder.chmod(0o700)  # munged refuses a key or socket that others can reach
    for name in ("state", "spool"):
        (folder / name).mkdir()
    key = folder / "munge.key"
    key.write_bytes(os.urandom(128))
    key.chmod(0o600)
    node = socket.gethostname().split(".")[0]
    (folder / "slurm.conf").write_text(slurm_conf(folder, node))
    env = {**os.environ, "SLURM_CONF": str(folder / "slurm.conf")}
    starts = [["munged", "--foreground", "--force", f"--key-file={key}", f"--socket={folder}/munge.socket",
               f"--pid-file={folder}/munged.pid", f"--log-file={folder}/munged.log",
               f"--seed-file={folder}/munge.seed"],
              ["slurmctld", "-D", "-i"], ["slurmd", "-D", "-N", node]]
    daemons = []
    try:
        for command in starts:
            with open(folder / f"{command[0]}.out", "w") as out:
                daemons.append(subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT))
            time.sleep(1)
            if daemons[-1].poll() is not None:
                pytest.skip(f"{command[0]} did not start: {tail(folder / f'{command[0]}.out', 5)}"
                            f"{tail(folder / f'{command[0]}.log', 5)}")
        deadline = time.time() + 60
        while subprocess.run(["sinfo", "-h", "-o", "%T"], env=env, capture_output=True, text=True).stdout.strip() \
                != "idle":
            if time.time() > deadline:
                pytest.skip(f"the SLURM node did not come up: {tail(folder / 'slurmd.log', 10)}")
            time.sleep(1)
        yield env
    finally:
        subprocess.run(["scancel", f"--user={pwd.getpwuid(os.geteuid()).pw_name}"], env=env, capture_output=True)
        deadline = time.time() + 30  # let slurmd end the cancelled jobs before it stops itself
        while time.time() < deadline and subprocess.run(["squeue", "-h"], env=env, capture_output=True,
                                                        text=True).stdout.strip():
            time.sleep(1)
        for daemon in reversed(daemons):
            daemon.terminate()
            try:
                daemon.wait(timeout=15)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait()


def job_states(job_id: str, env: dict[str, str]) -> dict[str, tuple[str, str]]:
    """``{"12_0": ("COMPLETED", "None"), ...}`` for an array (one entry per task) or ``{"13": ...}`` for a job."""
    result = subprocess.run(["scontrol", "-o", "show", "job", job_id], env=env, capture_output=True, text=True,
                            check=True)
    states = {}
    for line in result.stdout.splitlines():
        fields = dict(re.findall(r"(\w+)=(\S*)", line))
        name = f"{fields['ArrayJobId']}_{fields['ArrayTaskId']}" if "ArrayTaskId" in fields else fields["JobId"]
        states[name] = (fields["JobState"], fields["Reason"])
    return states


def wait_for_jobs(job_ids: list[str], env: dict[str, str], timeout: float = 600) -> dict[str, tuple[str, str]]:
    deadline = time.time() + timeout
    while True:
        states = {}
        for job_id in job_ids:
            states.update(job_states(job_id, env))
        if all(state in ENDED for state, _ in states.values()):
            return states
        assert time.time() < deadline, f"jobs still running after {timeout} s: {states}"
        time.sleep(2)


def wait_for(condition, what: str, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while not condition():
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def epochs_logged(fold_folder: Path) -> list[list[int]]:
    """The epochs each training log of the fold started, oldest log first (one log per nnUNetv2_train run)."""
    return [[int(e) for e in re.findall(r": Epoch (\d+)\s*$", log.read_text(), re.MULTILINE)]
            for log in sorted(fold_folder.glob("training_log_*.txt"))]


def submit(env: dict[str, str], logs: Path) -> tuple[list[str], str | None, str]:
    """Runs the submit command; its output lines, the array's job id (None if nothing to train), the summary's."""
    command = [sys.executable, str(REPO / "scripts" / "slurm_submit.py"), str(DATASET_ID), "-tr", TRAINER,
               "-f", "0", "1", "--device", "cpu", "--cpus-per-task", "1", "--time", "20", "--logs", str(logs)]
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    submitted = re.search(r"array job (\d+) \(\d+ tasks\), then summary job (\d+)", result.stdout)
    assert submitted, result.stdout
    return result.stdout.splitlines(), submitted.group(1), submitted.group(2)


@pytest.fixture(scope="module")
def cluster_run(slurm, tmp_path_factory, demo_preprocessed):
    started = time.time()
    work = tmp_path_factory.mktemp("nnunet_slurm")
    env = nnunet_environment(work, {**slurm, "nnUNet_extTrainer": str(Path(__file__).parent / "ext_trainers"),
                                    "nnUNet_n_proc_DA": "1", **FEW_WORKERS, "nnUNet_compile": "false",
                                    "SEGRESMAMBA_TEST_EPOCHS": "2"})
    copy_demo_preprocessed(demo_preprocessed, work)
    results = work / "nnUNet_results" / DATASET_NAME / f"{TRAINER}__nnUNetPlans__3d_fullres"
    logs = work / "slurm_logs"

    # First submission: cancel fold 1 once its second epoch began (its epoch-0 checkpoint is then written).
    first_output, first_array, first_summary = submit(env, logs)
    wait_for(lambda: [0, 1] in [e[:2] for e in epochs_logged(results / "fold_1")], "fold 1 to start epoch 1")
    subprocess.run(["scancel", f"{first_array}_1"], env=env, check=True)
    first_states = wait_for_jobs([first_array, first_summary], env)
    after_cancel = {"fold_1": sorted(p.name for p in (results / "fold_1").glob("checkpoint_*.pth")),
                    "inference_information": (results.parent / "inference_information.json").exists()}
    fold0_checkpoint = results / "fold_0" / "checkpoint_final.pth"
    fold0_mtime = fold0_checkpoint.stat().st_mtime if fold0_checkpoint.exists() else None

    # The same command again: fold 0 is skipped, fold 1 resumes; then the summary job runs.
    second_output, second_array, second_summary = submit(env, logs)
    second_states = wait_for_jobs([second_array, second_summary], env)
    inference = results.parent / "inference_information.json"
    summary_outputs = {"inference_information": inference.read_text() if inference.exists() else None,
                       "comparison": sorted(p.name for p in (logs / "comparison" / "3d_fullres").glob("*"))}

    # train_folds.py on the same tree: nothing left to train, it only runs find_best_configuration.
    train_folds = subprocess.run([sys.executable, str(REPO / "scripts" / "train_folds.py"), str(DATASET_ID), TRAINER,
                                  "--folds", "0", "1", "--cpu-jobs", "2", "--logs", str(work / "fold_logs")],
                                 env=env, capture_output=True, text=True)
    return dict(results=results, logs=logs, first_output=first_output, first_array=first_array,
                first_summary=first_summary, first_states=first_states, after_cancel=after_cancel,
                fold0_mtime=fold0_mtime, second_output=second_output, second_array=second_array,
                second_summary=second_summary, second_states=second_states, summary_outputs=summary_outputs,
                train_folds=train_folds,
                seconds=time.time() - started)


def job_log(run: dict, name: str) -> str:
    return f"\n--- {name} ---\n" + tail(run["logs"] / name)


def test_cancelled_task_stops_the_summary_job(cluster_run):
    run = cluster_run
    array, summary = run["first_array"], run["first_summary"]
    assert f"new: {TRAINER} 3d_fullres fold 0" in run["first_output"]
    assert f"new: {TRAINER} 3d_fullres fold 1" in run["first_output"]
    assert run["first_states"][f"{array}_0"] == ("COMPLETED", "None"), job_log(run, f"nnunet_train_{array}_0.out")
    assert run["first_states"][f"{array}_1"][0] == "CANCELLED"
    assert run["first_states"][summary] == ("CANCELLED", "DependencyNeverSatisfied")
    # Cancelled mid-run: a checkpoint to resume from (epoch 0's best), no final one, no summary results.
    assert "checkpoint_final.pth" not in run["after_cancel"]["fold_1"], "the cancel came after the training ended"
    assert run["after_cancel"]["fold_1"], "fold 1 was cancelled before it wrote a checkpoint"
    assert not run["after_cancel"]["inference_information"]


def test_resubmission_skips_the_finished_fold_and_resumes_the_cancelled_one(cluster_run):
    run = cluster_run
    array = run["second_array"]
    assert f"finished, skipped: {TRAINER} 3d_fullres fold 0" in run["second_output"]
    assert f"resumes with --c: {TRAINER} 3d_fullres fold 1" in run["second_output"]
    task_log = job_log(run, f"nnunet_train_{array}_0.out")
    assert run["second_states"] == {f"{array}_0": ("COMPLETED", "None"),
                                    run["second_summary"]: ("COMPLETED", "None")}, task_log
    command = next(line for line in (run["logs"] / f"nnunet_train_{array}_0.out").read_text().splitlines()
                   if "nnUNetv2_train" in line)
    assert " 3d_fullres 1 -tr " in command and command.endswith(" --c"), task_log
    # fold 0 untouched; fold 1's second run started at epoch 1, where the cancelled run left off.
    assert (run["results"] / "fold_0" / "checkpoint_final.pth").stat().st_mtime == run["fold0_mtime"]
    assert epochs_logged(run["results"] / "fold_0") == [[0, 1]]
    assert epochs_logged(run["results"] / "fold_1")[-1] == [1]
    for fold in (0, 1):
        checkpoint = torch.load(run["results"] / f"fold_{fold}" / "checkpoint_final.pth", weights_only=False)
        assert checkpoint["current_epoch"] == 2
        assert (run["results"] / f"fold_{fold}" / "validation" / "summary.json").exists()


def test_summary_job_finds_the_best_configuration_and_compares(cluster_run):
    run = cluster_run
    outputs = run["summary_outputs"]
    summary_log = job_log(run, f"nnunet_summary_{run['second_summary']}.out")
    assert outputs["inference_information"] is not None, summary_log
    assert f'"trainer": "{TRAINER}"' in outputs["inference_information"]
    assert {"comparison.md", "comparison.csv", "comparison.json"} <= set(outputs["comparison"]), summary_log
    print(f"SLURM scenario took {run['seconds']:.0f} s")


def test_train_folds_skips_what_the_cluster_finished(cluster_run):
    result = cluster_run["train_folds"]
    assert result.returncode == 0, result.stdout + result.stderr
    assert "fold 0: finished already, skipped" in result.stdout
    assert "fold 1: finished already, skipped" in result.stdout
    assert "folds [] on CPU job 0, CPU job 1" in result.stdout
