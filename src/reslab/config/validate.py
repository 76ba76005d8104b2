"""Validate a composed config before training: every problem becomes one ConfigError line.

Model depth is checked by building the model on the meta device (no memory, no time), so
the rule lives in one place: the model's own constructor.
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig

from reslab.errors import ConfigError


def _number(cfg: DictConfig, key: str, kind: type = float) -> Any:
    value = cfg
    for part in key.split("."):
        value = value.get(part) if isinstance(value, DictConfig) else None
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        try:
            value = kind(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{key}={value!r} is not a number; give a {kind.__name__}") from None
    if kind is int and float(value) != int(value):
        raise ConfigError(f"{key}={value} must be a whole number")
    return kind(value)


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
    """Raise ConfigError naming the first bad key and what to do about it."""
    lr = _number(cfg, "optimizer.lr")
    _check(lr is not None and lr > 0, f"optimizer.lr={lr} must be > 0 (e.g. optimizer.lr=0.001)")
    wd = _number(cfg, "optimizer.weight_decay")
    _check(wd is None or wd >= 0, f"optimizer.weight_decay={wd} must be >= 0")
    momentum = _number(cfg, "optimizer.momentum")
    _check(
        momentum is None or 0 <= momentum < 1, f"optimizer.momentum={momentum} must be in [0, 1)"
    )

    vf = _number(cfg, "dataset.val_fraction")
    _check(
        vf is not None and 0 < vf < 1,
        f"dataset.val_fraction={vf} must be strictly between 0 and 1 (e.g. 0.1); the test set is never used for validation",
    )
    for key in ("dataset.batch_size", "dataset.eval_batch_size"):
        size = _number(cfg, key, int)
        _check(
            size is not None and size >= 1,
            f"{key}={size} must be a positive whole number (e.g. 128)",
        )
    padding = _number(cfg, "dataset.augment.crop_padding", int)
    _check(padding is None or padding >= 0, f"dataset.augment.crop_padding={padding} must be >= 0")

    epochs = _number(cfg, "trainer.max_epochs", int)
    _check(epochs is not None and epochs >= 1, f"trainer.max_epochs={epochs} must be >= 1")
    for key in ("trainer.limit_train_batches", "trainer.limit_eval_batches"):
        limit = _number(cfg, key, int)
        _check(limit is None or limit >= 1, f"{key}={limit} must be >= 1, or null for all batches")
    clip = _number(cfg, "trainer.grad_clip")
    _check(
        clip is None or clip > 0, f"trainer.grad_clip={clip} must be > 0, or null for no clipping"
    )
    patience = _number(cfg, "trainer.early_stopping.patience", int)
    _check(
        patience is None or patience >= 0,
        f"trainer.early_stopping.patience={patience} must be >= 0",
    )
    mode = cfg.trainer.early_stopping.get("mode", "auto")
    _check(
        mode in ("auto", "min", "max"),
        f"trainer.early_stopping.mode={mode!r} must be auto, min or max",
    )

    scheduler = cfg.get("scheduler") or {}
    _check(
        not str(scheduler.get("_target_")).endswith("ReduceLROnPlateau")
        or scheduler.get("interval", "epoch") == "epoch",
        "scheduler=plateau steps once per epoch on the monitored metric; "
        "use scheduler.interval=epoch",
    )

    monitor = cfg.get("monitor")
    _check(
        monitor in MONITORABLE,
        f"monitor={monitor!r} must name a logged metric such as val/loss or val/acc (the test set "
        f"is never monitored); choose one of {', '.join(MONITORABLE)}",
    )
    _number(cfg, "seed", int)


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
    from reslab.config.shapes import DATASET_SHAPES

    validate_config(cfg)
    if cfg.dataset.name in DATASET_SHAPES:
        shape, n_classes = DATASET_SHAPES[cfg.dataset.name]
        check_model_builds(cfg.model, shape, n_classes)


def check_model_builds(
    model_cfg: DictConfig, input_shape: tuple[int, ...], num_classes: int
) -> None:
    """Build the model on the meta device so an impossible depth fails before data is loaded."""
    import torch

    with torch.device("meta"):
        build(model_cfg, input_shape=list(input_shape), num_classes=num_classes)
