"""Compose configs/train.yaml outside ``@hydra.main`` (tests, benchmarks, scripts)."""

from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

import reslab.config.overrides  # noqa: F401  (registers the resolver train.yaml uses)


def compose_train_config(
    config_dir: Path, overrides: list[str], run_dir: Path | None = None
) -> DictConfig:
    """The config train.py would get, with Hydra's runtime set so ``${hydra:...}`` resolves."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(config_dir), version_base="1.3"):
        cfg = compose(config_name="train", overrides=list(overrides), return_hydra_config=True)
    if run_dir is not None:
        with open_dict(cfg):
            cfg.hydra.runtime.output_dir = str(run_dir)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg
