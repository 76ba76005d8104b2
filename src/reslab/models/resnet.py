"""CIFAR-style ResNet of He et al. 2016 (section 4.2) and its plain twin.

A 3x3 conv stem, three stages of ``n`` BasicBlocks at 16/32/64 channels, global average
pooling and a linear classifier: ``depth = 6n + 2``. Shortcuts are identity (option A:
subsample and zero-pad channels when the shape changes), so they hold no parameters and
``residual=False`` gives a plain net with exactly the same layers and parameter count.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from reslab.models.depth import require_depth

VALID_EXAMPLES = "6n+2 for n >= 1: 8, 14, 20, 32, 44, 56, 110, ..."


class PadShortcut(nn.Module):
    """Option A: take every other pixel and zero-pad the new channels; no parameters."""

    def __init__(self, extra_channels: int) -> None:
        super().__init__()
        self.extra = extra_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, ::2, ::2]
        half = self.extra // 2
        return F.pad(x, (0, 0, 0, 0, half, self.extra - half))


class BasicBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int, residual: bool) -> None:
        super().__init__()
        self.residual = residual
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        changes_shape = stride != 1 or in_planes != planes
        self.shortcut = PadShortcut(planes - in_planes) if changes_shape else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)), inplace=True)
        out = self.bn2(self.conv2(out))
        if self.residual:
            out = out + self.shortcut(x)
        return F.relu(out, inplace=True)


class ResNet(nn.Module):
    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        depth: int = 20,
        width: int = 16,
        residual: bool = True,
    ) -> None:
        super().__init__()
        name = "resnet" if residual else "resnet (plain)"
        ok = isinstance(depth, int) and depth >= 8 and (depth - 2) % 6 == 0
        require_depth(name, depth, ok, f"ResNet needs depth = {VALID_EXAMPLES}")
        n = (depth - 2) // 6
        self.depth = depth
        self.residual = residual
        self.stem = nn.Sequential(
            nn.Conv2d(int(input_shape[0]), width, 3, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
        )
        blocks: list[nn.Module] = []
        in_planes = width
        for stage, planes in enumerate((width, 2 * width, 4 * width)):
            for i in range(n):
                stride = 2 if stage > 0 and i == 0 else 1
                blocks.append(BasicBlock(in_planes, planes, stride, residual))
                in_planes = planes
        self.features = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(in_planes, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.features(self.stem(x)))
        return self.classifier(torch.flatten(x, 1))
