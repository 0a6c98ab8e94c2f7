"""A NaN loss skips the step; several in a row stop training with advice and a resumable checkpoint."""

import types

import pytest
import torch

from nnunetv2_segresmamba.training import NonFiniteLossError, NonFiniteLossGuard, nnUNetTrainerSegResMamba


def test_guard_skips_then_stops_and_resets_on_a_finite_loss():
    guard = NonFiniteLossGuard(patience=3)
    assert guard.record(0.5) == "ok"
    assert [guard.record(float("nan")), guard.record(float("inf"))] == ["skip", "skip"]
    assert guard.record(0.4) == "ok" and guard.consecutive == 0
    assert [guard.record(float("nan")) for _ in range(3)] == ["skip", "skip", "stop"]


def fake_trainer(tmp_path, weights_finite=True):
    network = torch.nn.Linear(2, 2)
    if not weights_finite:
        with torch.no_grad():
            network.weight.fill_(float("nan"))
    saved = []
    trainer = types.SimpleNamespace(
        nonfinite_guard=NonFiniteLossGuard(patience=2), current_epoch=7, output_folder=str(tmp_path),
        network=network, lines=[],
        save_checkpoint=lambda path: saved.append((path, trainer.current_epoch)))
    trainer.print_to_log_file = lambda *a, **k: trainer.lines.append(" ".join(map(str, a)))
    trainer._save_resumable_checkpoint = types.MethodType(nnUNetTrainerSegResMamba._save_resumable_checkpoint, trainer)
    trainer._save_checkpoint_resuming_at = types.MethodType(nnUNetTrainerSegResMamba._save_checkpoint_resuming_at,
                                                            trainer)
    trainer.loss_is_usable = types.MethodType(nnUNetTrainerSegResMamba._loss_is_usable, trainer)
    return trainer, saved


def test_trainer_stops_with_advice_and_keeps_the_last_good_weights(tmp_path):
    trainer, saved = fake_trainer(tmp_path)
    assert trainer.loss_is_usable(1.0) is True
    assert trainer.loss_is_usable(float("nan")) is False
    assert "step skipped" in trainer.lines[-1]
    with pytest.raises(NonFiniteLossError) as error:
        trainer.loss_is_usable(float("nan"))
    message = str(error.value)
    assert "epoch 7" in message and "nnUNetTrainerSegResMamba_noAMP" in message and "--c" in message
    # saved with current_epoch rewound by one: nnU-Net records current_epoch + 1, so --c repeats epoch 7
    assert saved == [(str(tmp_path / "checkpoint_latest.pth"), 6)]
    assert trainer.current_epoch == 7


def test_no_checkpoint_is_written_from_broken_weights(tmp_path):
    trainer, saved = fake_trainer(tmp_path, weights_finite=False)
    trainer.loss_is_usable(float("nan"))
    with pytest.raises(NonFiniteLossError, match="no checkpoint was written"):
        trainer.loss_is_usable(float("nan"))
    assert saved == []
