"""Find the checkpoint a run continues from, and refuse one whose model or data differ."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from reslab.errors import ConfigError, ReslabError, ResumeRefused
from reslab.statuses import UNFINISHED
from reslab.training.checkpoint import find_checkpoint, load_checkpoint
from reslab.training.schedule import BUDGET_KEYS, budget_sets_length

log = logging.getLogger(__name__)

# Keys that define what is trained on what, and how: the checkpoint's optimizer and schedule
# state would silently override a changed optimizer or scheduler. Anything else (the epoch
# budget, loggers, devices) may change, except the budget when it sets the schedule's length.
MUST_MATCH = (
    "model",
    "depth",
    "width",
    "dataset.name",
    "dataset.val_fraction",
    "dataset.split_seed",
    "dataset.train_size",
    "dataset.standardize",
    "dataset.batch_size",
    "dataset.augment",
    "dataset.labels",
    "dataset.extra",
    "dataset.image_size",
    "dataset.channels",
    "dataset.interpolation",
    "dataset.test_fraction",
    "optimizer",
    "scheduler",
    "seed",
)
# What a checkpoint written before a key existed trained with.
LEGACY_DEFAULTS = {"dataset.train_size": None, "dataset.standardize": True}


def checkpoint_path(resume: str | Path) -> Path:
    """``resume`` may name a run folder (its checkpoints/last.pt) or a checkpoint file."""
    try:
        return find_checkpoint(resume, "last")
    except ReslabError as exc:
        raise ConfigError(f"resume={resume}: {exc}") from None


def run_dir_of(resume: str | Path) -> Path:
    """The run folder a resumed run continues to write into."""
    path = Path(resume).expanduser()
    return path if path.is_dir() or path.suffix != ".pt" else path.parent.parent


def saved_overrides(run_dir: Path) -> list[str]:
    """The command-line overrides a run was started with (Hydra keeps them in .hydra/)."""
    path = Path(run_dir) / ".hydra" / "overrides.yaml"
    if not path.is_file():
        return []
    saved = OmegaConf.load(path)
    return [str(o) for o in saved] if isinstance(saved, ListConfig) else []


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(_flatten(item, f"{prefix}{key}."))
        return out
    return {prefix.rstrip("."): value}


def must_match(now: dict, saved: dict) -> tuple[str, ...]:
    """MUST_MATCH, plus the budget when the schedule's length comes from it (cosine, one-cycle)."""
    schedules = (now.get("scheduler"), saved.get("scheduler"))
    if any(budget_sets_length(s) for s in schedules):
        return (*MUST_MATCH, *BUDGET_KEYS)
    return MUST_MATCH


def config_differences(now: dict, saved: dict) -> list[str]:
    """``key (checkpoint X, now Y)`` for every key that must match and differs."""
    flat_now, flat_saved = _flatten(now), _flatten(saved)
    keys = must_match(now, saved)
    diffs = []
    for key in sorted(set(flat_now) | set(flat_saved)):
        if any(key == k or key.startswith(f"{k}.") for k in keys):
            a, b = flat_saved.get(key, LEGACY_DEFAULTS.get(key)), flat_now.get(key)
            if a != b:
                diffs.append(f"{key} (checkpoint {a!r}, now {b!r})")
    if any(d.startswith(BUDGET_KEYS) for d in diffs):
        diffs.append(
            "the schedule's length (scheduler.T_max / total_steps) was set by the checkpoint's "
            "budget, so a resume must keep that budget"
        )
    return diffs


def check_same_run(now: dict, saved: dict, path: Path) -> None:
    """Refuse to continue the checkpoint at ``path`` with a config that would train another run."""
    diffs = config_differences(now, saved)
    if diffs:
        raise ResumeRefused(
            f"cannot resume from {path}: the config differs in {'; '.join(diffs)}; "
            "resume with the original values or start a new run"
        )


def load_resume_state(cfg: DictConfig, run_dir: Path) -> dict | None:
    """The checkpoint to continue from: ``resume=...``, or this folder's own last.pt after an interruption."""
    resume = cfg.get("resume")
    if resume:
        path = checkpoint_path(resume)
    else:
        # A requeued cluster job starts again in the same folder: pick up where it stopped.
        path = run_dir / "checkpoints" / "last.pt"
        results = run_dir / "results.json"
        if not path.is_file() or not results.is_file():
            return None
        try:
            status = json.loads(results.read_text()).get("status")
        except (OSError, ValueError):
            return None
        if status not in UNFINISHED:
            return None
    state = load_checkpoint(path)
    check_same_run(OmegaConf.to_container(cfg, resolve=True), state.get("config") or {}, path)
    log.info("resuming from %s (epoch %d, step %d)", path, state["epoch"], state["global_step"])
    return state
