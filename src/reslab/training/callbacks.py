"""Hooks for work that rides along with training (CAM timelines, gradient-flow logging, ...).

A callback overrides only what it needs. ``on_epoch_end`` may return extra scalars,
which are logged with the epoch's metrics under the names it chooses.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from reslab.training.trainer import Trainer


class Callback:
    def on_fit_start(self, trainer: Trainer) -> None:
        """Before the first epoch."""

    def on_after_backward(self, trainer: Trainer, batch_index: int) -> None:
        """After gradients exist and before the optimizer step (gradients are unscaled only in fp32/bf16)."""

    def on_epoch_end(
        self, trainer: Trainer, epoch: int, metrics: dict[str, float]
    ) -> dict[str, Any] | None:
        """After validation; return extra scalars to log for this epoch, or None."""
        return None

    def on_fit_end(self, trainer: Trainer) -> None:
        """After the last epoch, with the best weights restored."""
