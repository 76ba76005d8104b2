"""Shapes at random places in noise: images whose objects' boxes are known, for checking
that a class activation map points at the object (``reslab.explain.pointing``)."""

from __future__ import annotations

import torch

from reslab.data.image_data import ImageSet

# Each shape has edges of its own orientation, so each class has evidence of its own.
SHAPES = ("horizontal bar", "vertical bar", "diagonal bar")
# The class of images with no object. With it, every shape class must be told by evidence of
# its own: without it a net may learn one shape as "none of the others", and its map then
# peaks wherever the others are absent.
BLANK = len(SHAPES)


def shape_masks(size: int) -> torch.Tensor:
    """(len(SHAPES), size, size) bool: bars across the box, horizontal, vertical, diagonal."""
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    centre, half = (size - 1) / 2, max(1, size // 4) / 2
    horizontal = (yy - centre).abs() <= half
    vertical = (xx - centre).abs() <= half
    diagonal = (yy - xx).abs() <= half
    return torch.stack([horizontal, vertical, diagonal])


def shapes_dataset(
    n: int, image_size: int = 32, object_size: int = 10, noise: int = 60, seed: int = 0
) -> tuple[ImageSet, torch.Tensor]:
    """``n`` grey images of noise in [0, noise), the classes in turn: one bright shape of
    SHAPES each, or none (class BLANK). Returns the images with their labels and each
    object's box as ``(x0, y0, x1, y1)``, end exclusive (empty for BLANK images)."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, noise, (n, 1, image_size, image_size), generator=generator)
    labels = torch.arange(n) % (len(SHAPES) + 1)
    corners = torch.randint(0, image_size - object_size + 1, (n, 2), generator=generator)
    brightness = torch.randint(180, 256, (n,), generator=generator)
    masks = shape_masks(object_size)
    for i, ((x0, y0), label) in enumerate(zip(corners.tolist(), labels.tolist())):
        if label != BLANK:
            patch = images[i, 0, y0 : y0 + object_size, x0 : x0 + object_size]
            patch[masks[label]] = brightness[i]
    boxes = torch.cat([corners, corners + object_size], dim=1)
    boxes[labels == BLANK] = 0
    return ImageSet(images.to(torch.uint8), labels), boxes
