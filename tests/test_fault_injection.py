"""Fault injection on nnU-Net's own command-line tools, on the CPU: nnUNetv2_train with the CI's tiny trainer on
the bundled Hippocampus cases killed at seeded random moments and resumed with --c; damaged and foreign
checkpoints; a NaN loss; a full disk while a checkpoint is written; an interrupted nnUNetv2_predict continued
with --continue_prediction. Every fault must end in a recovery or in an error that names the file and says
what to do, lose no epoch beyond the last checkpoint interval (every epoch for this trainer) and leave no
damaged file behind. Each fault adds a row to the table printed at the end of the run (docs/reliability.md
keeps the latest; SEGRESMAMBA_FAULT_TABLE=FILE also writes it there).

The kill moments: SEGRESMAMBA_FAULT_SEED (default 19) draws 3 mid-step, 3 mid-validation and 3
mid-checkpoint-write moments over the epochs, then one in the final validation. The trainer stops at the
drawn moment and logs where it stands (a ``FAULT POINT`` line, tests/ext_trainers); the test then kills its
whole process group with SIGKILL, as a crash, an out-of-memory kill or a preemption would.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from conftest import FEW_WORKERS, copy_demo_preprocessed
from nnunetv2_segresmamba.demo.run_demo import DATASET_ID, DATASET_NAME
from nnunetv2_segresmamba.nnunet_cli import nnunet_command, nnunet_environment
from nnunetv2_segresmamba.training.resilience import UnusableCheckpointError

TRAINER = "nnUNetTrainerSegResMamba_CITiny"
RESULTS = f"{TRAINER}__nnUNetPlans__3d_fullres"
EXT_TRAINERS = Path(__file__).parent / "ext_trainers"
SEED = int(os.environ.get("SEGRESMAMBA_FAULT_SEED", "19"))
EPOCHS, ITERATIONS = 5, 2
VALIDATION_CASES = 4  # fold 0's share of the 20 bundled cases; one sliding window each
PREDICTED_CASES = 4
PAUSE_ENV, RELEASE_ENV, NAN_ENV, MARKER = ("SEGRESMAMBA_TEST_PAUSE_AT", "SEGRESMAMBA_TEST_RELEASE",
                                           "SEGRESMAMBA_TEST_NAN_AT", "FAULT POINT")
RUN_TIMEOUT_S = 240
pytestmark = [pytest.mark.slow, pytest.mark.faults]

PHASE_WORDS = {"step": "mid-step", "validation": "mid-validation", "checkpoint": "mid-checkpoint-write",
               "final_validation": "mid-final-validation"}


@dataclass(frozen=True)
class Moment:
    phase: str
    epoch: int
    index: int

    def spec(self) -> str:
        return f"{self.phase}@{self.epoch}.{self.index}"

    def epochs_done(self) -> int:
        """Epochs whose training was complete when the kill landed."""
        if self.phase == "final_validation":
            return EPOCHS
        return self.epoch + (self.phase == "checkpoint")  # its epoch's training done, its checkpoint not written


def draw_moments(seed: int) -> list[Moment]:
    """3 kills of each training phase at non-decreasing random epochs (each resumed run reaches the next one:
    --c restarts the epoch a kill landed in), the last of them in epoch 1 or later (the fold it leaves has a
    checkpoint_latest.pth for the checkpoint tests), then one in the final validation."""
    rng = random.Random(seed)
    phases = ["step", "validation", "checkpoint"] * 3
    rng.shuffle(phases)
    epochs = sorted(rng.randrange(EPOCHS) for _ in phases)
    epochs[-1] = max(epochs[-1], 1)
    moments: list[Moment] = []
    for phase, epoch in zip(phases, epochs):
        moment = Moment(phase, epoch, rng.randrange(ITERATIONS) if phase == "step" else 0)
        while moment in moments:  # the same moment twice would test nothing new
            moment = Moment("step", moment.epoch, (moment.index + 1) % ITERATIONS)
        moments.append(moment)
    return moments + [Moment("final_validation", 0, rng.randrange(VALIDATION_CASES))]


# --- running and killing the tools ---------------------------------------------------------------------------

def start(command: list[str], env: dict, console: Path) -> subprocess.Popen:
    with open(console, "w") as handle:
        return subprocess.Popen(command, env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)


def wait_for_fault_point(process: subprocess.Popen, console: Path, spec: str) -> str:
    """What the process logged at the fault point ``spec`` (where it now waits), without the marker."""
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while time.monotonic() < deadline:
        found = re.search(rf"{MARKER} ({re.escape(spec)}:.*)$", console.read_text(errors="replace"), re.M)
        if found:
            return found.group(1)
        assert process.poll() is None, f"ended (exit {process.returncode}) before {spec}:\n" + tail(console)
        time.sleep(0.05)
    raise AssertionError(f"{spec} not reached in {RUN_TIMEOUT_S} s:\n" + tail(console))


def kill(process: subprocess.Popen) -> None:
    """SIGKILL to the process and every worker it started (data loading, export pools)."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def run_until(command: list[str], env: dict, console: Path, spec: str) -> str:
    """Start, wait for the fault point ``spec``, kill; what the process logged there."""
    process = start(command, {**env, PAUSE_ENV: spec}, console)
    try:
        return wait_for_fault_point(process, console, spec)
    finally:
        kill(process)


def run_to_end(command: list[str], env: dict, console: Path) -> subprocess.CompletedProcess:
    with open(console, "w") as handle:
        return subprocess.run(command, env=env, stdout=handle, stderr=subprocess.STDOUT, timeout=RUN_TIMEOUT_S)


def tail(console: Path, lines: int = 40) -> str:
    return "\n".join(console.read_text(errors="replace").splitlines()[-lines:])


def train_command(fold: int) -> list[str]:
    return [nnunet_command("nnUNetv2_train"), str(DATASET_ID), "3d_fullres", str(fold), "-tr", TRAINER,
            "-device", "cpu", "--npz", "--c"]


def resumed_at(console_text: str) -> tuple[int, str | None]:
    """(epoch, checkpoint) a `--c` run started from, as its log says."""
    found = re.search(r"Resuming training at epoch (\d+) \(of \d+\) from (\S+?)\.\s*$", console_text, re.M)
    if found:
        return int(found.group(1)), Path(found.group(2)).name
    assert "--c found no checkpoint" in console_text, console_text[-3000:]
    return 0, None


def passed_over(log: str, name: str) -> str:
    """Why the log says --c passed over checkpoint ``name``, or a note that it says nothing."""
    found = re.search(rf"WARNING: {re.escape(name)} cannot be resumed from: (.*?)\. Taking", log)
    return found.group(1) if found else "(nothing logged)"


# --- what a run left behind ----------------------------------------------------------------------------------

def unreadable(path: Path) -> bool:
    try:
        if path.name.endswith(".pth"):
            torch.load(path, map_location="cpu", weights_only=False)
        elif path.name.endswith(".nii.gz"):
            sitk.GetArrayFromImage(sitk.ReadImage(str(path)))
        elif path.suffix == ".npz":
            np.load(path)["probabilities"].sum()
        elif path.suffix == ".json":
            json.loads(path.read_text())
    except Exception:
        return True
    return False


def damaged_files(folder: Path) -> list[str]:
    """Files in a fold folder that nnU-Net or a user reads and that do not load, and partial checkpoint
    writes (a checkpoint set aside as NAME.unusable is read by nothing)."""
    files = [*folder.glob("checkpoint_*.pth"), *folder.glob("*.partial"), *folder.glob("validation/*"),
             *folder.glob("*.json")]
    return sorted(p.name for p in files if p.name.endswith(".partial") or unreadable(p))


def checkpoint_epochs(path: Path) -> int:
    return torch.load(path, map_location="cpu", weights_only=False)["current_epoch"]


def none_or(names: list[str]) -> str:
    return ", ".join(names) if names else "none"


FAULT_COLUMNS = ("fault", "what the log shows", "outcome", "epochs lost", "files left damaged")


def add_row(table: list, fault: str, shows: str, outcome: str, lost, damaged: str) -> None:
    table.append(dict(zip(FAULT_COLUMNS, (fault, shows, outcome, lost, damaged))))


# --- the dataset, planned and preprocessed once -----------------------------------------------------------------

@pytest.fixture(scope="module")
def dataset(tmp_path_factory, demo_preprocessed):
    work = tmp_path_factory.mktemp("faults")
    env = nnunet_environment(work, {
        "nnUNet_extTrainer": str(EXT_TRAINERS), "nnUNet_compile": "false", "PYTHONUNBUFFERED": "1",
        # data loading in the training process and one worker per pool: less to start for each of the many runs
        "nnUNet_n_proc_DA": "0", **FEW_WORKERS,
        "SEGRESMAMBA_TEST_EPOCHS": str(EPOCHS), "SEGRESMAMBA_TEST_ITERATIONS": str(ITERATIONS)})
    copy_demo_preprocessed(demo_preprocessed, work)
    return work, env


def fold_folder(root: Path, fold: int) -> Path:
    return root / "nnUNet_results" / DATASET_NAME / RESULTS / f"fold_{fold}"


def use_in_this_process(monkeypatch, env: dict, results: Path) -> None:
    """nnU-Net's folders and trainer lookup for nnU-Net's own code called from this process."""
    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_extTrainer", "nnUNet_n_proc_DA",
                 "SEGRESMAMBA_TEST_EPOCHS", "SEGRESMAMBA_TEST_ITERATIONS"):
        monkeypatch.setenv(name, env[name])
    monkeypatch.setenv("nnUNet_results", str(results))


def trainer_from_args(fold: int, continue_training: bool, trainer: str = TRAINER):
    """The trainer `nnUNetv2_train 990 3d_fullres FOLD -tr TRAINER -device cpu [--c]` builds."""
    from nnunetv2.run.run_training import get_trainer_from_args
    return get_trainer_from_args(str(DATASET_ID), "3d_fullres", fold, trainer, "nnUNetPlans", continue_training,
                                 device=torch.device("cpu"))


def trainer_log(fold: Path) -> str:
    return "\n".join(log.read_text() for log in sorted(fold.glob("training_log_*.txt")))


# --- 10 kills of a real training, each resumed with --c -------------------------------------------------------

@pytest.fixture(scope="module")
def kill_chain(dataset):
    work, env = dataset
    fold = fold_folder(work, 0)
    records, consoles = [], []
    for number, moment in enumerate(draw_moments(SEED)):
        console = work / f"chain_{number:02d}.out"
        landed = run_until(train_command(0), env, console, moment.spec())
        if moment.phase != "final_validation":  # the fold as the last kill in training left it
            shutil.rmtree(work / "snapshot", ignore_errors=True)
            shutil.copytree(fold, work / "snapshot")
        # what --c reads must load; a final validation's half-written case is predicted again on the rerun
        damaged = [p.name for p in fold.glob("checkpoint_*.pth") if unreadable(p)]
        records.append(dict(moment=moment, landed=landed, damaged_at_kill=damaged,
                            partial_at_kill=sorted(p.name for p in fold.glob("*.partial"))))
        consoles.append(console)
    final = work / "chain_final.out"
    finished = run_to_end(train_command(0), env, final)
    consoles.append(final)
    for record, resumed_console in zip(records, consoles[1:]):
        text = resumed_console.read_text(errors="replace")
        record["resumed_epoch"], record["resumed_from"] = resumed_at(text)
        record["partials_removed"] = re.findall(r"Removed (\S+\.partial)", text)
        record["lost"] = record["moment"].epochs_done() - record["resumed_epoch"]
    return dict(records=records, fold=fold, finished=finished, final=final, logs=trainer_log(fold), work=work)


def test_a_training_killed_ten_times_resumes_each_time_from_its_last_checkpoint(kill_chain, fault_table):
    records, fold = kill_chain["records"], kill_chain["fold"]
    for number, record in enumerate(records, 1):
        removed = (f"; {none_or(record['partials_removed'])} removed at the restart"
                   if record["partials_removed"] else "")
        left = [name for name in record["partial_at_kill"] if name not in record["partials_removed"]]
        add_row(fault_table, f"kill {number} of 10 (seed {SEED}): SIGKILL {PHASE_WORDS[record['moment'].phase]}",
                record["landed"], f"recovered: --c resumed at epoch {record['resumed_epoch']} from "
                                  f"{record['resumed_from'] or 'scratch (no checkpoint yet)'}{removed}",
                record["lost"], none_or(record["damaged_at_kill"] + left))
    end_state = damaged_files(fold) + [p.name for p in fold.glob("*.unusable")]
    final_log = "; ".join(re.findall(r"Training done\.|Validation complete", kill_chain["final"].read_text()))
    add_row(fault_table, "after the 10 kills: the same command to the end", final_log or "(nothing logged)",
            f"finished: checkpoint_final.pth after {EPOCHS} epochs, {VALIDATION_CASES} validation cases" if
            kill_chain["finished"].returncode == 0 else f"failed (exit {kill_chain['finished'].returncode})",
            f"{sum(r['lost'] for r in records)} in all", none_or(end_state))
    assert kill_chain["finished"].returncode == 0, tail(kill_chain["final"])
    assert len(records) == 10 and {r["moment"].phase for r in records} == set(PHASE_WORDS)
    for record in records:
        moment = record["moment"]
        assert f"{MARKER} {moment.spec()}: " in kill_chain["logs"], moment  # the training log shows the phase
        assert record["damaged_at_kill"] == [], record
        # killed mid-step or mid-validation: only the unfinished epoch is redone; mid-checkpoint-write: the
        # epoch whose checkpoint it was (one checkpoint interval)
        assert record["lost"] == (1 if moment.phase == "checkpoint" else 0), record
        assert record["partials_removed"] == record["partial_at_kill"], record
        if moment.phase == "checkpoint":
            assert record["partial_at_kill"], "the kill landed while a checkpoint was half written"
    summary = json.loads((fold / "validation" / "summary.json").read_text())
    assert len(summary["metric_per_case"]) == VALIDATION_CASES
    assert checkpoint_epochs(fold / "checkpoint_final.pth") == EPOCHS and end_state == []


# --- damaged and foreign checkpoints -----------------------------------------------------------------------------

@pytest.fixture
def snapshot(kill_chain, dataset, tmp_path, monkeypatch):
    """A results folder holding fold 0 as the last kill in training left it (checkpoint_latest.pth and an older
    or equal checkpoint_best.pth), with this process's nnU-Net folders pointing at it."""
    work, env = dataset
    fold = fold_folder(tmp_path, 0)
    shutil.copytree(fold_folder(work, 0).parent, fold.parent, ignore=shutil.ignore_patterns("fold_*"))
    shutil.copytree(work / "snapshot", fold)
    use_in_this_process(monkeypatch, env, tmp_path / "nnUNet_results")
    return fold


def resume_in_process(fold: Path):
    """What `nnUNetv2_train ... --c` does before its first epoch: nnU-Net's trainer lookup and checkpoint choice,
    then the trainer's own load."""
    from nnunetv2.run.run_training import maybe_load_checkpoint
    trainer = trainer_from_args(0, continue_training=True)
    maybe_load_checkpoint(trainer, True, False)
    return trainer


def foreign_checkpoint(path: Path, trainer: str, extra_label: bool) -> None:
    """A checkpoint that another training wrote (in a results folder of its own), copied to ``path``."""
    results = os.environ["nnUNet_results"]
    os.environ["nnUNet_results"] = str(Path(results).parent / "other_training")
    try:
        other = trainer_from_args(0, continue_training=False, trainer=trainer)
    finally:
        os.environ["nnUNet_results"] = results
    if extra_label:  # a dataset with one label more
        other.dataset_json["labels"]["Extra"] = len(other.dataset_json["labels"])
        other.label_manager = other.plans_manager.get_label_manager(other.dataset_json)
    other.initialize()
    other.save_checkpoint(str(path))


def truncate(path: Path) -> str:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return f"{path.name} truncated to half its size"


def empty(path: Path) -> str:
    path.write_bytes(b"")
    return f"{path.name} of 0 bytes (a disk that filled up)"


def zero_fill(path: Path) -> str:
    path.write_bytes(bytes(path.stat().st_size))
    return f"{path.name} overwritten with zeros, same size"


def from_plain_unet(path: Path) -> str:
    foreign_checkpoint(path, "nnUNetTrainer", extra_label=False)
    return f"{path.name} from nnUNetTrainer (PlainConvUNet), same plans"


def from_four_classes(path: Path) -> str:
    foreign_checkpoint(path, TRAINER, extra_label=True)
    return f"{path.name} from the same trainer for 4 classes (this dataset: 3)"


DAMAGES = {"empty": empty, "zero-filled": zero_fill, "another trainer": from_plain_unet,
           "another class count": from_four_classes}
REASONS = {"truncated": "it cannot be read, it is truncated or damaged", "empty": "it is empty (0 bytes)",
           "zero-filled": "it cannot be read, it is truncated or damaged",
           "another trainer": "its weights belong to another network",
           "another class count": "it was trained for 4 output classes and this dataset has 3"}


def test_a_truncated_latest_checkpoint_trains_on_from_the_best_one(snapshot, dataset, fault_table):
    """The whole command: `nnUNetv2_train ... --c` with a truncated checkpoint_latest.pth resumes from
    checkpoint_best.pth and trains (stopped at its first step: the kills above show the rest)."""
    fold, (work, env) = snapshot, dataset
    latest_epochs, best_epochs = map(checkpoint_epochs, (fold / "checkpoint_latest.pth", fold / "checkpoint_best.pth"))
    what = truncate(fold / "checkpoint_latest.pth")
    console = work / "truncated_resume.out"
    run_until(train_command(0), {**env, "nnUNet_results": os.environ["nnUNet_results"]}, console,
              f"step@{best_epochs}.0")
    text = console.read_text(errors="replace")
    resumed, reason = resumed_at(text), passed_over(text, "checkpoint_latest.pth")
    add_row(fault_table, f"`nnUNetv2_train --c` with {what}", reason,
            f"recovered: resumed at epoch {resumed[0]} from {resumed[1]}, latest set aside (.unusable), trained on",
            latest_epochs - best_epochs, none_or(damaged_files(fold)))
    assert resumed == (best_epochs, "checkpoint_best.pth") and REASONS["truncated"] in reason
    assert (fold / "checkpoint_latest.pth.unusable").exists() and damaged_files(fold) == []


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_continue_passes_over_a_damaged_or_foreign_latest_checkpoint(snapshot, damage, fault_table):
    fold = snapshot
    latest_epochs, best_epochs = map(checkpoint_epochs, (fold / "checkpoint_latest.pth", fold / "checkpoint_best.pth"))
    what = DAMAGES[damage](fold / "checkpoint_latest.pth")
    trainer = resume_in_process(fold)
    reason = passed_over(trainer_log(fold), "checkpoint_latest.pth")
    add_row(fault_table, f"--c with {what}", reason,
            f"recovered: resumed at epoch {trainer.current_epoch} from checkpoint_best.pth, latest set aside",
            latest_epochs - trainer.current_epoch, none_or(damaged_files(fold)))
    assert REASONS[damage] in reason
    assert trainer.current_epoch == best_epochs and trainer._resumed_from.endswith("checkpoint_best.pth")
    assert (fold / "checkpoint_latest.pth.unusable").exists() and damaged_files(fold) == []


def test_a_damaged_best_checkpoint_is_set_aside_while_training_resumes_from_latest(snapshot, fault_table):
    fold = snapshot
    latest_epochs = checkpoint_epochs(fold / "checkpoint_latest.pth")
    what = truncate(fold / "checkpoint_best.pth")
    trainer = resume_in_process(fold)
    reason = passed_over(trainer_log(fold), "checkpoint_best.pth")
    add_row(fault_table, f"--c with {what}", reason,
            f"recovered: resumed at epoch {trainer.current_epoch} from checkpoint_latest.pth; best set aside, so "
            f"that `nnUNetv2_predict -chk checkpoint_best.pth` does not read it",
            latest_epochs - trainer.current_epoch, none_or(damaged_files(fold)))
    assert REASONS["truncated"] in reason and trainer.current_epoch == latest_epochs
    assert (fold / "checkpoint_best.pth.unusable").exists() and damaged_files(fold) == []


def test_continue_with_only_damaged_checkpoints_stops_naming_them_and_changes_nothing(snapshot, fault_table):
    fold = snapshot
    (fold / "checkpoint_best.pth").unlink()
    what = truncate(fold / "checkpoint_latest.pth")
    before = {p.name: p.read_bytes() for p in fold.glob("checkpoint*")}
    with pytest.raises(UnusableCheckpointError) as error:
        resume_in_process(fold)
    message = str(error.value)
    add_row(fault_table, f"--c with {what}, no other checkpoint", message.split(":", 1)[0],
            "clear error: names the file and its fault, says to move it away and train without --c (or use "
            "-pretrained_weights); nothing changed", "all: nothing loads",
            "none added (the damaged file is left as it was)")
    assert f"{fold / 'checkpoint_latest.pth'}: {REASONS['truncated']}" in message and "without --c" in message
    assert {p.name: p.read_bytes() for p in fold.glob("checkpoint*")} == before


# --- a NaN loss ----------------------------------------------------------------------------------------------------

def test_a_nan_loss_skips_its_step_and_training_goes_on(dataset, tmp_path, monkeypatch, fault_table):
    """nnU-Net's training loop (run_training, in this process) with the loss of epoch 0's first step NaN."""
    use_in_this_process(monkeypatch, dataset[1], tmp_path)
    monkeypatch.setenv("SEGRESMAMBA_TEST_EPOCHS", "1")
    monkeypatch.setenv(NAN_ENV, "0.0")
    trainer = trainer_from_args(2, continue_training=False)
    trainer.run_training()
    fold = Path(trainer.output_folder)
    log = trainer_log(fold)
    loss = trainer.logger.local_logger.my_fantastic_logging["train_losses"][0]
    add_row(fault_table, "NaN injected into the loss (epoch 0, step 0 of 2)",
            "; ".join(re.findall(r"nan@0\.0: loss replaced by NaN|training loss nan in epoch 0; step skipped", log)),
            f"recovered: step skipped, step 1 trained, epoch train_loss {loss:.3f} (step 1's)", 0,
            none_or(damaged_files(fold)))
    assert "WARNING: training loss nan in epoch 0; step skipped" in log
    assert "1 of 2 training steps in epoch 0 had a non-finite loss" in log and np.isfinite(loss)
    weights = torch.load(fold / "checkpoint_final.pth", map_location="cpu", weights_only=False)["network_weights"]
    assert all(torch.isfinite(w).all() for w in weights.values() if w.is_floating_point())
    assert damaged_files(fold) == []


# --- a full disk while a checkpoint is written ---------------------------------------------------------------------

@pytest.fixture
def small_disk(dataset):
    """Fold 1's folder on a 64 MiB tmpfs (a size-limited mount needs root)."""
    folder = fold_folder(dataset[0], 1)
    folder.mkdir(parents=True)
    if os.geteuid() != 0:
        pytest.skip("a full disk is simulated with a size-limited tmpfs mount, which needs root")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(folder)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a size-limited tmpfs here: {mounted.stderr.strip()}")
    yield folder
    subprocess.run(["umount", "-l", str(folder)], check=False)


def fill(folder: Path) -> Path:
    filler = folder / "filler"
    with open(filler, "wb") as handle:
        try:
            while True:
                handle.write(bytes(1 << 20))
                handle.flush()
        except OSError:  # ENOSPC: full
            pass
    return filler


def test_a_full_disk_during_a_checkpoint_save_stops_clearly_and_resumes(dataset, small_disk, fault_table):
    (work, env), fold = dataset, small_disk
    env = {**env, "SEGRESMAMBA_TEST_EPOCHS": "2"}
    release, console = work / "release_disk", work / "disk_full.out"
    process = start(train_command(1), {**env, PAUSE_ENV: "before_checkpoint@1.0", RELEASE_ENV: str(release)},
                    console)
    try:
        landed = wait_for_fault_point(process, console, "before_checkpoint@1.0")
        filler = fill(fold)
        release.touch()  # the trainer goes on and writes its checkpoint onto the full disk
        process.wait(timeout=RUN_TIMEOUT_S)
    finally:
        kill(process)
    failed = console.read_text(errors="replace")
    intact = [p.name for p in fold.glob("checkpoint_*.pth") if not unreadable(p)]
    filler.unlink()
    resumed_console = work / "disk_full_resume.out"  # space freed: the same command, stopped at its first step
    run_until(train_command(1), env, resumed_console, "step@1.0")
    resumed = resumed_at(resumed_console.read_text(errors="replace"))
    error = re.search(r"CheckpointWriteError: Could not write \S*?(checkpoint_\w+\.pth): the disk holding \S+ is "
                      r"full \((.*?) free;.*?resume with `(.*?)`", failed)
    add_row(fault_table, "disk full (a 64 MiB tmpfs, filled) at the checkpoint save after epoch 1", landed,
            f"clear error: could not write {error.group(1)}, the disk is full ({error.group(2)} free), the --c "
            f"command; space freed, --c resumed at epoch {resumed[0]} from {resumed[1]}" if error else
            "(no clear error)", 2 - resumed[0], none_or(damaged_files(fold)))
    assert process.returncode not in (0, None) and error, failed[-3000:]
    assert error.group(3).endswith(" -device cpu --c") and "checkpoint_latest.pth" in intact
    assert resumed == (1, "checkpoint_latest.pth") and damaged_files(fold) == []


# --- an interrupted prediction, continued --------------------------------------------------------------------------

def test_an_interrupted_prediction_continues_with_the_missing_cases(kill_chain, dataset, fault_table):
    work, env = dataset
    assert kill_chain["finished"].returncode == 0, "needs the trained fold 0"
    images, output = work / "predict_in", work / "predict_out"
    images.mkdir()
    for image in sorted((work / "nnUNet_raw" / DATASET_NAME / "imagesTr").glob("*.nii.gz"))[:PREDICTED_CASES]:
        shutil.copy(image, images)
    # -npp 0 -nps 0: nnU-Net predicts and writes one case after the other, so cases 0 .. at-1 are written when
    # the kill lands in the forward pass of case `at` (one sliding window per case here)
    command = [nnunet_command("nnUNetv2_predict"), "-i", str(images), "-o", str(output), "-d", str(DATASET_ID),
               "-c", "3d_fullres", "-tr", TRAINER, "-f", "0", "-device", "cpu", "-npp", "0", "-nps", "0"]
    at = random.Random(SEED).randrange(1, PREDICTED_CASES)
    landed = run_until(command, env, work / "predict.out", f"predict@0.{at}")
    written = sorted(p.name for p in output.glob("*.nii.gz"))
    damaged_at_kill = [name for name in written if unreadable(output / name)]
    continued = work / "predict_continue.out"
    result = run_to_end(command + ["--continue_prediction"], env, continued)
    redone = re.search(r"That's (\d+) cases", continued.read_text(errors="replace"))
    predicted = sorted(p.name for p in output.glob("*.nii.gz"))
    add_row(fault_table, f"SIGKILL during nnUNetv2_predict of {PREDICTED_CASES} cases",
            f"{landed} ({len(written)} cases written)",
            f"recovered: --continue_prediction predicted the missing {redone.group(1)} of {PREDICTED_CASES} cases"
            if redone else
            "(not continued)", "n/a (no case predicted twice)",
            none_or(damaged_at_kill + [name for name in predicted if unreadable(output / name)]))
    assert result.returncode == 0, tail(continued)
    assert len(written) == at and damaged_at_kill == []
    assert redone and int(redone.group(1)) == PREDICTED_CASES - at
    assert len(predicted) == PREDICTED_CASES and not any(unreadable(output / name) for name in predicted)
