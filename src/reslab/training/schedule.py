"""Learning-rate schedules from the ``scheduler`` config group, stepped at the right cadence.

A scheduler config is a torch scheduler built with ``_partial_`` plus two keys of reslab's
own: ``interval`` (``epoch`` or ``step``: when the scheduler steps) and ``warmup_epochs``
(a linear warm-up, fractions allowed). ReduceLROnPlateau follows ``monitor``.

Both clocks count from the first step of the run. The warm-up is torch's ``LinearLR``
chained with the main scheduler on the same optimizer (each multiplies the lr), so it
scales the schedule's first steps rather than delaying it: the ResNet paper's milestones
of 32000 and 48000 iterations drop the lr at those iterations with or without a warm-up.
Lengths left null (cosine's ``T_max``, one-cycle's ``total_steps``) are the run's budget;
a checkpoint remembers them, and a resume that would change them is refused.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch.optim.lr_scheduler import LinearLR, ReduceLROnPlateau

from reslab.errors import ConfigError

OWN_KEYS = ("interval", "warmup_epochs")
# Schedules whose length is the run's budget when left null: (class name, length key).
BUDGET_LENGTHS = {"CosineAnnealingLR": "T_max", "OneCycleLR": "total_steps"}
# The trainer keys that set a run's budget in optimizer steps.
BUDGET_KEYS = ("trainer.max_epochs", "trainer.max_steps", "trainer.limit_train_batches")


class LRSchedule:
    """The main torch scheduler (if any) and the warm-up; the trainer calls the two step hooks.

    ``shape`` holds the lengths the schedule was built with, so that a resume can tell
    whether the checkpoint's schedule still describes the run.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        scheduler: Any | None,
        interval: str,
        warmup_steps: int,
        shape: dict[str, Any] | None = None,
    ) -> None:
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.interval = interval
        self.warmup_steps = warmup_steps
        self.shape = shape or {"interval": interval, "warmup_steps": warmup_steps}
        # lr x (s + 1) / W at steps s = 0 .. W-1. Built after the main scheduler, so the ramp
        # multiplies the lr that schedule starts from.
        self.warmup = (
            LinearLR(optimizer, 1.0 / warmup_steps, 1.0, total_iters=warmup_steps - 1)
            if warmup_steps > 1
            else None
        )

    @property
    def is_plateau(self) -> bool:
        return isinstance(self.scheduler, ReduceLROnPlateau)

    def after_batch(self) -> None:
        """Call after every optimizer step."""
        if self.warmup is not None and self.warmup.last_epoch < self.warmup.total_iters:
            self.warmup.step()
        if self.scheduler is not None and self.interval == "step":
            self.scheduler.step()

    def after_epoch(self, monitored: float | None) -> None:
        """Call once per epoch with the monitored metric's value."""
        if self.scheduler is None or self.interval != "epoch":
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
            "shape": self.shape,
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "warmup": self.warmup.state_dict() if self.warmup is not None else None,
        }

    def load_state_dict(self, state: dict) -> None:
        saved = state.get("shape")
        if saved is None and self.warmup is not None:
            raise ConfigError(
                "the checkpoint was written by an older reslab whose warm-up delayed the "
                "schedule; start a new run to train with a warm-up"
            )
        if saved is not None and saved != self.shape:
            raise ConfigError(
                f"cannot resume: the checkpoint's learning-rate schedule was built for "
                f"{_describe(saved)}, this run's would be {_describe(self.shape)}; resume with "
                f"the checkpoint's {', '.join(BUDGET_KEYS)} or start a new run"
            )
        if self.scheduler is not None and state["scheduler"] is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        if self.warmup is not None and state.get("warmup") is not None:
            self.warmup.load_state_dict(state["warmup"])


def _describe(shape: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(shape.items()))


def scheduler_class(cfg: DictConfig | dict | None) -> str | None:
    """``CosineAnnealingLR`` for a cosine config; None when there is no main scheduler."""
    target = (cfg or {}).get("_target_")
    return str(target).rsplit(".", 1)[-1] if target else None


def budget_sets_length(cfg: DictConfig | dict | None) -> bool:
    """Whether the schedule's length comes from the run's budget (a null T_max or total_steps)."""
    key = BUDGET_LENGTHS.get(scheduler_class(cfg) or "")
    return key is not None and (cfg or {}).get(key) is None


def warmup_steps_of(cfg: DictConfig | None, steps_per_epoch: int) -> int:
    warmup_epochs = float((cfg or {}).get("warmup_epochs", 0) or 0)
    if warmup_epochs < 0:
        raise ConfigError(f"scheduler.warmup_epochs={warmup_epochs} must be >= 0")
    return math.ceil(warmup_epochs * steps_per_epoch)


def build_schedule(
    cfg: DictConfig | None,
    optimizer: torch.optim.Optimizer,
    *,
    steps_per_epoch: int,
    max_epochs: int,
    monitor_mode: str,
) -> LRSchedule:
    """The schedule of a run of ``max_epochs`` epochs of ``steps_per_epoch`` optimizer steps."""
    interval = (cfg or {}).get("interval", "epoch")
    if interval not in ("epoch", "step"):
        raise ConfigError(f"scheduler.interval={interval!r} is invalid; use epoch or step")
    warmup_steps = warmup_steps_of(cfg, steps_per_epoch)
    shape: dict[str, Any] = {"interval": interval, "warmup_steps": warmup_steps}
    name = scheduler_class(cfg)
    if name is None:
        return LRSchedule(optimizer, None, interval, warmup_steps, shape)
    if name == "OneCycleLR" and warmup_steps > 1:
        raise ConfigError(
            "scheduler=onecycle has its own warm-up (scheduler.pct_start); "
            "set scheduler.warmup_epochs=0"
        )
    params = OmegaConf.to_container(cfg, resolve=True)
    for key in OWN_KEYS:
        params.pop(key, None)
    if budget_sets_length(cfg):
        length = max_epochs * steps_per_epoch if interval == "step" else max_epochs
        params[BUDGET_LENGTHS[name]] = shape["length"] = max(1, length)
    if name == "ReduceLROnPlateau" and params.get("mode", "auto") == "auto":
        params["mode"] = monitor_mode
    scheduler = instantiate(params)(optimizer)
    return LRSchedule(optimizer, scheduler, interval, warmup_steps, shape)
