"""Shared fixtures: compose configs in-process, or run train.py as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = ROOT / "configs"

# Two cores: one intra-op thread per test process keeps runs fast and repeatable.
torch.set_num_threads(1)


def compose_config(*overrides: str, run_dir: Path | None = None) -> DictConfig:
    """Compose configs/train.yaml as train.py would, with Hydra's runtime set so ${hydra:...} resolves."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name="train", overrides=list(overrides), return_hydra_config=True)
    if run_dir is not None:
        with open_dict(cfg):
            cfg.hydra.runtime.output_dir = str(run_dir)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


@pytest.fixture
def compose_cfg():
    return compose_config


def run_cli(
    *args: str,
    cwd: Path = ROOT,
    env: dict | None = None,
    timeout: int = 300,
    script: str = "train.py",
):
    """Run a project script in a fresh process, the way a user types it."""
    full_env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "WANDB_MODE": "disabled",
        "PYTHONUNBUFFERED": "1",
    }
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, str(ROOT / script), *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def cli():
    return run_cli
