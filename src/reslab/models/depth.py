"""How depth is counted (weight layers on the longest path) and checked."""

from __future__ import annotations

from torch import nn

from reslab.errors import ConfigError


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def weight_layer_depth(model: nn.Module) -> int:
    """Number of Linear/Conv layers; equals depth for the sequential-path models here."""
    return sum(isinstance(m, (nn.Linear, nn.Conv2d)) for m in model.modules())


def require_depth(model: str, depth: int, ok: bool, valid: str) -> None:
    """Refuse a depth a model cannot build, naming the values it can."""
    if not isinstance(depth, int) or isinstance(depth, bool) or not ok:
        raise ConfigError(f"depth={depth} is not valid for model {model}: {valid}")
