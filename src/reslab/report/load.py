"""Read the run folders of one or more sweeps: results.json, metrics.csv, the job's overrides."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from reslab.config.overrides import is_placement, override_key
from reslab.errors import ReslabError
from reslab.statuses import FINISHED
from reslab.sweep import job_sort_key
from reslab.tracking.csv_logger import MetricsCSV

# Overrides that define a row's model, depth and seed (placement overrides aside): what is
# left of a run's overrides is its setting.
NOT_A_SETTING = ("seed", "model", "depth", "model.residual", "experiment")


class ReportError(ReslabError):
    """Input the comparison report cannot use (no runs, unknown run, mismatched test sets)."""


@dataclass
class Run:
    """One job folder: its outcome, its per-epoch history and the overrides that made it."""

    folder: Path
    results: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)
    overrides: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.folder.name

    @property
    def ok(self) -> bool:
        return self.results.get("status") in FINISHED

    @property
    def variant(self) -> str:
        """mlp, residual_mlp, cnn, resnet; ``resnet (plain)`` when the shortcuts were switched off."""
        model = str(self.results.get("model") or "?")
        residual = bool(self.results.get("residual"))
        if residual == ("res" in model):
            return model
        return f"{model} ({'residual' if residual else 'plain'})"

    @property
    def setting(self) -> str:
        """Overrides beyond model, depth and seed (lr=..., width=...): runs that differ there differ."""
        keep = [
            o
            for o in self.overrides
            if override_key(o) not in NOT_A_SETTING and not is_placement(override_key(o))
        ]
        return ",".join(sorted(o for o in keep if not override_key(o).startswith("hydra")))

    @property
    def depth(self) -> int | None:
        return self.results.get("depth")

    @property
    def seed(self) -> int | None:
        return self.results.get("seed")


def find_run_folders(path: Path) -> list[Path]:
    """Every folder under ``path`` (itself included) that holds a results.json."""
    path = Path(path)
    if not path.exists():
        raise ReportError(
            f"{path} does not exist; pass a sweep folder such as outputs/multirun/<date>/<time>"
        )
    if (path / "results.json").is_file():
        return [path]
    folders = [p.parent for p in path.rglob("results.json")]
    return sorted(folders, key=lambda f: (str(f.parent), *job_sort_key(f)))


def load_run(folder: Path) -> Run:
    try:
        results = json.loads((folder / "results.json").read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ReportError(
            f"cannot read {folder / 'results.json'} ({exc}); delete the folder or rerun the job"
        ) from exc
    metrics = folder / "metrics.csv"
    history = MetricsCSV.read(metrics) if metrics.is_file() else []
    overrides_file = folder / ".hydra" / "overrides.yaml"
    overrides = [str(o) for o in OmegaConf.load(overrides_file)] if overrides_file.is_file() else []
    return Run(folder, results, history, overrides)


def load_runs(paths: list[Path]) -> list[Run]:
    """The runs of every sweep folder given, each folder once, in sweep order."""
    folders: list[Path] = []
    for path in paths:
        found = find_run_folders(Path(path))
        if not found:
            raise ReportError(
                f"no results.json under {path}; pass a sweep folder made by `python train.py -m ...`"
            )
        folders += [f for f in found if f.resolve() not in {g.resolve() for g in folders}]
    return [load_run(f) for f in folders]


def sweep_command(sweep_dir: Path) -> str | None:
    """The command line that made a sweep, from the multirun.yaml Hydra saves in its folder."""
    path = Path(sweep_dir) / "multirun.yaml"
    if not path.is_file():
        return None
    cfg = OmegaConf.load(path)
    task = OmegaConf.select(cfg, "hydra.overrides.task", default=[]) or []
    hydra = OmegaConf.select(cfg, "hydra.overrides.hydra", default=[]) or []
    args = [str(a) for a in [*task, *hydra] if str(a) != "hydra.mode=MULTIRUN"]
    return " ".join(["python train.py -m", *(_quote(a) for a in args)])


def _quote(arg: str) -> str:
    return f"'{arg}'" if any(c in arg for c in " []{}()*$'\"") else arg


def run_config(folder: Path, key: str) -> Any:
    """One value of the job's composed config (.hydra/config.yaml), or None."""
    path = Path(folder) / ".hydra" / "config.yaml"
    if not path.is_file():
        return None
    try:
        return OmegaConf.select(OmegaConf.load(path), key, default=None)
    except Exception:  # an interpolation that only resolves inside Hydra: not worth failing for
        return None
