"""Sweeps: every job runs, a re-run finishes what a sweep left, and the end says what happened.

Hydra's sweepers stop at the first failed job's exception once its batch is done, without a
summary. reslab's task function therefore records a failure in the job's results.json and
returns; ``SweepSummary`` (configured under ``hydra.callbacks`` in configs/train.yaml) reads the
job folders when the sweep ends, prints the summary, writes ``summary.json`` into the sweep
folder and exits non-zero when any job failed. It reads files rather than Hydra's in-memory
job returns so that it sees the same thing under every launcher (basic, joblib, submitit).

Re-running a sweep into its own folder continues it. A job's folder is found by its
overrides, not its number (``job_folder``, the resolver behind ``hydra.sweep.subdir``), so a
sweep that gains values (``depth=8,20`` -> ``depth=8,20,56``) finds its old jobs; a finished
job is skipped, an interrupted one resumes from its last.pt, a failed or new one runs.
"""

from __future__ import annotations

import json
import sys
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from reslab.statuses import FAILED, FINISHED, UNFINISHED

JOB_FOLDER_RESOLVER = "reslab_job_folder"
# What a re-run does with a job, by the status its folder held when the sweep started.
ACTION_BY_STATUS = {**dict.fromkeys(FINISHED, "skipped"), **dict.fromkeys(UNFINISHED, "resumed")}


@dataclass
class JobOutcome:
    """One job folder of a sweep and how it ended."""

    job: str
    status: str
    error: str | None = None
    # What this invocation did: run, resumed, skipped; "earlier" for a job it did not launch.
    action: str = "run"

    @property
    def ok(self) -> bool:
        return self.status in FINISHED


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


def job_folder(sweep_dir: str, num: int | str, override_dirname: str) -> str:
    """The sub-folder of ``sweep_dir`` a job writes into: the earlier job folder with the same
    overrides when there is one (whatever its number), else ``<num>_<overrides>``."""
    for folder in job_dirs(Path(sweep_dir)):
        number, _, overrides = folder.name.partition("_")
        if number.isdigit() and overrides == override_dirname:
            return folder.name
    return f"{num}_{override_dirname}"


if not OmegaConf.has_resolver(JOB_FOLDER_RESOLVER):
    # Registered on import: the task function imports this module in every launcher's worker
    # before Hydra resolves hydra.sweep.subdir there.
    OmegaConf.register_new_resolver(JOB_FOLDER_RESOLVER, job_folder)


def finished_status(run_dir: Path) -> str | None:
    """The status of a job folder that already holds a finished run (a re-run skips it)."""
    status = read_status(run_dir)
    return status if status in FINISHED else None


def read_results(run_dir: Path) -> dict[str, Any]:
    """A job's results.json; empty when there is none or it cannot be read."""
    try:
        results = json.loads((Path(run_dir) / "results.json").read_text())
    except (OSError, ValueError):
        return {}
    return results if isinstance(results, dict) else {}


def read_status(run_dir: Path) -> str | None:
    """results.json's status; None when there is no readable results.json."""
    status = read_results(run_dir).get("status")
    return None if status is None else str(status)


def monitored_value(run_dir: Path, monitor: str) -> float | None:
    """The monitored metric of a finished job, as the task function returns it to Hydra."""
    value = read_results(run_dir).get(monitor)
    return float(value) if isinstance(value, (int, float)) else None


def job_outcome(job_dir: Path) -> JobOutcome:
    """Status and error from the job's results.json; a job without one died before writing it."""
    path = job_dir / "results.json"
    if not path.is_file():
        return JobOutcome(
            job_dir.name, FAILED, "no results.json: the job died early, see train.log"
        )
    try:
        results = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        return JobOutcome(job_dir.name, FAILED, f"unreadable results.json ({exc})")
    return JobOutcome(job_dir.name, str(results.get("status", "unknown")), results.get("error"))


def record_failure(run_dir: Path, exc: BaseException, cfg: DictConfig | None = None) -> None:
    """Write a failed results.json for a job that broke before training could write its own,
    with the job's model, depth, ... so that the report can place it."""
    from reslab.tracking.results import describe, write_json

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
            "status": FAILED,
            **facts,
            "error": f"{exc.__class__.__name__}: {exc}".strip(),
            "traceback": "".join(traceback.format_exception(exc)),
        },
    )


def format_summary(sweep_dir: Path, outcomes: list[JobOutcome]) -> str:
    failed = [o for o in outcomes if not o.ok]
    counts = action_counts(outcomes)
    lines = [
        f"sweep {sweep_dir}: {len(outcomes) - len(failed)} of {len(outcomes)} jobs succeeded, "
        f"{len(failed)} failed ({counts['run']} run, {counts['resumed']} resumed, "
        f"{counts['skipped']} skipped as finished before"
        + (f", {counts['earlier']} kept from an earlier sweep" if counts["earlier"] else "")
        + ")"
    ]
    lines += [f"  ok      {o.job} ({o.status}, {o.action})" for o in outcomes if o.ok]
    lines += [f"  FAILED  {o.job}: {o.error or o.status}" for o in failed]
    if outcomes:
        lines.append(f"compare them with: python scripts/compare.py {sweep_dir}")
    return "\n".join(lines)


def action_counts(outcomes: list[JobOutcome]) -> dict[str, int]:
    actions = [o.action for o in outcomes]
    return {a: actions.count(a) for a in ("run", "resumed", "skipped", "earlier")}


def folder_stamp(job_dir: Path) -> int | None:
    """When Hydra last launched the job: it rewrites .hydra/overrides.yaml at every launch."""
    try:
        return (job_dir / ".hydra" / "overrides.yaml").stat().st_mtime_ns
    except OSError:
        return None


def job_action(job_dir: Path, before: dict[str, tuple[int | None, str | None]]) -> str:
    """What this sweep did with a job, from its folder's state when the sweep started."""
    if job_dir.name not in before:
        return "run"
    stamp, status = before[job_dir.name]
    if folder_stamp(job_dir) == stamp:
        return "earlier"  # not launched by this sweep (a value dropped from the command)
    return ACTION_BY_STATUS.get(status or FAILED, "run")


class SweepSummary(Callback):
    """At the end of a multirun: print and save what ran, resumed, was skipped and failed; exit
    1 if a job of this sweep failed.

    Keep it last under ``hydra.callbacks``: its exit ends the process.
    """

    def __init__(self, exit_on_failure: bool = True) -> None:
        self.exit_on_failure = exit_on_failure
        self.before: dict[str, tuple[int | None, str | None]] = {}

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        old = job_dirs(sweep_dir)
        self.before = {d.name: (folder_stamp(d), read_status(d)) for d in old}
        if old:
            done = sum(status in FINISHED for _, status in self.before.values())
            print(
                f"continuing the sweep in {sweep_dir}: {len(old)} job folders, {done} finished; "
                "finished jobs are skipped, interrupted ones resume, failed and new ones run",
                file=sys.stderr,
            )

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from reslab.tracking.results import write_json

        sweep_dir = Path(str(config.hydra.sweep.dir))
        outcomes = []
        for job_dir in job_dirs(sweep_dir):
            outcome = job_outcome(job_dir)
            outcome.action = job_action(job_dir, self.before)
            outcomes.append(outcome)
        failed = [o for o in outcomes if not o.ok]
        write_json(
            sweep_dir / "summary.json",
            {
                "jobs": len(outcomes),
                "succeeded": len(outcomes) - len(failed),
                "failed": len(failed),
                **action_counts(outcomes),
                "outcomes": [asdict(o) for o in outcomes],
            },
        )
        # print, not logging: the job log handlers still point into the last job's train.log.
        print(format_summary(sweep_dir, outcomes), file=sys.stderr if failed else sys.stdout)
        if any(o.action != "earlier" for o in failed) and self.exit_on_failure:
            sys.exit(1)
