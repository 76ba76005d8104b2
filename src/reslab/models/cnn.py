"""The lab's plain CNN: conv + ReLU stages, 2x2 max-pooling after every stage.

``depth`` counts weight layers as everywhere in reslab. With ``head="fc"`` (the lab's
net) the conv layers are followed by a fully connected layer of ``fc_width`` units with
dropout and the classifier, so ``depth - 2`` layers are convolutions. With ``head="gap"``
the features are global-average-pooled straight into the classifier (``depth - 1``
convs), which is what class activation maps need.

By default the convs are 3x3 and their channels start at ``width`` and double after every
stage of ``layers_per_stage`` convs (up to ``max_width``). ``channels`` lists every conv's
width instead, and ``kernel_size`` sets their size (padding keeps the resolution), so the
CIFAR-10 course's net is ``channels=[32,64,64] kernel_size=5 layers_per_stage=1
fc_width=1000`` at depth 5.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from reslab.errors import ConfigError
from reslab.models.depth import require_depth

HEADS = ("fc", "gap")


class CNN(nn.Module):
    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        depth: int = 6,
        width: int = 32,
        max_width: int = 256,
        layers_per_stage: int = 2,
        head: str = "fc",
        fc_width: int = 128,
        dropout: float = 0.5,
        norm: str | None = None,
        kernel_size: int = 3,
        channels: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        if head not in HEADS:
            raise ConfigError(f"model.head={head!r} is unknown; choose one of {', '.join(HEADS)}")
        if norm not in (None, "none", "batch"):
            raise ConfigError(f"model.norm={norm!r} is unknown for cnn; choose none or batch")
        extra = 2 if head == "fc" else 1
        n_conv = _conv_count(depth, extra, head, channels)
        self.depth = depth
        self.head = head
        self.features, out_channels, (map_h, map_w) = _conv_stages(
            (int(input_shape[0]), int(input_shape[1]), int(input_shape[2])),
            [int(c) for c in channels] if channels else [width] * n_conv,
            grow=not channels,
            max_width=max_width,
            layers_per_stage=layers_per_stage,
            kernel_size=kernel_size,
            norm=norm,
        )
        if head == "fc":
            self.pool = nn.Identity()
            self.classifier = nn.Sequential(
                nn.Flatten(),
                nn.Linear(out_channels * map_h * map_w, fc_width),
                nn.ReLU(inplace=True),
                nn.Dropout(dropout),
                nn.Linear(fc_width, num_classes),
            )
        else:
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(out_channels, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(self.features(x)))


def _conv_count(depth: int, extra: int, head: str, channels: Sequence[int] | None) -> int:
    """How many convs ``depth`` leaves after the head, checked against ``channels``."""
    if channels:
        n = len(channels) + extra
        require_depth(
            "cnn",
            depth,
            depth == n,
            f"model.channels={list(channels)} with head={head} builds {n} weight layers; "
            f"set depth={n}",
        )
        return len(channels)
    require_depth(
        "cnn",
        depth,
        isinstance(depth, int) and depth >= extra + 1,
        f"with head={head} the CNN needs depth >= {extra + 1} "
        f"({extra} non-conv layer{'s' if extra > 1 else ''} + at least one conv)",
    )
    return depth - extra


def _conv_stages(
    shape: tuple[int, int, int],
    widths: list[int],
    *,
    grow: bool,
    max_width: int,
    layers_per_stage: int,
    kernel_size: int,
    norm: str | None,
) -> tuple[nn.Sequential, int, tuple[int, int]]:
    """Conv (+ BatchNorm) + ReLU per entry of ``widths``; 2x2 max-pooling after every stage
    while the maps are at least 4 pixels high and wide. With ``grow`` the channels double at
    each pooling (up to ``max_width``): resolution is traded for channels while there is some
    left. Returns the layers, their output channels and the maps' (height, width)."""
    channels, height, width = shape
    layers: list[nn.Module] = []
    scale = 1
    for i, planned in enumerate(widths):
        out_channels = min(planned * scale, max_width) if grow else planned
        padding = kernel_size // 2
        layers.append(
            nn.Conv2d(channels, out_channels, kernel_size, padding=padding, bias=norm != "batch")
        )
        if norm == "batch":
            layers.append(nn.BatchNorm2d(out_channels))
        layers.append(nn.ReLU(inplace=True))
        channels = out_channels
        if (i + 1) % layers_per_stage == 0 and min(height, width) >= 4:
            layers.append(nn.MaxPool2d(2))
            height, width = height // 2, width // 2
            scale *= 2
    return nn.Sequential(*layers), channels, (height, width)
