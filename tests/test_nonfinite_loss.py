"""The count behind the non-finite-loss guard; the guard inside real trainers is tested in tests/test_trainer.py."""

import pytest

from nnunetv2_segresmamba.training import NonFiniteLossGuard


def test_guard_skips_then_stops_and_resets_on_a_finite_loss():
    guard = NonFiniteLossGuard(patience=3)
    assert guard.record(0.5) == "ok"
    assert [guard.record(float("nan")), guard.record(float("inf"))] == ["skip", "skip"]
    assert guard.record(0.4) == "ok" and guard.consecutive == 0
    assert [guard.record(float("nan")) for _ in range(3)] == ["skip", "skip", "stop"]
