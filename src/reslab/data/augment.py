"""Batched augmentation on whatever device the batch lives on: two gathers, no per-image Python."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def random_crop(
    x: torch.Tensor, padding: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Zero-pad by ``padding`` and crop back to the original size at a random offset per image."""
    if padding <= 0:
        return x
    n, c, h, w = x.shape
    padded = F.pad(x, (padding, padding, padding, padding))
    span = 2 * padding + 1
    dy = torch.randint(0, span, (n, 1), device=x.device, generator=generator)
    dx = torch.randint(0, span, (n, 1), device=x.device, generator=generator)
    rows = (dy + torch.arange(h, device=x.device)).view(n, 1, h, 1)
    cols = (dx + torch.arange(w, device=x.device)).view(n, 1, 1, w)
    picked_rows = padded.gather(2, rows.expand(n, c, h, w + 2 * padding))
    return picked_rows.gather(3, cols.expand(n, c, h, w))


def random_hflip(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Mirror each image left-right with probability 1/2."""
    flip = torch.rand(x.shape[0], device=x.device, generator=generator) < 0.5
    return torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)
