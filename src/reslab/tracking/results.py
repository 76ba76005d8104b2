"""results.json and other JSON files of the run folder, written atomically."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from reslab.training.checkpoint import atomic_write


def _clean(value: Any) -> Any:
    """JSON has no NaN/inf: write them as null rather than produce an unreadable file."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def write_json(path: Path, data: dict[str, Any]) -> None:
    text = json.dumps(_clean(data), indent=2, sort_keys=False)
    atomic_write(path, lambda tmp: tmp.write_text(text + "\n"))


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text())


def describe(cfg: DictConfig) -> dict[str, Any]:
    """The facts a comparison report groups runs by."""
    model = cfg.model
    target = str(model.get("_target_", ""))
    residual = bool(model.get("residual", False))
    family = target.rsplit(".", 1)[-1].lower()
    return {
        "name": cfg.get("name"),
        "label": cfg.get("label"),
        "model": family if family != "mlp" else ("residual_mlp" if residual else "mlp"),
        "residual": residual,
        "depth": cfg.get("depth"),
        "width": cfg.get("width"),
        "dataset": cfg.dataset.name,
        "optimizer": str(cfg.optimizer.get("_target_", "")).rsplit(".", 1)[-1].lower(),
        "lr": cfg.optimizer.get("lr"),
        "batch_size": cfg.dataset.batch_size,
        "seed": cfg.seed,
        "monitor": cfg.monitor,
    }
