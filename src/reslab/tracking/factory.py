"""Build the dashboard loggers that ``cfg.logger`` asks for, and name their runs.

metrics.csv and results.json are always written by the run itself; this module adds
TensorBoard and W&B. Neither library is imported here: each logger imports its own when
it starts, so ``logger=none`` costs nothing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from reslab.config.overrides import is_placement, override_key
from reslab.errors import ConfigError
from reslab.tracking.base import RunLogger

LOGGERS = ("tensorboard", "wandb")
_MODE_ALIASES = {"dryrun": "offline", "run": "online"}
_MAX_NAME = 128


@dataclass
class RunInfo:
    """What a dashboard needs to know about the job beyond its config."""

    name: str
    group: str | None = None
    overrides: list[str] = field(default_factory=list)


def run_name(model: str | None, overrides: list[str], fallback: str) -> str:
    """``resnet-depth=20`` from ``model=resnet depth=20``: the model, then what else was set."""
    kept = [
        o for o in overrides if not is_placement(override_key(o)) and override_key(o) != "model"
    ]
    if not kept:
        return fallback
    return "-".join([model or "run", ",".join(kept)])[:_MAX_NAME]


def sweep_group(sweep_dir: str | Path) -> str:
    """The sweep's name from its folder: outputs/multirun/2024-05-01/12-00-00 -> 2024-05-01_12-00-00."""
    parts = Path(sweep_dir).parts
    if "multirun" in parts[:-1]:
        last = len(parts) - 1 - parts[::-1].index("multirun")
        return "_".join(parts[last + 1 :])
    return Path(sweep_dir).name


def run_info_from_hydra(hydra_cfg: Any, cfg: DictConfig) -> RunInfo:
    """Name and group of the current Hydra job; a multirun's jobs share the sweep as group."""
    overrides = list(hydra_cfg.overrides.task)
    model = hydra_cfg.runtime.choices.get("model")
    info = RunInfo(name=run_name(model, overrides, str(cfg.get("name") or model)))
    info.overrides = overrides
    if hydra_cfg.mode.name == "MULTIRUN":
        info.group = sweep_group(hydra_cfg.sweep.dir)
    return info


def build_loggers(cfg: DictConfig, run_dir: Path, info: RunInfo | None = None) -> list[RunLogger]:
    """The TensorBoard and W&B loggers that ``cfg.logger`` turns on, in that order."""
    settings = cfg.get("logger") or {}
    unknown = [k for k in settings if k not in LOGGERS]
    if unknown:
        raise ConfigError(
            f"logger.{unknown[0]} is not a logger; choose from {', '.join(LOGGERS)} "
            "or pick a preset with logger=default|tensorboard|wandb|none"
        )
    run_dir = Path(run_dir)
    info = info or RunInfo(name=str(cfg.get("name") or "run"))
    loggers: list[RunLogger] = []
    tb = settings.get("tensorboard")
    if tb:
        from reslab.tracking.tensorboard_logger import TensorBoardLogger

        loggers.append(
            TensorBoardLogger(
                run_dir / tb.get("dir", "tensorboard"), figures=tb.get("figures", True)
            )
        )
    wb = settings.get("wandb")
    if wb:
        mode = wandb_mode(wb.get("mode"))
        if mode != "disabled":
            from reslab.tracking.wandb_logger import WandbLogger

            loggers.append(
                WandbLogger(
                    run_dir,
                    mode=mode,
                    project=wb.get("project"),
                    entity=wb.get("entity"),
                    name=wb.get("name") or info.name,
                    group=wb.get("group") or info.group,
                    tags=[str(t) for t in [*(cfg.get("tags") or []), *(wb.get("tags") or [])]],
                    config=_resolved(cfg),
                    figures=wb.get("figures", True),
                    init_timeout=float(wb.get("init_timeout", 90)),
                )
            )
    return loggers


def wandb_mode(value: Any) -> str:
    """online | offline | disabled; unset means offline, so nothing needs a network or account."""
    mode = str(value or os.environ.get("WANDB_MODE") or "offline").lower()
    mode = _MODE_ALIASES.get(mode, mode)
    if mode not in ("online", "offline", "disabled"):
        raise ConfigError(
            f"logger.wandb.mode={value} is not a W&B mode; use online, offline or disabled"
        )
    return mode


def _resolved(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config; left unresolved where an interpolation cannot be resolved here."""
    try:
        return OmegaConf.to_container(cfg, resolve=True)
    except Exception:
        return OmegaConf.to_container(cfg, resolve=False)
