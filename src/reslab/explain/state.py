"""Explaining a model must leave it as it was: same modes, no hooks, no gradients, same weights."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from reslab.errors import ReslabError


class ExplainError(ReslabError):
    """A model or layer that the asked-for explanation cannot work on."""


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module behind torch.compile and (Distributed)DataParallel wrappers."""
    while True:
        inner = getattr(model, "_orig_mod", None) or getattr(model, "module", None)
        if not isinstance(inner, nn.Module):
            return model
        model = inner


@contextlib.contextmanager
def evaluating(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode for the explanation; every submodule's own train/eval flag restored afterwards."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, training in modes:
            module.training = training


def choose_targets(
    target: str | int | torch.Tensor, logits: torch.Tensor, labels: torch.Tensor | None
) -> torch.Tensor:
    """Class index per image: the prediction, the true label, or one fixed class."""
    if isinstance(target, torch.Tensor):
        return target.to(logits.device, torch.long).expand(logits.shape[0])
    if isinstance(target, int) and not isinstance(target, bool):
        if not 0 <= target < logits.shape[1]:
            raise ExplainError(f"target={target} is not a class; use 0..{logits.shape[1] - 1}")
        return torch.full((logits.shape[0],), target, dtype=torch.long, device=logits.device)
    if target == "pred":
        return logits.argmax(1)
    if target == "true":
        if labels is None:
            raise ExplainError(
                "target=true needs the images' labels; pass labels or use target=pred"
            )
        return labels.to(logits.device, torch.long)
    raise ExplainError(f"target={target!r} is unknown; use pred, true or a class index")
