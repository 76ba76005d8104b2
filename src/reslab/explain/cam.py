"""Class activation maps (Zhou et al. 2016) for models that end in global average pooling.

With feature maps ``A_k`` (the input of the GAP layer) and classifier weights ``w_ck``,
the map of class ``c`` is ``sum_k w_ck A_k``: the logit before averaging, kept per
position. The class-agnostic "global" map weights each channel by its own pooled
activation instead, ``sum_k mean(A_k) A_k``: where the features the image excites most
are strong, whatever class they vote for.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from reslab.explain.state import ExplainError, choose_targets, evaluating, unwrap


@dataclass
class MapResult:
    """Maps at feature-map resolution, with the logits and the class each map explains."""

    maps: torch.Tensor  # (N, h, w)
    logits: torch.Tensor  # (N, K)
    targets: torch.Tensor  # (N,)
    global_maps: torch.Tensor | None = None  # (N, h, w), CAM only

    @property
    def predictions(self) -> torch.Tensor:
        return self.logits.argmax(1)


def gap_head(model: nn.Module) -> tuple[nn.Module, nn.Linear]:
    """The GAP layer and the single Linear classifier after it, or a one-line error saying what to use."""
    net = unwrap(model)
    pool = getattr(net, "pool", None)
    classifier = getattr(net, "classifier", None)
    linears = [m for m in classifier.modules() if isinstance(m, nn.Linear)] if classifier else []
    is_gap = isinstance(pool, nn.AdaptiveAvgPool2d) and pool.output_size in (1, (1, 1))
    if is_gap and len(linears) == 1:
        return pool, linears[0]
    if not any(isinstance(m, nn.Conv2d) for m in net.modules()):
        raise ExplainError(
            f"method=cam needs convolutional feature maps and {type(net).__name__} has none; "
            "use method=weights to see an MLP's first layer"
        )
    raise ExplainError(
        f"method=cam needs a model that ends in global average pooling and one linear layer, "
        f"which this {type(net).__name__} does not; use method=gradcam, or train with model.head=gap"
    )


def class_activation_maps(
    model: nn.Module,
    x: torch.Tensor,
    target: str | int | torch.Tensor = "pred",
    labels: torch.Tensor | None = None,
) -> MapResult:
    """CAM of ``target`` (pred | true | class index) and the global map for a batch of inputs."""
    net = unwrap(model)
    pool, linear = gap_head(net)
    captured: dict[str, torch.Tensor] = {}

    def keep_input(_module: nn.Module, inputs: tuple, _output: torch.Tensor) -> None:
        captured["features"] = inputs[0]

    handle = pool.register_forward_hook(keep_input)
    try:
        with evaluating(net), torch.no_grad():
            logits = net(x).float()
    finally:
        handle.remove()
    features = captured["features"].float()
    targets = choose_targets(target, logits, labels)
    weights = linear.weight.detach().float()[targets]  # (N, C)
    maps = torch.einsum("nc,nchw->nhw", weights, features)
    pooled = features.mean(dim=(2, 3))
    global_maps = torch.einsum("nc,nchw->nhw", pooled, features)
    return MapResult(maps=maps, logits=logits, targets=targets, global_maps=global_maps)
