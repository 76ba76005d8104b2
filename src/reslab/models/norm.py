"""Optional normalisation layers chosen by name in the config."""

from __future__ import annotations

from torch import nn

from reslab.errors import ConfigError

NORMS_1D = ("none", "batch", "layer")


def norm_1d(kind: str | None, features: int) -> nn.Module:
    kind = kind or "none"
    if kind == "none":
        return nn.Identity()
    if kind == "batch":
        return nn.BatchNorm1d(features)
    if kind == "layer":
        return nn.LayerNorm(features)
    raise ConfigError(f"model.norm={kind!r} is unknown; choose one of {', '.join(NORMS_1D)}")
