"""Shared fixtures: compose configs in-process, or run train.py as a user would."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from omegaconf import DictConfig

from reslab.config.compose import compose_train_config

ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = ROOT / "configs"

# Two cores: one intra-op thread per test process keeps runs fast and repeatable.
torch.set_num_threads(1)


def compose_config(*overrides: str, run_dir: Path | None = None) -> DictConfig:
    """Compose configs/train.yaml as train.py would."""
    return compose_train_config(CONFIG_DIR, list(overrides), run_dir)


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


def signal_after_first_epoch(
    *args: str, sig: int = signal.SIGTERM, first_epoch: str = "epoch 1/", occurrence: int = 1
) -> tuple[subprocess.Popen, str]:
    """Start ``train.py args``, send ``sig`` once a first epoch is logged for the
    ``occurrence``-th time (the n-th job of a sweep), wait for it to exit; returns the
    finished process and what it wrote to stderr after that."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "train.py"), *args],
        cwd=ROOT,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.time() + 120
        seen = 0
        for line in proc.stderr:
            seen += line.startswith(first_epoch)
            if seen == occurrence or time.time() > deadline:
                break
        proc.send_signal(sig)
        rest = proc.communicate(timeout=60)[1]
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc, rest


@pytest.fixture
def cli():
    return run_cli
