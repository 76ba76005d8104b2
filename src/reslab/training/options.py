"""The Trainer's settings in the groups they belong to: where the steps run, how one step
runs, and when fit ends. Each has defaults a test can build by hand."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from reslab.training.distributed import SINGLE, DistEnv
from reslab.training.early_stopping import EarlyStopping
from reslab.training.precision import Precision


@dataclass(frozen=True)
class Placement:
    """Where the run computes: its device and precision, and its place in a process group."""

    device: torch.device = torch.device("cpu")
    precision: Precision = field(default_factory=lambda: Precision(None, "cpu"))
    dist: DistEnv = SINGLE


@dataclass(frozen=True)
class StepOptions:
    """How a training step runs: gradient clipping, memory layout, compilation, BatchNorm
    statistics over all ranks."""

    grad_clip: float | None = None
    channels_last: bool = False
    compile: bool = False
    sync_batchnorm: bool = False


@dataclass
class Stopping:
    """When fit ends: the epoch budget and early stopping on the monitored metric; and after
    how many epochs of rising val/loss under falling train/loss the overfitting warning fires."""

    max_epochs: int
    early_stopping: EarlyStopping = field(default_factory=lambda: EarlyStopping("val/loss"))
    overfitting_epochs: int = 3
