"""Early stopping on the monitored metric: stop after ``patience`` epochs without improvement."""

from __future__ import annotations

import math


def monitor_mode(monitor: str, mode: str = "auto") -> str:
    """``min`` for losses, ``max`` for everything else, unless set explicitly."""
    if mode in ("min", "max"):
        return mode
    return "min" if "loss" in monitor.split("/")[-1] else "max"


class EarlyStopping:
    def __init__(
        self, monitor: str, mode: str = "auto", patience: int | None = 5, min_delta: float = 0.0
    ) -> None:
        self.monitor = monitor
        self.mode = monitor_mode(monitor, mode)
        self.patience = patience  # None or 0: never stop, but still track the best epoch
        self.min_delta = abs(min_delta)
        self.best = math.inf if self.mode == "min" else -math.inf
        self.best_epoch = 0
        self.bad_epochs = 0

    def improved(self, value: float) -> bool:
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def update(self, value: float, epoch: int) -> bool:
        """Record an epoch's value; True if it is the new best."""
        if self.improved(value):
            self.best, self.best_epoch, self.bad_epochs = value, epoch, 0
            return True
        self.bad_epochs += 1
        return False

    @property
    def should_stop(self) -> bool:
        return bool(self.patience) and self.bad_epochs >= self.patience

    def state_dict(self) -> dict:
        return {"best": self.best, "best_epoch": self.best_epoch, "bad_epochs": self.bad_epochs}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.best_epoch, self.bad_epochs = (
            state["best"],
            state["best_epoch"],
            state["bad_epochs"],
        )
