"""Training that survives interruptions and bad steps, as mixins for any nnUNetTrainer (nnU-Net's default one too):
``class X(ResilientTrainingMixin, nnUNetTrainer)``.

``NonFiniteLossGuardMixin``: a training step whose loss is NaN or inf is skipped (no backward, no update) instead
of corrupting the weights; ``nonfinite_loss_patience`` in a row stop training with a resumable checkpoint of the
last good weights and advice. Under DDP all ranks skip together. The epoch's train loss averages the steps
that were not skipped.

``ResumableCheckpointsMixin``: checkpoint_latest.pth (what --c resumes from) is rewritten after every epoch of a
short training and by wall time in a long one (nnU-Net alone writes it every 50 epochs), and:

Writing: every checkpoint goes to ``NAME.partial`` and is renamed over ``NAME`` only once complete, so a run
killed while writing, or a disk that fills up, leaves the previous ``NAME`` intact. A failed write removes
its partial file and stops training with the free space and the command that resumes. Partial files that a
killed run left behind are removed when the next run starts.

Resuming: nnU-Net's ``--c`` takes checkpoint_final, else checkpoint_latest, else checkpoint_best, by
existence alone, and a damaged file then fails deep in torch.load without its name. Here each of them that
exists is opened and checked against this trainer (readable, an nnU-Net training checkpoint, weights that
fit the network and are finite, an optimizer state that fits the optimizer). The one with the most epochs
done among those that pass is loaded (ties: final, latest, best), the log says which and why the others
were passed over, and the faulty ones are moved aside (``NAME.unusable``) so that nothing reads them later.
When none passes, training stops before anything is changed, naming each file and what is wrong with it.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from os.path import basename, dirname, getsize, isfile, join
from time import time
from typing import Callable

import numpy as np
import torch
import torch.distributed as dist

from .nonfinite_loss import NonFiniteLossError, NonFiniteLossGuard
from .wrapped import unwrap

FINAL, LATEST, BEST = "checkpoint_final.pth", "checkpoint_latest.pth", "checkpoint_best.pth"
RESUMABLE = (FINAL, LATEST, BEST)  # nnU-Net's order of preference for --c
PARTIAL_SUFFIX = ".partial"
UNUSABLE_SUFFIX = ".unusable"
# What nnU-Net's load_checkpoint reads from a checkpoint.
REQUIRED_KEYS = ("network_weights", "optimizer_state", "current_epoch", "logging", "_best_ema", "init_args")
# A disk with less than this free is called full in the message about a failed write.
FULL_DISK_BYTES = 1 << 20


class UnusableCheckpointError(RuntimeError):
    """No checkpoint that was asked for (or, with --c, none in the fold folder) can be loaded."""


class CheckpointWriteError(RuntimeError):
    """A checkpoint could not be written (a full disk, a lost network mount, ...)."""


@dataclass(frozen=True)
class CheckedCheckpoint:
    path: str
    epochs_done: int | None  # None when it could not be read
    fault: str | None  # None: loadable by this trainer
    trainer_name: str | None = None


def _tensor_shapes(state: dict) -> dict[str, tuple[int, ...]]:
    return {key: tuple(value.shape) for key, value in state.items() if isinstance(value, torch.Tensor)}


def _other_class_count(mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]], num_classes: int) -> int | None:
    """The class count a checkpoint was trained for, where its tensors differ from this network's in the class
    axis only (the output layers; convolutions keep it first, transposed convolutions second), else None."""
    counts = set()
    for _, theirs, ours in mismatched:
        differing = [axis for axis, (a, b) in enumerate(zip(theirs, ours)) if a != b]
        if len(theirs) != len(ours) or len(differing) != 1 or ours[differing[0]] != num_classes:
            return None
        counts.add(theirs[differing[0]])
    return counts.pop() if len(counts) == 1 else None


def weights_fault(weights: dict, own: dict, num_classes: int) -> str | None:
    """Why ``weights`` (a checkpoint's network_weights) cannot be loaded strictly into a network whose
    state_dict is ``own``, or None."""
    # nnU-Net's load_checkpoint strips DataParallel's "module." prefix where the network has no such key.
    weights = {key[7:] if key.startswith("module.") and key not in own else key: value
               for key, value in weights.items()}
    theirs, ours = _tensor_shapes(weights), _tensor_shapes(own)
    missing = [key for key in ours if key not in theirs]
    unknown = [key for key in theirs if key not in ours]
    if missing or unknown:
        parts = []
        if missing:
            parts.append(f"{len(missing)} of this network's {len(ours)} tensors are not in it, e.g. {missing[0]}")
        if unknown:
            parts.append(f"{len(unknown)} of its tensors do not exist in this network, e.g. {unknown[0]}")
        return f"its weights belong to another network ({'; '.join(parts)})"
    mismatched = [(key, theirs[key], ours[key]) for key in ours if theirs[key] != ours[key]]
    if mismatched:
        classes = _other_class_count(mismatched, num_classes)
        if classes is not None:
            return (f"it was trained for {classes} output classes and this dataset has {num_classes} "
                    f"(a checkpoint of another dataset or label set; to start from its weights use "
                    f"-pretrained_weights instead of --c)")
        key, a, b = mismatched[0]
        return (f"{len(mismatched)} of its tensors have other shapes than this network's, e.g. {key}: {list(a)} in "
                f"the file, {list(b)} here (another network width or configuration)")
    if any(value.is_floating_point() and not bool(torch.isfinite(value).all())
           for value in weights.values() if isinstance(value, torch.Tensor)):
        return "its weights contain NaN or inf"
    return None


def optimizer_fault(state: dict, own: dict) -> str | None:
    """Why an optimizer state_dict cannot be loaded into the optimizer whose state_dict is ``own``, or None."""
    try:
        theirs = [len(group["params"]) for group in state["param_groups"]]
    except (KeyError, TypeError):
        return "its optimizer state is not an optimizer state_dict"
    ours = [len(group["params"]) for group in own["param_groups"]]
    if theirs != ours:
        return (f"its optimizer state has parameter groups of {theirs} tensors, this trainer's optimizer "
                f"{ours} (written with another optimizer recipe)")
    return None


def check_checkpoint(path: str, network: torch.nn.Module, optimizer: torch.optim.Optimizer,
                     num_classes: int) -> CheckedCheckpoint:
    """Open ``path`` and check that nnU-Net's load_checkpoint would load it into this network and optimizer."""
    if getsize(path) == 0:
        return CheckedCheckpoint(path, None, "it is empty (0 bytes): its write was cut off, e.g. by a full disk")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:  # pickle, zip and EOF errors alike: the file is not a whole checkpoint
        # its first sentence: what follows in torch's message is generic
        said = (str(error).strip().splitlines() or [""])[0].split(". ")[0][:200]
        return CheckedCheckpoint(path, None, f"it cannot be read, it is truncated or damaged "
                                             f"({type(error).__name__}: {said})")
    if not isinstance(checkpoint, dict) or any(key not in checkpoint for key in REQUIRED_KEYS):
        missing = [key for key in REQUIRED_KEYS if not isinstance(checkpoint, dict) or key not in checkpoint]
        return CheckedCheckpoint(path, None, f"it is not an nnU-Net training checkpoint (no {', '.join(missing)})")
    epochs, writer = int(checkpoint["current_epoch"]), checkpoint.get("trainer_name")
    fault = (weights_fault(checkpoint["network_weights"], unwrap(network).state_dict(), num_classes)
             or optimizer_fault(checkpoint["optimizer_state"], optimizer.state_dict()))
    if fault is not None and writer is not None:
        fault = f"{fault}; it was written by {writer}"
    return CheckedCheckpoint(path, epochs, fault, writer)


def newest_loadable(checked: list[CheckedCheckpoint]) -> CheckedCheckpoint | None:
    """The loadable checkpoint with the most epochs done; ties go to nnU-Net's order (final, latest, best)."""
    usable = [c for c in checked if c.fault is None]
    rank = {name: i for i, name in enumerate(RESUMABLE)}
    return min(usable, key=lambda c: (-c.epochs_done, rank.get(basename(c.path), len(rank))), default=None)


def _sync(path: str) -> None:
    """fsync a file, or a folder (its entries: a rename in it). Some file systems and platforms cannot sync a
    folder; the rename is then as durable as they make it."""
    try:
        descriptor = os.open(path, os.O_RDONLY)
    except OSError:
        if os.path.isdir(path):
            return
        raise
    try:
        os.fsync(descriptor)
    except OSError:
        if not os.path.isdir(path):
            raise
    finally:
        os.close(descriptor)


def free_bytes(folder: str) -> int | None:
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def save_latest_resuming_at(trainer, epoch: int) -> None:
    """Write the trainer's checkpoint_latest.pth so that --c starts with ``epoch`` (nnU-Net's save_checkpoint
    records current_epoch + 1)."""
    current = trainer.current_epoch
    trainer.current_epoch = epoch - 1
    try:
        trainer.save_checkpoint(join(trainer.output_folder, LATEST))
    finally:
        trainer.current_epoch = current


class ResumableCheckpointsMixin:
    """Put before nnUNetTrainer in the bases, beside EnergyLoggingMixin:
    ``class X(ResumableCheckpointsMixin, EnergyLoggingMixin, nnUNetTrainer)``. Sets ``_resumed_from`` to the
    checkpoint a run started from."""

    # checkpoint_latest.pth is rewritten after the first epoch that ends this many seconds after the last write.
    checkpoint_interval_s: float = 600.0
    # A training of at most this many epochs rewrites checkpoint_latest.pth after every epoch.
    checkpoint_every_epoch_up_to: int = 50

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        # nnU-Net's run_training adds this key for --c, and nnU-Net's __init__ removes it again.
        self._continue_requested = bool(plans.get("continue_training", False))
        self._resumed_from: str | None = None
        super().__init__(plans, configuration, fold, dataset_json, device)
        self._last_latest_checkpoint = time()

    # --- when checkpoint_latest.pth is written -------------------------------------------------------------

    def on_epoch_end(self) -> None:
        epoch = self.current_epoch
        super().on_epoch_end()  # nnU-Net's logging, its every-50-epochs latest checkpoint, the best one
        if (epoch + 1) % self.save_every == 0:
            self._last_latest_checkpoint = time()  # nnU-Net has just written it
        elif self._latest_checkpoint_due(epoch):
            save_latest_resuming_at(self, epoch + 1)
            self._last_latest_checkpoint = time()

    def _latest_checkpoint_due(self, epoch: int) -> bool:
        if epoch >= self.num_epochs - 1:
            return False  # on_train_end writes checkpoint_final.pth
        return (self.num_epochs <= self.checkpoint_every_epoch_up_to
                or time() - self._last_latest_checkpoint >= self.checkpoint_interval_s)

    def resume_command(self) -> str:
        device = "" if self.device.type == "cuda" else f" -device {self.device.type}"
        return (f"nnUNetv2_train {self.plans_manager.dataset_name} {self.configuration_name} {self.fold} "
                f"-tr {self.__class__.__name__} -p {self.plans_manager.plans_name}{device} --c")

    # --- writing ------------------------------------------------------------------------------------------

    def save_checkpoint(self, filename: str) -> None:
        partial = filename + PARTIAL_SUFFIX
        try:
            super().save_checkpoint(partial)
            if isfile(partial):  # nothing is written with checkpointing disabled, or on ranks other than 0
                _sync(partial)  # on disk before the rename: a machine that loses power keeps one of the two
        except (OSError, RuntimeError) as error:  # torch.save reports a failed write as a RuntimeError
            raise CheckpointWriteError(self._failed_write(filename, partial, error)) from error
        if isfile(partial):
            os.replace(partial, filename)
            _sync(dirname(filename))

    def _failed_write(self, filename: str, partial: str, error: BaseException) -> str:
        folder = dirname(filename)
        free = free_bytes(folder)  # before the partial file is removed: what the write ran into
        if isfile(partial):
            os.remove(partial)
        failure = f"{type(error).__name__}: {str(error).strip()}"
        if free is not None and free < FULL_DISK_BYTES:
            cause = f": the disk holding {folder} is full ({free / 2 ** 20:.1f} MiB free; torch.save said {failure})"
        else:
            cause = f" ({failure}" + ("" if free is None else f"; {free / 2 ** 20:.1f} MiB free on its disk") + ")"
        kept = [name for name in RESUMABLE if isfile(join(folder, name))]
        intact = (f"{', '.join(kept)} {'is' if len(kept) == 1 else 'are'} intact (a checkpoint replaces the previous "
                  f"one only once it is completely written)" if kept else "no earlier checkpoint exists")
        message = (f"Could not write {filename}{cause}. Free space there (or move nnUNet_results to a larger disk), "
                   f"then resume with `{self.resume_command()}`: {intact}.")
        self.print_to_log_file(message)
        return message

    def on_train_start(self) -> None:
        super().on_train_start()
        self._last_latest_checkpoint = time()
        if self.local_rank == 0:
            for name in sorted(os.listdir(self.output_folder)):
                if name.endswith(PARTIAL_SUFFIX):
                    os.remove(join(self.output_folder, name))
                    self.print_to_log_file(f"Removed {name}: an earlier run was stopped while writing it.")
        if self._resumed_from is not None:
            self.print_to_log_file(f"Resuming training at epoch {self.current_epoch} (of {self.num_epochs}) from "
                                   f"{self._resumed_from}.")
        elif self._continue_requested:
            self.print_to_log_file(f"WARNING: --c found no checkpoint (checkpoint_final/latest/best.pth) in "
                                   f"{self.output_folder}; training starts at epoch 0.")

    # --- resuming -----------------------------------------------------------------------------------------

    def load_checkpoint(self, filename_or_checkpoint: dict | str) -> None:
        if not isinstance(filename_or_checkpoint, str):
            super().load_checkpoint(filename_or_checkpoint)
            return
        if not self.was_initialized:
            self.initialize()  # the checks compare the file with the network and optimizer it builds
        requested = filename_or_checkpoint
        folder = dirname(requested)
        if self._continue_requested and basename(requested) in RESUMABLE:
            paths = [join(folder, name) for name in RESUMABLE if isfile(join(folder, name))]
        else:  # --val, --val_best, or a caller that names one file
            paths = [requested]
        checked = [self._check(path) for path in paths]
        chosen = newest_loadable(checked)
        if chosen is None:
            raise UnusableCheckpointError(self._nothing_loadable(checked))
        self._set_aside([c for c in checked if c.fault is not None], chosen)
        if chosen.path != requested:
            self.print_to_log_file(f"Resuming from {chosen.path} (at epoch {chosen.epochs_done}): the checkpoint with "
                                   f"the most epochs done among those that load (nnU-Net would have taken "
                                   f"{basename(requested)}).")
        if chosen.trainer_name not in (None, self.__class__.__name__):
            self.print_to_log_file(f"Note: {chosen.path} was written by {chosen.trainer_name}; its weights fit "
                                   f"{self.__class__.__name__}'s network.")
        super().load_checkpoint(chosen.path)
        self._resumed_from = chosen.path
        self.print_to_log_file(f"Loaded {chosen.path}: {self.current_epoch} epochs done.")

    def _check(self, path: str) -> CheckedCheckpoint:
        return check_checkpoint(path, self.network, self.optimizer, self.label_manager.num_segmentation_heads)

    def _nothing_loadable(self, checked: list[CheckedCheckpoint]) -> str:
        faults = "; ".join(f"{c.path}: {c.fault}" for c in checked)
        if self._continue_requested:
            advice = (f"To train this fold from the start, move these files out of {dirname(checked[0].path)} and run "
                      f"the same command without --c; to start from the weights of another training, use "
                      f"-pretrained_weights.")
        else:  # --val or --val_best: the training has to write the file again
            advice = f"Restore the file, or let `{self.resume_command()}` train from the newest checkpoint that loads."
        message = f"No checkpoint can be loaded by {self.__class__.__name__}: {faults}. Nothing was changed. {advice}"
        self.print_to_log_file(message)
        return message

    def _set_aside(self, faulty: list[CheckedCheckpoint], chosen: CheckedCheckpoint) -> None:
        """Log each faulty checkpoint and rename it, so that neither --c nor nnUNetv2_predict -chk reads it."""
        if self.is_ddp:
            dist.barrier()  # every rank has checked the same files before rank 0 renames any
        for checkpoint in faulty:
            aside = checkpoint.path + UNUSABLE_SUFFIX
            if self.local_rank == 0:
                os.replace(checkpoint.path, aside)
            self.print_to_log_file(f"WARNING: {basename(checkpoint.path)} cannot be resumed from: {checkpoint.fault}. "
                                   f"Taking {basename(chosen.path)} (resumes at epoch {chosen.epochs_done}) instead; "
                                   f"the faulty file is now {aside} (delete it once you no longer need it).")


class _SkippedStep(Exception):
    """Raised by the guarded loss to leave nnU-Net's train_step before its backward pass and update."""


class _GuardedLoss:
    """The trainer's loss (whatever wraps it, e.g. deep supervision); while ``active`` (in a training step) each
    value is handed to ``check``, which raises _SkippedStep for a step that must not update the weights."""

    def __init__(self, loss, check: Callable[[torch.Tensor], None]):
        self.loss, self.check, self.active = loss, check, False

    def __call__(self, output, target) -> torch.Tensor:
        value = self.loss(output, target)
        if self.active:
            self.check(value.detach())
        return value


class NonFiniteLossGuardMixin:
    """Put before nnUNetTrainer in the bases. Wraps, at the first training step, whatever ``self.loss`` is by then
    (so a subclass's own loss, or a loss another mixin wrapped in initialize(), is guarded as well)."""

    # Consecutive non-finite losses that are skipped before training stops.
    nonfinite_loss_patience: int = 5
    # What the advice after a stop tells the user to retrain with.
    fp32_retrain_hint: str = "a trainer without fp16 autocast (fp32)"

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.nonfinite_guard = NonFiniteLossGuard(self.nonfinite_loss_patience)

    def train_step(self, batch: dict) -> dict:
        """nnU-Net's train step, left before backward when the loss is not finite (the step is then skipped)."""
        if not isinstance(self.loss, _GuardedLoss):
            self.loss = _GuardedLoss(self.loss, self._check_training_loss)
        self.loss.active = True
        try:
            return super().train_step(batch)
        except _SkippedStep:
            return {"loss": np.array(np.nan)}
        finally:
            self.loss.active = False

    def _check_training_loss(self, loss: torch.Tensor) -> None:
        if not self._loss_is_usable(self._worst_loss_over_ranks(loss)):
            raise _SkippedStep

    def _worst_loss_over_ranks(self, loss: torch.Tensor) -> float:
        """This rank's loss, or under DDP a non-finite value if any rank's loss is non-finite, so that all
        ranks skip a step together (a rank that skipped backward alone would hang the others)."""
        if not self.is_ddp:
            return float(loss)
        finite = torch.isfinite(loss).to(torch.int32).reshape(1)
        dist.all_reduce(finite, op=dist.ReduceOp.MIN)
        return float(loss) if finite.item() else float("nan")

    def _loss_is_usable(self, loss: float) -> bool:
        verdict = self.nonfinite_guard.record(loss)
        if verdict == "skip":
            self.print_to_log_file(f"WARNING: training loss {loss} in epoch {self.current_epoch}; step skipped "
                                   f"({self.nonfinite_guard.consecutive} in a row, stopping at "
                                   f"{self.nonfinite_guard.patience}).")
        if verdict == "stop":
            kept = self._save_resumable_checkpoint()
            message = (f"The training loss was {loss} for {self.nonfinite_guard.consecutive} consecutive steps in "
                       f"epoch {self.current_epoch}. fp16 overflow is the usual cause: retrain with "
                       f"{self.fp32_retrain_hint}, or lower the learning rate. {kept}")
            self.print_to_log_file(message)
            raise NonFiniteLossError(message)
        return verdict == "ok"

    def _save_resumable_checkpoint(self) -> str:
        """Keep the weights of the last good step (the failing steps were skipped) so --c can resume."""
        if not all(torch.isfinite(p).all() for p in self.network.parameters()):
            return "The weights are not finite, so no checkpoint was written; the last one on disk is kept."
        save_latest_resuming_at(self, self.current_epoch)  # --c repeats this epoch
        return (f"The last good weights are in {join(self.output_folder, LATEST)}; "
                f"`nnUNetv2_train ... --c` resumes from the start of epoch {self.current_epoch}.")

    def on_train_epoch_end(self, train_outputs: list[dict]) -> None:
        """The epoch's train loss over the steps that were not skipped (nnU-Net's mean would be NaN after one
        skipped step), and how many were skipped."""
        losses = np.array([float(output["loss"]) for output in train_outputs])
        skipped = int((~np.isfinite(losses)).sum())  # the same on every rank: ranks skip together
        if self.is_ddp:
            gathered = [None] * dist.get_world_size()
            dist.all_gather_object(gathered, losses)
            losses = np.concatenate(gathered)
        finite = losses[np.isfinite(losses)]
        if skipped:
            self.print_to_log_file(f"{skipped} of {len(train_outputs)} training steps in epoch {self.current_epoch} "
                                   f"had a non-finite loss and were skipped; train_loss averages the others.")
        self.logger.log("train_losses", float(finite.mean()) if finite.size else float("nan"), self.current_epoch)


class ResilientTrainingMixin(NonFiniteLossGuardMixin, ResumableCheckpointsMixin):
    """Both: skipped non-finite steps, and checkpoints that survive interruptions with --c that resumes."""
