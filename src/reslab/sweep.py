"""Sweeps: every job runs, the end says what succeeded and what failed, and a failure fails the command.

Hydra's sweepers stop at the first failed job's exception once its batch is done, without a
summary. reslab's task function therefore records a failure in the job's results.json and
returns; ``SweepSummary`` (configured under ``hydra.callbacks`` in configs/train.yaml) reads the
job folders when the sweep ends, prints the summary, writes ``summary.json`` into the sweep
folder and exits non-zero when any job failed. It reads files rather than Hydra's in-memory
job returns so that it sees the same thing under every launcher (basic, joblib, submitit).
"""

from __future__ import annotations

import json
import sys
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from reslab.tracking.results import describe, write_json

SUCCEEDED = ("completed", "stopped_early")


@dataclass
class JobOutcome:
    """One job folder of a sweep and how it ended."""

    job: str
    status: str
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status in SUCCEEDED


def job_dirs(sweep_dir: Path) -> list[Path]:
    """Job folders of a sweep: the sub-folders Hydra saved a ``.hydra/`` config into, by job number."""
    if not sweep_dir.is_dir():
        return []
    found = [p for p in sweep_dir.iterdir() if (p / ".hydra").is_dir()]
    return sorted(found, key=job_sort_key)


def job_sort_key(path: Path) -> tuple[int, str]:
    """Job folders in job order (``2_...`` before ``10_...``), other folders after them."""
    num = path.name.split("_", 1)[0]
    return (int(num) if num.isdigit() else sys.maxsize, path.name)


def job_outcome(job_dir: Path) -> JobOutcome:
    """Status and error from the job's results.json; a job without one died before writing it."""
    path = job_dir / "results.json"
    if not path.is_file():
        return JobOutcome(
            job_dir.name, "failed", "no results.json: the job died early, see train.log"
        )
    try:
        results = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        return JobOutcome(job_dir.name, "failed", f"unreadable results.json ({exc})")
    return JobOutcome(job_dir.name, str(results.get("status", "unknown")), results.get("error"))


def record_failure(run_dir: Path, exc: BaseException, cfg: DictConfig | None = None) -> None:
    """Write a failed results.json for a job that broke before training could write its own,
    with the job's model, depth, ... so that the report can place it."""
    path = Path(run_dir) / "results.json"
    if path.exists():
        return
    facts: dict[str, Any] = {}
    if cfg is not None:
        try:
            facts = describe(cfg)
        except Exception:  # a config too broken to describe still gets its failure recorded
            facts = {}
    write_json(
        path,
        {
            "status": "failed",
            **facts,
            "error": f"{exc.__class__.__name__}: {exc}".strip(),
            "traceback": "".join(traceback.format_exception(exc)),
        },
    )


def format_summary(sweep_dir: Path, outcomes: list[JobOutcome]) -> str:
    failed = [o for o in outcomes if not o.ok]
    lines = [
        f"sweep {sweep_dir}: {len(outcomes) - len(failed)} of {len(outcomes)} jobs succeeded, "
        f"{len(failed)} failed"
    ]
    lines += [f"  ok      {o.job} ({o.status})" for o in outcomes if o.ok]
    lines += [f"  FAILED  {o.job}: {o.error or o.status}" for o in failed]
    if outcomes:
        lines.append(f"compare them with: python scripts/compare.py {sweep_dir}")
    return "\n".join(lines)


class SweepSummary(Callback):
    """At the end of a multirun: print and save what succeeded and failed; exit 1 if anything failed.

    Keep it last under ``hydra.callbacks``: its exit ends the process.
    """

    def __init__(self, exit_on_failure: bool = True) -> None:
        self.exit_on_failure = exit_on_failure

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        old = job_dirs(sweep_dir)
        if old:
            print(
                f"warning: sweep folder {sweep_dir} already holds {len(old)} job folders; "
                "the summary and the report will include them (set hydra.sweep.dir to a new folder)",
                file=sys.stderr,
            )

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        outcomes = [job_outcome(d) for d in job_dirs(sweep_dir)]
        failed = [o for o in outcomes if not o.ok]
        write_json(
            sweep_dir / "summary.json",
            {
                "jobs": len(outcomes),
                "succeeded": len(outcomes) - len(failed),
                "failed": len(failed),
                "outcomes": [asdict(o) for o in outcomes],
            },
        )
        # print, not logging: the job log handlers still point into the last job's train.log.
        print(format_summary(sweep_dir, outcomes), file=sys.stderr if failed else sys.stdout)
        if failed and self.exit_on_failure:
            sys.exit(1)
