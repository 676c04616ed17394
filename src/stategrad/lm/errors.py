"""The errors training raises: each message says why it stopped and what to do."""

from __future__ import annotations


class TrainingError(RuntimeError):
    """Training cannot go on; the message says why and what to do."""


class NonFiniteLossError(TrainingError):
    def __init__(self, epoch: int, batch: int, value: float, lr: float):
        self.epoch, self.batch, self.value, self.lr = epoch, batch, value, lr
        super().__init__(f"the training loss became {value} at epoch {epoch + 1}, batch {batch + 1} "
                         f"(learning rate {lr:g})")
