"""Multi-layer perceptrons: the plain stack and its residual twin.

``depth`` counts Linear layers, the first and the classifier included. The ``depth - 2``
hidden width->width layers come in blocks of two (``ResidualPair``), with an identity
shortcut in the residual variant, so the plain and residual nets have exactly the same
layers and parameter names; a plain net with an odd number of them ends in one more layer.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from reslab.models.depth import require_depth
from reslab.models.norm import norm_1d


class LinearUnit(nn.Sequential):
    """Linear -> optional norm -> ReLU -> optional dropout."""

    def __init__(self, fan_in: int, fan_out: int, norm: str, dropout: float) -> None:
        super().__init__(
            nn.Linear(fan_in, fan_out),
            norm_1d(norm, fan_out),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout) if dropout > 0 else nn.Identity(),
        )


class ResidualPair(nn.Module):
    """Two width->width Linear layers; with ``residual`` the input is added before the last ReLU."""

    def __init__(self, width: int, norm: str, dropout: float, residual: bool) -> None:
        super().__init__()
        self.residual = residual
        self.first = LinearUnit(width, width, norm, dropout)
        self.second = nn.Linear(width, width)
        self.norm = norm_1d(norm, width)
        self.act = nn.ReLU(inplace=True)
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.norm(self.second(self.first(x)))
        if self.residual:
            out = out + x
        return self.drop(self.act(out))


class MLP(nn.Module):
    """``depth`` Linear layers on flattened images; ``residual=True`` gives the ResidualMLP."""

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        depth: int = 3,
        width: int = 256,
        hidden_sizes: Sequence[int] | None = None,
        residual: bool = False,
        norm: str | None = None,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        name = "residual_mlp" if residual else "mlp"
        fan_in = math.prod(int(d) for d in input_shape)
        self.flatten = nn.Flatten()
        if hidden_sizes:
            layers, out = _sized_layers(name, depth, fan_in, hidden_sizes, residual, norm, dropout)
        else:
            layers, out = _uniform_layers(name, depth, fan_in, width, residual, norm, dropout)
        self.depth = depth
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(out, num_classes)
        self.register_load_state_dict_pre_hook(_load_old_layout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(self.flatten(x)))


def _sized_layers(
    name: str,
    depth: int,
    fan_in: int,
    hidden_sizes: Sequence[int],
    residual: bool,
    norm: str | None,
    dropout: float,
) -> tuple[list[nn.Module], int]:
    """Hidden layers of the given widths (the lab's 784-256-128-10); their output width."""
    if residual:
        require_depth(
            name,
            depth,
            False,
            "model.hidden_sizes needs a uniform width; set model.hidden_sizes=null",
        )
    sizes = [fan_in, *map(int, hidden_sizes)]
    # depth is what runs are named, recorded and compared by: it must be the real one.
    require_depth(
        name,
        depth,
        depth == len(sizes),
        f"model.hidden_sizes={list(hidden_sizes)} builds {len(sizes)} weight layers; "
        f"set depth={len(sizes)}",
    )
    return [LinearUnit(a, b, norm, dropout) for a, b in zip(sizes, sizes[1:])], sizes[-1]


def _uniform_layers(
    name: str,
    depth: int,
    fan_in: int,
    width: int,
    residual: bool,
    norm: str | None,
    dropout: float,
) -> tuple[list[nn.Module], int]:
    """``depth - 1`` hidden layers of one width (pairs of them when residual); their output width."""
    if residual:
        require_depth(
            name,
            depth,
            isinstance(depth, int) and depth >= 2 and depth % 2 == 0,
            "the residual MLP needs an even depth >= 2 (2, 4, 6, 8, ...): "
            "input layer + blocks of two + classifier",
        )
    else:
        require_depth(
            name, depth, isinstance(depth, int) and depth >= 1, "any depth >= 1 (1, 2, 3, ...)"
        )
    if depth < 2:
        return [], fan_in
    layers: list[nn.Module] = [LinearUnit(fan_in, width, norm, dropout)]
    hidden = depth - 2
    layers += [ResidualPair(width, norm, dropout, residual) for _ in range(hidden // 2)]
    if hidden % 2:  # plain only: the residual MLP's depth is even
        layers.append(LinearUnit(width, width, norm, dropout))
    return layers, width


def _load_old_layout(module: MLP, state_dict: dict, prefix: str, *_args: object) -> None:
    """Load-time pre-hook: a plain MLP with an odd number of hidden layers used to keep them
    as single units ``features.<i>.<part>``; move them into pairs, in place. The optimizer's
    state follows parameter order, which did not change, so such checkpoints resume too."""
    start = prefix + "features."
    pairs = [i for i, m in enumerate(module.features) if isinstance(m, ResidualPair)]
    hidden = 2 * len(pairs) + 1
    if (
        not pairs
        or len(module.features) != len(pairs) + 2
        or f"{start}{hidden}.0.weight" not in state_dict
    ):
        return  # not the old layout; PyTorch names any key that does not fit
    for old in range(1, hidden + 1):
        pair, second = divmod(old + 1, 2)  # hidden layers 1, 2 -> pair 1; 3, 4 -> pair 2; ...
        for key in [k for k in state_dict if k.startswith(f"{start}{old}.")]:
            part, _, rest = key[len(f"{start}{old}.") :].partition(".")
            if old == hidden:
                new = f"{len(pairs) + 1}.{part}"
            elif not second:
                new = f"{pair}.first.{part}"
            else:
                new = f"{pair}.{'second' if part == '0' else 'norm'}"
            state_dict[f"{start}{new}.{rest}"] = state_dict.pop(key)
