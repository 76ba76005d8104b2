"""Weights & Biases: one W&B run per training run, its files inside ``<run>/wandb/``.

The run starts in ``log_hparams`` rather than in the constructor, so a W&B that cannot start
fails inside the logger group, which reports it once and trains on without it. Every run is
finished, also a failed one; ``reinit="finish_previous"`` makes sure the next job of a
multirun in the same process gets a run of its own even if a previous one was left open.
"""

from __future__ import annotations

import logging
import math
import numbers
from pathlib import Path
from typing import Any

from reslab.tracking.base import RunLogger

log = logging.getLogger(__name__)

MODES = ("online", "offline", "disabled")
_SUCCESS = {"completed", "stopped_early"}
_SUMMARY_SKIP = {"class_report", "traceback"}


class WandbLogger(RunLogger):
    name = "wandb"

    def __init__(
        self,
        run_dir: Path,
        *,
        mode: str = "offline",
        project: str | None = "reslab",
        entity: str | None = None,
        name: str | None = None,
        group: str | None = None,
        tags: list[str] | None = None,
        config: dict[str, Any] | None = None,
        job_type: str = "train",
        figures: bool = True,
        init_timeout: float = 90.0,
    ) -> None:
        self.run_dir = Path(run_dir)
        self.mode = mode
        self.project = project
        self.entity = entity
        self.run_name = name
        self.group = group
        self.tags = list(tags or [])
        self.config = dict(config or {})
        self.job_type = job_type
        self.figures = figures
        self.init_timeout = init_timeout
        self.run = None

    def log_hparams(self, params: dict[str, Any]) -> None:
        import wandb

        self.run = wandb.init(
            project=self.project,
            entity=self.entity,
            dir=str(self.run_dir),
            name=self.run_name,
            group=self.group,
            job_type=self.job_type,
            tags=run_tags(params, self.tags),
            config={**self.config, "run": params},
            mode=self.mode,
            reinit="finish_previous",
            settings=wandb.Settings(init_timeout=self.init_timeout),
        )
        # Charts plot against the epoch, whatever W&B's own step counter says.
        self.run.define_metric("epoch")
        self.run.define_metric("*", step_metric="epoch")
        where = self.run.url if self.mode == "online" else self.run.dir
        log.info("W&B run %s (%s): %s", self.run.name, self.mode, where)

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        self.run.log({**metrics, "epoch": step})

    def log_figure(self, tag: str, figure: Any, step: int) -> None:
        if self.figures:
            import wandb

            self.run.log({tag: wandb.Image(figure), "epoch": step})

    def log_summary(self, summary: dict[str, Any]) -> None:
        # The same keys and values as results.json: val/* are the best epoch's, test/* once.
        self.run.summary.update(
            {k: v for k, v in summary.items() if k not in _SUMMARY_SKIP and _is_plain(v)}
        )

    def finish(self, status: str) -> None:
        if self.run is None:
            return
        run, self.run = self.run, None
        if self.mode == "offline":
            log.info("W&B offline run saved; upload it with: wandb sync %s", Path(run.dir).parent)
        run.finish(exit_code=0 if status in _SUCCESS else 1)


def run_tags(params: dict[str, Any], extra: list[str]) -> list[str]:
    """Model, depth and dataset first, then the run's own tags; no duplicates."""
    described = [
        params.get("model"),
        None if params.get("depth") is None else f"depth={params['depth']}",
        params.get("dataset"),
    ]
    tags = [str(t) for t in [*described, *extra] if t not in (None, "")]
    return [t[:64] for t in dict.fromkeys(tags)]  # W&B refuses tags over 64 characters


def _is_plain(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    return isinstance(value, (str, bool, numbers.Integral))
