"""Learning-rate schedules from the ``scheduler`` config group, stepped at the right cadence.

A scheduler config is a torch scheduler built with ``_partial_`` plus three keys of
reslab's own: ``interval`` (``epoch`` or ``step``), ``warmup_epochs`` (linear warm-up,
fractions allowed) and, for ReduceLROnPlateau, the metric comes from ``monitor``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from reslab.errors import ConfigError

OWN_KEYS = ("interval", "warmup_epochs")


class LRSchedule:
    """Owns the torch scheduler (if any) and the warm-up; the trainer calls the two step hooks."""

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        scheduler: Any | None,
        interval: str,
        warmup_steps: int,
    ) -> None:
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.interval = interval
        self.warmup_steps = warmup_steps
        self.base_lrs = [group["lr"] for group in optimizer.param_groups]
        self.steps_done = 0
        # The epoch in which warm-up ended ends without a scheduler step: the next epoch then
        # runs at the schedule's first value (the base lr), as a run without warm-up starts.
        self.skip_epoch_step = False
        if warmup_steps > 0:
            self._set_warmup_lr(0)

    @property
    def is_plateau(self) -> bool:
        return isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)

    @property
    def in_warmup(self) -> bool:
        return self.steps_done < self.warmup_steps

    def _set_warmup_lr(self, step: int) -> None:
        factor = min(1.0, (step + 1) / self.warmup_steps)
        for group, base in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = base * factor

    def after_batch(self) -> None:
        """Call after every optimizer step."""
        self.steps_done += 1
        if self.steps_done < self.warmup_steps:
            self._set_warmup_lr(self.steps_done)
            return
        if self.steps_done == self.warmup_steps:
            for group, base in zip(self.optimizer.param_groups, self.base_lrs):
                group["lr"] = base
            self.skip_epoch_step = True
            return
        if self.scheduler is not None and self.interval == "step":
            self.scheduler.step()

    def after_epoch(self, monitored: float | None) -> None:
        """Call once per epoch with the monitored metric's value."""
        if self.scheduler is None or self.interval != "epoch" or self.in_warmup:
            return
        if self.skip_epoch_step:
            self.skip_epoch_step = False
            return
        if self.is_plateau:
            self.scheduler.step(monitored)
        else:
            self.scheduler.step()

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def state_dict(self) -> dict:
        return {
            "steps_done": self.steps_done,
            "skip_epoch_step": self.skip_epoch_step,
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
        }

    def load_state_dict(self, state: dict) -> None:
        self.steps_done = state["steps_done"]
        self.skip_epoch_step = bool(state.get("skip_epoch_step", False))
        if self.scheduler is not None and state["scheduler"] is not None:
            self.scheduler.load_state_dict(state["scheduler"])


def build_schedule(
    cfg: DictConfig | None,
    optimizer: torch.optim.Optimizer,
    *,
    steps_per_epoch: int,
    max_epochs: int,
    monitor_mode: str,
) -> LRSchedule:
    if cfg is None or cfg.get("_target_") is None:
        return LRSchedule(optimizer, None, "epoch", 0)
    interval = cfg.get("interval", "epoch")
    if interval not in ("epoch", "step"):
        raise ConfigError(f"scheduler.interval={interval!r} is invalid; use epoch or step")
    warmup_epochs = float(cfg.get("warmup_epochs", 0) or 0)
    if warmup_epochs < 0:
        raise ConfigError(f"scheduler.warmup_epochs={warmup_epochs} must be >= 0")
    warmup_steps = math.ceil(warmup_epochs * steps_per_epoch)
    params = OmegaConf.to_container(cfg, resolve=True)
    for key in OWN_KEYS:
        params.pop(key, None)
    target = str(params["_target_"])
    # Fill in the lengths a schedule needs from the trainer's budget.
    remaining_steps = max(1, max_epochs * steps_per_epoch - warmup_steps)
    remaining_epochs = max(1, max_epochs - math.ceil(warmup_epochs))
    if target.endswith("OneCycleLR") and params.get("total_steps") is None:
        params["total_steps"] = remaining_steps
    if target.endswith("CosineAnnealingLR") and params.get("T_max") is None:
        params["T_max"] = remaining_steps if interval == "step" else remaining_epochs
    if target.endswith("ReduceLROnPlateau") and params.get("mode", "auto") == "auto":
        params["mode"] = monitor_mode
    scheduler = instantiate(params)(optimizer)
    # Built after the scheduler, so a warm-up ramps to the lr the schedule starts from.
    return LRSchedule(optimizer, scheduler, interval, warmup_steps)
