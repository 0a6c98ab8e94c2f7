"""What to do when a training loss is NaN or inf: skip that step, and stop after several in a row."""

from __future__ import annotations

import math


class NonFiniteLossError(RuntimeError):
    """Training stopped because the loss stayed non-finite."""


class NonFiniteLossGuard:
    """Counts consecutive non-finite losses. One (an fp16 overflow in one batch) is skipped;
    ``patience`` in a row means training has diverged and should stop."""

    def __init__(self, patience: int = 5):
        self.patience = patience
        self.consecutive = 0

    def record(self, loss: float) -> str:
        """'ok' for a finite loss, 'skip' for a non-finite one, 'stop' when patience is used up."""
        if math.isfinite(loss):
            self.consecutive = 0
            return "ok"
        self.consecutive += 1
        return "stop" if self.consecutive >= self.patience else "skip"
