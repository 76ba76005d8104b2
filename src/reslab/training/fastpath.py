"""The GPU fast path's model-side switches: channels_last, torch.compile, DDP wrapping.

The trainer keeps the plain module for checkpoints and weights; the steps call what
``step_models`` returns, which may be compiled and/or wrapped in DistributedDataParallel.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from reslab.errors import ConfigError
from reslab.training.distributed import DistEnv, wrap


def use_channels_last(setting: Any, model: nn.Module, device: torch.device) -> bool:
    """``auto``: on for conv nets on CUDA, where NHWC convolutions are faster; off elsewhere."""
    if setting is None or str(setting).lower() == "auto":
        has_conv = any(isinstance(m, nn.Conv2d) for m in model.modules())
        return has_conv and device.type == "cuda"
    if isinstance(setting, bool):
        return setting
    raise ConfigError(f"trainer.channels_last={setting!r} is invalid; use auto, true or false")


def step_models(
    model: nn.Module,
    env: DistEnv,
    device: torch.device,
    *,
    compile: bool = False,
    sync_batchnorm: bool = False,
) -> tuple[nn.Module, nn.Module]:
    """What the training step and the evaluation call: (train_model, eval_model).

    Evaluation uses the module without DDP: ranks may see different numbers of eval batches,
    and DDP's forward would expect them to move in lockstep.
    """
    train_model = wrap(model, env, device, sync_batchnorm)
    if not compile:
        return train_model, model
    # Compile the DDP wrapper, as PyTorch recommends, so that its bucketed all-reduce overlaps.
    compiled_train = torch.compile(train_model)
    compiled_eval = compiled_train if train_model is model else torch.compile(model)
    return compiled_train, compiled_eval
