"""What the first layer has learned: each unit's input weights drawn as an image."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from reslab.explain.state import ExplainError, unwrap


def first_weight_layer(model: nn.Module) -> nn.Module:
    for module in unwrap(model).modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            return module
    raise ExplainError(f"{type(unwrap(model)).__name__} has no Linear or Conv2d layer to draw")


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Rescale each image (first dim) on its own to 0..255, so every unit uses the full range."""
    flat = images.detach().float().flatten(1)
    low = flat.min(1, keepdim=True).values
    span = (flat.max(1, keepdim=True).values - low).clamp_min(1e-12)
    return ((flat - low) / span * 255).round().to(torch.uint8).view_as(images)


def first_layer_images(
    model: nn.Module, input_shape: Sequence[int], n: int | None = None
) -> torch.Tensor:
    """uint8 (units, C, H, W): an MLP's first-layer rows reshaped to the input image, or a
    CNN's first conv kernels; the first ``n`` units."""
    layer = first_weight_layer(model)
    weight = layer.weight.detach().cpu()[:n]
    if isinstance(layer, nn.Linear):
        c, h, w = (int(d) for d in input_shape)
        if weight.shape[1] != c * h * w:
            raise ExplainError(
                f"the first layer takes {weight.shape[1]} inputs, not a {c}x{h}x{w} image; "
                "explain the run with the dataset it was trained on"
            )
        weight = weight.view(-1, c, h, w)
    return to_uint8(weight)


def image_grid(
    images: torch.Tensor, cols: int | None = None, pad: int = 1, fill: int = 0
) -> torch.Tensor:
    """uint8 (N, C, H, W) tiles to one (C, rows*(H+pad)-pad, cols*(W+pad)-pad) image, row by row."""
    n, c, h, w = images.shape
    cols = cols or math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    grid = torch.full((c, rows * (h + pad) - pad, cols * (w + pad) - pad), fill, dtype=images.dtype)
    for i, tile in enumerate(images):
        r, q = divmod(i, cols)
        grid[:, r * (h + pad) : r * (h + pad) + h, q * (w + pad) : q * (w + pad) + w] = tile
    return grid


def save_grid_png(grid: torch.Tensor, path, scale: int = 4) -> None:
    """Write a uint8 (C, H, W) grid with Pillow, enlarged ``scale`` times without smoothing."""
    from PIL import Image

    pixels = grid.permute(1, 2, 0).numpy()
    image = Image.fromarray(pixels[:, :, 0] if pixels.shape[2] == 1 else pixels)
    if scale > 1:
        image = image.resize((image.width * scale, image.height * scale), Image.NEAREST)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
