"""A finished run read back from its folder: its config, a checkpoint and the model it trained.

Shared by ``scripts/explain.py`` and ``scripts/evaluate.py``, so both load a run one way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from torch import nn

from reslab.config.validate import build
from reslab.data.registry import declared_shape
from reslab.errors import ConfigError, ReslabError
from reslab.training.checkpoint import find_checkpoint


def load_run_config(run_dir: Path, state: dict | None = None) -> DictConfig:
    """The run's config as it trained: the resolved copy inside its checkpoint, else
    ``.hydra/config.yaml`` (where Hydra-only interpolations such as the name cannot resolve)."""
    if state is not None and isinstance(state.get("config"), dict):
        return OmegaConf.create(state["config"])
    path = run_dir / ".hydra" / "config.yaml"
    if not path.is_file():
        raise ReslabError(f"{run_dir} has no .hydra/config.yaml; point run= at a reslab run folder")
    cfg = OmegaConf.load(path)
    try:
        cfg.get("name")
    except Exception:
        cfg.name = run_dir.name
    return cfg


def checkpoint_path(run_dir: Path, which: str) -> Path:
    """The ``checkpoint=`` option: ``best``/``last`` of the run, else a path to a .pt file."""
    if which in ("best", "last"):
        return find_checkpoint(run_dir, which)
    return find_checkpoint(which)


def input_shape(cfg: DictConfig, data: Any = None) -> tuple[list[int], int]:
    """Input shape and number of classes: the data's, else those the dataset's definition gives."""
    if data is not None:
        return list(data.input_shape), data.num_classes
    known = declared_shape(cfg.dataset)
    if known is None:
        name = cfg.dataset.get("name")
        raise ConfigError(f"dataset {name!r} has no known input shape; explain it with its data")
    return list(known[0]), known[1]


def build_model(
    cfg: DictConfig, shape: list[int], num_classes: int, state: dict | None
) -> nn.Module:
    """The run's model for ``shape``/``num_classes``, with ``state``'s weights when given."""
    model = build(cfg.model, input_shape=shape, num_classes=num_classes)
    if state is not None:
        try:
            model.load_state_dict(state["model"])  # the trainer saves the plain module's
        except RuntimeError as exc:  # size mismatches: another input shape or class count
            raise ConfigError(
                f"the checkpoint's weights do not fit this model for {tuple(shape)} inputs and "
                f"{num_classes} classes ({str(exc).splitlines()[-1].strip()[:160]}); use data "
                "of the shape and classes the run trained on"
            ) from None
    return model
