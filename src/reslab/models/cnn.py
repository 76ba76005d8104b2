"""The lab's plain CNN: 3x3 conv + ReLU stages that double the channels, 2x2 max-pooling after every stage.

``depth`` counts weight layers as everywhere in reslab. With ``head="fc"`` (the lab's
net) the conv layers are followed by a 128-unit fully connected layer with dropout and
the classifier, so ``depth - 2`` layers are convolutions. With ``head="gap"`` the
features are global-average-pooled straight into the classifier (``depth - 1`` convs),
which is what class activation maps need.
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
    ) -> None:
        super().__init__()
        if head not in HEADS:
            raise ConfigError(f"model.head={head!r} is unknown; choose one of {', '.join(HEADS)}")
        extra = 2 if head == "fc" else 1
        require_depth(
            "cnn",
            depth,
            isinstance(depth, int) and depth >= extra + 1,
            f"with head={head} the CNN needs depth >= {extra + 1} "
            f"({extra} non-conv layer{'s' if extra > 1 else ''} + at least one conv)",
        )
        if norm not in (None, "none", "batch"):
            raise ConfigError(f"model.norm={norm!r} is unknown for cnn; choose none or batch")
        self.depth = depth
        self.head = head
        channels, size = int(input_shape[0]), int(input_shape[1])
        out_channels = width
        layers: list[nn.Module] = []
        n_conv = depth - extra
        for i in range(n_conv):
            layers.append(nn.Conv2d(channels, out_channels, 3, padding=1, bias=norm != "batch"))
            if norm == "batch":
                layers.append(nn.BatchNorm2d(out_channels))
            layers.append(nn.ReLU(inplace=True))
            channels = out_channels
            end_of_stage = (i + 1) % layers_per_stage == 0
            if end_of_stage and size >= 4:
                # Pool and widen only while there is resolution left to trade for channels.
                layers.append(nn.MaxPool2d(2))
                size //= 2
                out_channels = min(out_channels * 2, max_width)
        self.features = nn.Sequential(*layers)
        if head == "fc":
            self.pool = nn.Identity()
            flat = channels * size * size
            self.classifier = nn.Sequential(
                nn.Flatten(),
                nn.Linear(flat, fc_width),
                nn.ReLU(inplace=True),
                nn.Dropout(dropout),
                nn.Linear(fc_width, num_classes),
            )
        else:
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(channels, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(self.features(x)))
