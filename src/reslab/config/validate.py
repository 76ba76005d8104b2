"""Validate a composed config before training: every problem becomes one ConfigError line.

Model depth is checked by building the model on the meta device (no memory, no time), so
the rule lives in one place: the model's own constructor.
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig

from reslab.config.schema import check_values
from reslab.errors import ConfigError

# What the trainer logs per epoch that early stopping, best.pt and plateau schedules can follow.
MONITORABLE = (
    "val/loss",
    "val/acc",
    "val/top5_acc",
    *(f"val/{m}_{avg}" for m in ("f1", "precision", "recall") for avg in ("macro", "weighted")),
    "train/loss",
    "train/acc",
)


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def validate_config(cfg: DictConfig) -> None:
    """Raise ConfigError naming the first bad key and what to do about it: every key's type
    and range (config/schema.py), then the rules that tie keys together."""
    check_values(cfg)
    monitor = cfg.get("monitor")
    _check(
        monitor in MONITORABLE,
        f"monitor={monitor!r} must name a logged metric such as val/loss or val/acc (the test set "
        f"is never monitored); choose one of {', '.join(MONITORABLE)}",
    )
    check_schedule(cfg)


def check_schedule(cfg: DictConfig) -> None:
    """Scheduler settings that only make sense together with others."""
    scheduler = cfg.get("scheduler") or {}
    name = str(scheduler.get("_target_")).rsplit(".", 1)[-1]
    if name == "OneCycleLR":
        _check(
            not scheduler.get("warmup_epochs"),
            "scheduler=onecycle has its own warm-up (scheduler.pct_start); "
            "set scheduler.warmup_epochs=0",
        )
    if name != "ReduceLROnPlateau":
        return
    _check(
        scheduler.get("interval", "epoch") == "epoch",
        "scheduler=plateau steps once per epoch on the monitored metric; "
        "use scheduler.interval=epoch",
    )
    # ReduceLROnPlateau cuts after patience+1 epochs without improvement; early stopping
    # stops after its patience. One epoch at the cut lr needs two more epochs of patience.
    cut_after = int(scheduler.get("patience", 10)) + 1
    stop_after = cfg.trainer.early_stopping.get("patience")
    if stop_after and stop_after <= cut_after:
        raise ConfigError(
            f"scheduler=plateau cuts the lr after {cut_after} epochs without improvement "
            f"(scheduler.patience={cut_after - 1}), but early stopping ends the run after "
            f"trainer.early_stopping.patience={stop_after}, so the lr would never be cut and "
            f"trained on; set trainer.early_stopping.patience>={cut_after + 1} (0 turns it off) "
            f"or scheduler.patience<={max(0, stop_after - 2)}"
        )


def build(cfg: DictConfig, **kwargs: Any) -> Any:
    """hydra.utils.instantiate, re-raising our own errors unwrapped so they stay one line."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    try:
        return instantiate(cfg, **kwargs)
    except InstantiationException as exc:
        if isinstance(exc.__cause__, ConfigError):
            raise exc.__cause__ from None
        last = str(exc).strip().splitlines()[-1]
        raise ConfigError(f"cannot build {cfg.get('_target_')}: {last}") from exc


def check_config(cfg: DictConfig) -> None:
    """Every check that needs no data: values, keys, and whether the model can be built."""
    from reslab.data.registry import declared_shape

    validate_config(cfg)
    known = declared_shape(cfg.dataset)
    if known is not None:  # else the data decide, and the model is built once they are loaded
        check_model_builds(cfg.model, *known)


def check_model_builds(
    model_cfg: DictConfig, input_shape: tuple[int, ...], num_classes: int
) -> None:
    """Build the model on the meta device so an impossible depth fails before data is loaded."""
    import torch

    with torch.device("meta"):
        build(model_cfg, input_shape=list(input_shape), num_classes=num_classes)
