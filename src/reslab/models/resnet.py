"""CIFAR-style ResNet of He et al. 2016 (section 4.2) and its plain twin.

A 3x3 conv stem, three stages of ``n`` BasicBlocks at 16/32/64 channels, global average
pooling and a linear classifier: ``depth = 6n + 2``. Shortcuts are identity (option A:
subsample and zero-pad channels when the shape changes), so they hold no parameters and
``residual=False`` gives a plain net with exactly the same layers and parameter count.

Modules are named as in torchvision and the paper's code: ``stem``, ``layer1``..``layer3``
(each an ``nn.Sequential`` of blocks with ``conv1``/``bn1``/``conv2``/``bn2``), ``pool``,
``classifier``; block ``j`` of stage ``s`` is ``layer<s>.<j>``, e.g. ``layer3.2.conv2``.
Weights saved before the stages had names (every block in one ``features`` Sequential,
``features.<i>``) still load: block ``i`` is block ``i % n`` of stage ``i // n + 1``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from reslab.errors import ReslabError
from reslab.models.depth import require_depth

VALID_EXAMPLES = "6n+2 for n >= 1: 8, 14, 20, 32, 44, 56, 110, ..."
STAGES = ("layer1", "layer2", "layer3")
OLD_BLOCKS = "features."  # the old layout: all 3n blocks in one Sequential


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
    feature_layer = "layer3"  # the last feature maps, what the head sees: Grad-CAM's default

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
        # Built in forward order, as before the stages had names: a seed gives the same weights.
        self.layer1 = _stage(width, width, n, 1, residual)
        self.layer2 = _stage(width, 2 * width, n, 2, residual)
        self.layer3 = _stage(2 * width, 4 * width, n, 2, residual)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(4 * width, num_classes)
        self._init_weights()
        self.register_load_state_dict_pre_hook(_load_old_layout)

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer3(self.layer2(self.layer1(self.stem(x))))
        return self.classifier(torch.flatten(self.pool(x), 1))

    def current_name(self, old: str) -> str | None:
        """The module or weight that ``old`` (a name in the old ``features.<i>`` layout) is now."""
        return renamed_block(old, len(self.layer1))


def _stage(in_planes: int, planes: int, n: int, stride: int, residual: bool) -> nn.Sequential:
    """``n`` blocks; the first one changes the shape (stride, channels) when the stage does."""
    blocks = [BasicBlock(in_planes, planes, stride, residual)]
    blocks += [BasicBlock(planes, planes, 1, residual) for _ in range(n - 1)]
    return nn.Sequential(*blocks)


def renamed_block(old: str, n: int) -> str | None:
    """``features.<i>[.rest]`` of a ResNet with ``n`` blocks per stage as ``layer<s>.<j>[.rest]``;
    None for a name that is not an old block name."""
    index, _, rest = old.removeprefix(OLD_BLOCKS).partition(".")
    if not old.startswith(OLD_BLOCKS) or not index.isdigit() or int(index) >= 3 * n:
        return None
    stage, block = divmod(int(index), n)
    return f"{STAGES[stage]}.{block}" + (f".{rest}" if rest else "")


def _load_old_layout(module: ResNet, state_dict: dict, prefix: str, *_args: object) -> None:
    """Load-time pre-hook: move an old checkpoint's ``features.<i>.<part>...`` keys to their
    new names, in place, before the stages read their weights. The optimizer's state follows
    parameter order, which did not change, so whole checkpoints resume too."""
    start = prefix + OLD_BLOCKS
    old = {key: key[len(start) :].split(".") for key in state_dict if key.startswith(start)}
    parts = set(module.layer1[0]._modules)  # conv1, bn1, ...: what only a block holds
    if not old or not all(len(k) > 2 and k[0].isdigit() and k[1] in parts for k in old.values()):
        return  # not an old ResNet's weights (a CNN's?): PyTorch names the keys that do not fit
    blocks = 1 + max(int(k[0]) for k in old.values())
    n = len(module.layer1)
    if blocks != 3 * n:
        raise ReslabError(
            f"these weights are a ResNet of depth {2 * blocks + 2} saved with the old "
            f"features.<i> names; this model has depth {module.depth}: build it with "
            f"depth={2 * blocks + 2}"
        )
    for key in old:
        state_dict[prefix + renamed_block(key[len(prefix) :], n)] = state_dict.pop(key)
