"""Grad-CAM (Selvaraju et al. 2017) at any layer whose output is a stack of feature maps.

Channel weights are the spatially averaged gradients of the class score with respect to
the layer's output, ``a_k = mean(dy_c / dA_k)``; the map is ``ReLU(sum_k a_k A_k)``. At the
input of a GAP layer followed by one Linear, ``a_k = w_ck / (h w)``, so before its ReLU
Grad-CAM equals CAM divided by the number of positions.
"""

from __future__ import annotations

import difflib

import torch
from torch import nn

from reslab.explain.cam import MapResult
from reslab.explain.state import ExplainError, choose_targets, evaluating, unwrap

DEFAULT_LAYER = "features"  # the CNN's; a model names its own as ``feature_layer``


def default_layer(model: nn.Module) -> str:
    """The module whose output is the last feature maps, what the head sees (ResNet: layer3)."""
    return getattr(unwrap(model), "feature_layer", DEFAULT_LAYER)


def conv_layer_names(model: nn.Module) -> list[str]:
    """Names a user can pass as ``layer=``: every Conv2d, in forward order."""
    return [name for name, m in unwrap(model).named_modules() if isinstance(m, nn.Conv2d)]


def find_layer(model: nn.Module, name: str | None) -> tuple[str, nn.Module]:
    """The module called ``name`` (default: the last feature maps), or a one-line error
    naming the choices."""
    net = unwrap(model)
    convs = conv_layer_names(net)
    if not convs:
        raise ExplainError(
            f"{type(net).__name__} has no convolutional feature maps for Grad-CAM; "
            "use method=weights to see an MLP's first layer"
        )
    name = name or default_layer(net)
    modules = dict(net.named_modules())
    if name in modules:
        return name, modules[name]
    shown = ", ".join(convs) if len(convs) <= 4 else f"{convs[0]}, {convs[1]} ... {convs[-1]}"
    raise ExplainError(
        f"layer={name} is not a module of {type(net).__name__}; {_hint(net, name, modules)}"
        f"use layer={default_layer(net)} (the last feature maps) or a conv layer: {shown}"
    )


def _hint(net: nn.Module, name: str, modules: dict[str, nn.Module]) -> str:
    """Today's name of a layer named the old way (a ResNet's ``features.8.conv2``), else the
    closest name."""
    renamed = getattr(net, "current_name", lambda _name: None)(name)
    if renamed in modules:
        return f"{name} is now called {renamed}; "
    close = difflib.get_close_matches(name, list(modules), n=1, cutoff=0.6)
    return f"did you mean {close[0]}? " if close else ""


def grad_cam(
    model: nn.Module,
    x: torch.Tensor,
    layer: str | None = None,
    target: str | int | torch.Tensor = "pred",
    labels: torch.Tensor | None = None,
    relu: bool = True,
) -> MapResult:
    """Grad-CAM of ``target`` (pred | true | class index) at the named layer (default: the
    last feature maps, ``layer3`` of a ResNet, ``features`` of a CNN)."""
    net = unwrap(model)
    name, module = find_layer(net, layer)
    captured: dict[str, torch.Tensor] = {}

    def swap_output(_module: nn.Module, _inputs: tuple, output: torch.Tensor) -> torch.Tensor:
        if not isinstance(output, torch.Tensor) or output.dim() != 4:
            shape = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output)
            raise ExplainError(
                f"layer={name} gives {shape}, not (N, C, H, W) feature maps; pick a conv layer "
                f"such as {', '.join(conv_layer_names(net)[-2:]) or default_layer(net)}"
            )
        # A leaf of our own holds the activations: gradients reach it and stop there (no
        # parameter .grad is touched), and later in-place ops (ReLU(inplace=True)) act on
        # the clone handed on, not on the values we keep.
        leaf = output.detach().clone().requires_grad_(True)
        captured["activations"] = leaf
        return leaf.clone()

    handle = module.register_forward_hook(swap_output)
    try:
        # A clone, in case x was made under inference_mode (it could not enter autograd).
        x = x.detach().clone()
        with evaluating(net), torch.enable_grad():
            logits = net(x).float()
            targets = choose_targets(target, logits, labels)
            score = logits.gather(1, targets[:, None]).sum()
            activations = captured.get("activations")
            if activations is None:
                raise ExplainError(f"layer={name} is not used in the forward pass; pick another")
            (grads,) = torch.autograd.grad(score, activations)
    finally:
        handle.remove()
    weights = grads.float().mean(dim=(2, 3))
    maps = torch.einsum("nc,nchw->nhw", weights, activations.detach().float())
    if relu:
        maps = maps.clamp_min(0)
    return MapResult(maps=maps, logits=logits.detach(), targets=targets)
