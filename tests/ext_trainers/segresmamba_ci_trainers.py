"""A CI-sized SegResMamba trainer, found by nnU-Net through nnUNet_extTrainer like a user's own folder.

The paper's topology with narrow widths, no mirroring, and twice nnU-Net's learning rate so that it learns
within a few dozen CPU steps. Epochs and iterations per epoch come from SEGRESMAMBA_TEST_EPOCHS and
SEGRESMAMBA_TEST_ITERATIONS (default 1 and 2), so that a test can train a fold briefly, then continue it
with --c for longer.

Fault points for tests/test_fault_injection.py, inert unless their variable is set:
SEGRESMAMBA_TEST_PAUSE_AT=PHASE@EPOCH.INDEX stops the process at that moment, logs a line starting with
``FAULT POINT`` that says where it stands, and waits until it is killed (or until the file named by
SEGRESMAMBA_TEST_RELEASE exists, then goes on). PHASE is ``step`` (a training step with its gradients
computed, the weights not yet updated), ``validation`` (a validation step computed, the epoch's pseudo Dice
not yet logged), ``checkpoint`` (half of a checkpoint's bytes written; INDEX counts the checkpoint writes
at the end of EPOCH), ``before_checkpoint`` (just before such a write), ``final_validation`` (the final
validation's INDEX-th network forward pass) or ``predict`` (nnUNetv2_predict's INDEX-th forward pass; EPOCH
is 0). SEGRESMAMBA_TEST_NAN_AT=EPOCH.STEP[,EPOCH.STEP...] replaces the loss of those training steps by NaN.
"""

import io
import os
import sys
import time

import torch

from nnunetv2_segresmamba.training import nnUNetTrainerSegResMamba

PAUSE_ENV, RELEASE_ENV, NAN_ENV = "SEGRESMAMBA_TEST_PAUSE_AT", "SEGRESMAMBA_TEST_RELEASE", "SEGRESMAMBA_TEST_NAN_AT"
MARKER = "FAULT POINT"
PAUSE_LIMIT_S = 300  # a test that never kills nor releases must not hang CI


def _pause_point() -> tuple[str, int, int] | None:
    value = os.environ.get(PAUSE_ENV)
    if not value:
        return None
    phase, position = value.split("@")
    epoch, index = position.split(".")
    return phase, int(epoch), int(index)


def _nan_steps() -> set[tuple[int, int]]:
    return {tuple(map(int, point.split("."))) for point in os.environ.get(NAN_ENV, "").split(",") if point}


def _wait(say) -> None:
    """Stay at the fault point until killed, or until the release file appears."""
    release = os.environ.get(RELEASE_ENV)
    deadline = time.monotonic() + PAUSE_LIMIT_S
    while time.monotonic() < deadline:
        if release and os.path.exists(release):
            say("released, going on")
            return
        time.sleep(0.02)
    raise RuntimeError(f"{MARKER}: neither killed nor released within {PAUSE_LIMIT_S} s")


class _CountingForwardHook:
    """Pauses at the INDEX-th forward pass of a network (prediction has no trainer hook of its own)."""

    def __init__(self, phase: str, index: int, say):
        self.phase, self.index, self.say, self.calls = phase, index, say, 0

    def __call__(self, module, args, output):
        if self.calls == self.index:
            self.say(f"{MARKER} {self.phase}@0.{self.index}: forward pass {self.index} done")
            _wait(self.say)
        self.calls += 1


def _print_flushed(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class nnUNetTrainerSegResMamba_CITiny(nnUNetTrainerSegResMamba):
    network_options = dict(widths=(8, 16, 16, 32))

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        plans["configurations"][configuration]["batch_size"] = 2
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.initial_lr = 0.02
        self.num_epochs = int(os.environ.get("SEGRESMAMBA_TEST_EPOCHS", "1"))
        self.num_iterations_per_epoch = int(os.environ.get("SEGRESMAMBA_TEST_ITERATIONS", "2"))
        self.num_val_iterations_per_epoch = 1
        self._pause_at, self._nan_at = _pause_point(), _nan_steps()
        self._step = self._val_step = 0
        self._checkpoint_writes: dict[int, int] = {}

    def configure_rotation_dummyDA_mirroring_and_inital_patch_size(self):
        rotation, dummy_2d, initial_patch_size, _ = super().configure_rotation_dummyDA_mirroring_and_inital_patch_size()
        self.inference_allowed_mirroring_axes = None
        return rotation, dummy_2d, initial_patch_size, None

    @classmethod
    def build_network_architecture(cls, plans_manager, configuration_manager, num_input_channels,
                                   num_output_channels, enable_deep_supervision=True):
        network = super().build_network_architecture(plans_manager, configuration_manager, num_input_channels,
                                                     num_output_channels, enable_deep_supervision)
        point = _pause_point()
        if point is not None and point[0] == "predict":
            network.register_forward_hook(_CountingForwardHook("predict", point[2], _print_flushed))
        return network

    # --- fault points -------------------------------------------------------------------------------------

    def _due(self, phase: str, index: int) -> bool:
        return self._pause_at == (phase, self.current_epoch, index)

    def _pause(self, phase: str, index: int, detail: str) -> None:
        self.print_to_log_file(f"{MARKER} {phase}@{self.current_epoch}.{index}: {detail}")
        _wait(self.print_to_log_file)

    def initialize(self) -> None:
        super().initialize()
        self.optimizer.register_step_pre_hook(self._before_optimizer_step)
        if self._nan_at:
            self.loss = _NaNAt(self.loss, self)

    def _before_optimizer_step(self, optimizer, args, kwargs) -> None:
        if self._due("step", self._step):
            self._pause("step", self._step, "gradients computed, weights not yet updated")

    def on_train_epoch_start(self) -> None:
        super().on_train_epoch_start()
        self._step = 0

    def train_step(self, batch: dict) -> dict:
        try:
            return super().train_step(batch)
        finally:
            self._step += 1

    def on_validation_epoch_start(self) -> None:
        super().on_validation_epoch_start()
        self._val_step = 0

    def validation_step(self, batch: dict) -> dict:
        result = super().validation_step(batch)
        if self._due("validation", self._val_step):
            self._pause("validation", self._val_step, "validation step computed, pseudo Dice not yet logged")
        self._val_step += 1
        return result

    def save_checkpoint(self, filename: str) -> None:
        index = self._checkpoint_writes.get(self.current_epoch, 0)
        self._checkpoint_writes[self.current_epoch] = index + 1
        if self._due("before_checkpoint", index):
            self._pause("before_checkpoint", index, f"about to write {os.path.basename(filename)}")
        if not self._due("checkpoint", index):
            super().save_checkpoint(filename)
            return
        real_save = torch.save

        def save_halfway(obj, path, *args, **kwargs):
            buffer = io.BytesIO()
            real_save(obj, buffer, *args, **kwargs)
            data = buffer.getvalue()
            with open(path, "wb") as handle:
                handle.write(data[: len(data) // 2])
                handle.flush()
                self._pause("checkpoint", index, f"{len(data) // 2} of {len(data)} bytes of "
                                                 f"{os.path.basename(path)} written")
                handle.write(data[len(data) // 2:])

        torch.save = save_halfway  # nnU-Net's save_checkpoint looks torch.save up when it calls it
        try:
            super().save_checkpoint(filename)
        finally:
            torch.save = real_save

    def perform_actual_validation(self, save_probabilities: bool = False):
        hook = None
        if self._pause_at is not None and self._pause_at[0] == "final_validation":
            say = lambda message: self.print_to_log_file(message)  # noqa: E731
            hook = self.network.register_forward_hook(
                _CountingForwardHook("final_validation", self._pause_at[2], say))
        try:
            return super().perform_actual_validation(save_probabilities)
        finally:
            if hook is not None:
                hook.remove()


class _NaNAt:
    """The trainer's loss, NaN at the steps SEGRESMAMBA_TEST_NAN_AT names."""

    def __init__(self, loss, trainer: nnUNetTrainerSegResMamba_CITiny):
        self.loss, self.trainer = loss, trainer

    def __call__(self, output, target):
        value = self.loss(output, target)
        point = (self.trainer.current_epoch, self.trainer._step)
        if self.trainer.network.training and point in self.trainer._nan_at:
            self.trainer.print_to_log_file(f"{MARKER} nan@{point[0]}.{point[1]}: loss replaced by NaN")
            return value * float("nan")
        return value
