"""Gradient flow: how large the gradient of each weight layer is, from the input to the classifier.

In a deep plain net the norms shrink (or explode) layer by layer towards the input; with
identity shortcuts they stay level. Layer indices count weight layers as ``depth`` does.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
from torch import nn  # noqa: E402

from reslab.explain.state import unwrap  # noqa: E402


def weight_layers(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """(name, weight) of every Linear/Conv2d in forward order: layer 1 is the first layer."""
    return [
        (name, m.weight)
        for name, m in unwrap(model).named_modules()
        if isinstance(m, (nn.Linear, nn.Conv2d))
    ]


def metric_names(count: int) -> list[str]:
    """``grad_norm/layer_01`` ...: zero-padded so they sort by depth in every dashboard."""
    digits = max(2, len(str(count)))
    return [f"grad_norm/layer_{i:0{digits}d}" for i in range(1, count + 1)]


def norms_of(grads: Sequence[torch.Tensor]) -> torch.Tensor:
    """L2 norm of each gradient as one device tensor (fused where PyTorch offers it)."""
    if hasattr(torch, "_foreach_norm"):
        return torch.stack(torch._foreach_norm(list(grads))).float()
    return torch.stack([g.norm() for g in grads]).float()


def layer_grad_norms(
    model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]
) -> torch.Tensor:
    """Per-layer gradient norm of the cross-entropy loss, averaged over ``batches``, in train mode.

    Measured on a copy, so the model's weights, BatchNorm statistics and ``.grad`` stay untouched.
    """
    net = copy.deepcopy(unwrap(model)).train()
    params = [p for _, p in weight_layers(net)]
    total = None
    count = 0
    for x, y in batches:
        loss = nn.functional.cross_entropy(net(x).float(), y)
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        grads = [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]
        norms = norms_of(grads)
        total = norms if total is None else total + norms
        count += 1
    if total is None:
        raise ValueError("layer_grad_norms needs at least one batch")
    return (total / count).cpu()


def gradient_flow_figure(curves: Mapping[str, Sequence[float]], title: str) -> Figure:
    """Gradient norm against layer index, log scale; ``init`` curves dashed, trained ones solid."""
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    colours: dict[str, str] = {}
    for label, values in curves.items():
        kind = label.split(",")[0]
        colour = colours.setdefault(kind, f"C{len(colours)}")
        style = "--" if "init" in label else "-"
        ax.plot(
            range(1, len(values) + 1), values, style, marker="o", ms=3, color=colour, label=label
        )
    ax.set_yscale("log")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("layer (1 = input side)")
    ax.set_ylabel("gradient norm ||dL/dW||")
    ax.set_title(title, fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
