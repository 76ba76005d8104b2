"""The one mapping from stored uint8 pixels to what a model sees: ``(x / 255 - mean) / std``
per channel, folded into one multiply-add. The loaders and the explain figures both use it,
so a class activation map is drawn from exactly the inputs the model trained on."""

from __future__ import annotations

import torch


def normalisation(
    mean: tuple[float, ...], std: tuple[float, ...], device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """``scale`` and ``shift``, shaped (1, C, 1, 1), with ``x * scale + shift`` the model's input."""
    mean_t = torch.tensor(mean, dtype=torch.float32)
    std_t = torch.tensor(std, dtype=torch.float32)
    scale = (1.0 / (255.0 * std_t)).view(1, -1, 1, 1).to(device)
    shift = (-mean_t / std_t).view(1, -1, 1, 1).to(device)
    return scale, shift


def normalise(x: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Float pixel values in 0..255 (uint8 images, possibly augmented) to the model's input."""
    return torch.addcmul(shift, x.float(), scale)


def normalise_images(
    images: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]
) -> torch.Tensor:
    """uint8 images (N, C, H, W) as the model sees them, on their own device."""
    return normalise(images, *normalisation(mean, std, images.device))
