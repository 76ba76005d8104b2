"""Weights & Biases: one W&B run per training run, its files inside ``<run>/wandb/``.

The run starts in ``log_hparams`` rather than in the constructor, so a W&B that cannot start
fails inside the logger group, which reports it once and trains on without it. Every run is
finished, also a failed one; ``reinit="finish_previous"`` makes sure the next job of a
multirun in the same process gets a run of its own even if a previous one was left open.

The run id is kept in ``<run>/wandb/run_id``. A resumed training run passes it back to
``wandb.init(id=..., resume="allow")``, so W&B continues the same run instead of starting a
second one; offline, the continuation is a second ``offline-run-*`` folder with the same id,
which ``wandb sync`` uploads after the first, into the same run.
"""

from __future__ import annotations

import logging
import math
import numbers
from pathlib import Path
from typing import Any

from reslab.statuses import FINISHED
from reslab.tracking.base import RunLogger

log = logging.getLogger(__name__)

_SUMMARY_SKIP = {"class_report", "traceback"}
RUN_ID_FILE = "run_id"


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
        self.resume_id: str | None = None

    @property
    def run_id_file(self) -> Path:
        return self.run_dir / "wandb" / RUN_ID_FILE

    def resume(self, step: int) -> None:
        if self.run_id_file.is_file():
            self.resume_id = self.run_id_file.read_text().strip() or None
        if self.resume_id is None:
            log.warning("no W&B run id in %s; the resumed run starts a new W&B run", self.run_dir)

    def log_hparams(self, params: dict[str, Any]) -> None:
        import wandb

        # id=None lets W&B pick one, or take WANDB_RUN_ID from a `wandb agent` sweep.
        self.run = wandb.init(
            id=self.resume_id,
            resume="allow" if self.resume_id else None,
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
            # W&B's own banner stays short; where the run went is logged below, into train.log.
            settings=wandb.Settings(init_timeout=self.init_timeout, quiet=True),
        )
        self.run_id_file.parent.mkdir(parents=True, exist_ok=True)
        self.run_id_file.write_text(self.run.id + "\n")
        # Charts plot against the epoch, whatever W&B's own step counter says.
        self.run.define_metric("epoch")
        self.run.define_metric("*", step_metric="epoch")
        where = self.run.url if self.mode == "online" else Path(self.run.dir).parent
        continued = f", continuing run {self.run.id}" if self.resume_id else ""
        log.info("W&B run %s (%s%s): %s", self.run.name, self.mode, continued, where)

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
        try:
            run.summary["status"] = status  # also for a run that failed before its summary
        finally:
            run.finish(exit_code=0 if status in FINISHED else 1)
        if self.mode == "offline":
            # The folder, not the offline-run-* inside: a resumed run has several, synced in order.
            log.info("W&B offline run saved; upload it with: wandb sync %s", self.run_dir / "wandb")


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
