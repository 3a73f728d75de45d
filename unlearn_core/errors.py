"""Errors that cross module boundaries: user mistakes (exit 2, one line) and diverged trials."""

from __future__ import annotations


class UserError(ValueError):
    """A problem with what the user asked for; the CLI prints the message alone and exits 2."""


class TrialDiverged(RuntimeError):
    """The unlearning loss became non-finite; carries the optimizer step where it happened."""

    def __init__(self, step: int, loss: float) -> None:
        super().__init__(f"loss became non-finite ({loss}) at optimizer step {step}")
        self.step = step
        self.loss = loss
