"""The pointing game (Zhang et al. 2016): does a map's strongest point fall on the object?

A map is upsampled to the image as in the figures (bilinear); its peak is a hit when it
lies inside the object's box. The score is the fraction of hits: a localisation measure
that needs no threshold and no segmentation, only boxes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from reslab.explain.overlay import upsample


@dataclass(frozen=True)
class PointingResult:
    hits: torch.Tensor  # (N,) bool
    peaks: torch.Tensor  # (N, 2) as (x, y) image pixels

    @property
    def score(self) -> float:
        return float(self.hits.float().mean()) if len(self.hits) else float("nan")


def map_peaks(maps: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
    """(N, h, w) maps -> (N, 2) pixel ``(x, y)`` of each map's maximum at image resolution."""
    full = upsample(maps.detach().cpu(), image_size)
    flat = full.flatten(1).argmax(1)
    width = image_size[1]
    return torch.stack([flat % width, flat // width], dim=1)


def pointing_game(
    maps: torch.Tensor, boxes: torch.Tensor, image_size: tuple[int, int]
) -> PointingResult:
    """Hits of each map's peak in its ``(x0, y0, x1, y1)`` box (end exclusive). Images
    without an object (an empty box) are left out."""
    boxes = boxes.cpu()
    has_object = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    maps, boxes = maps[has_object.to(maps.device)], boxes[has_object]
    peaks = map_peaks(maps, image_size)
    x, y = peaks[:, 0], peaks[:, 1]
    inside = (x >= boxes[:, 0]) & (x < boxes[:, 2]) & (y >= boxes[:, 1]) & (y < boxes[:, 3])
    return PointingResult(hits=inside, peaks=peaks)
