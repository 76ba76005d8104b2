"""Maps onto images: upsample, normalise per image, colour, blend, and lay out in a titled grid."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from PIL import Image  # noqa: E402

from reslab.figures import sample_predictions_figure  # noqa: E402


def upsample(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(N, h, w) maps to (N, H, W), bilinear, as CAM is upsampled to the input."""
    return F.interpolate(maps[:, None].float(), size=size, mode="bilinear", align_corners=False)[
        :, 0
    ]


def normalise(maps: torch.Tensor) -> torch.Tensor:
    """Each map to [0, 1] on its own; a flat map becomes all zeros."""
    flat = maps.flatten(1).float()
    low = flat.min(1, keepdim=True).values
    span = flat.max(1, keepdim=True).values - low
    out = torch.where(span > 0, (flat - low) / span.clamp_min(1e-12), torch.zeros_like(flat))
    return out.view_as(maps)


def colourise(maps01: torch.Tensor, cmap: str = "jet") -> torch.Tensor:
    """(N, H, W) in [0, 1] to (N, 3, H, W) uint8 through a matplotlib colour map."""
    rgba = matplotlib.colormaps[cmap](maps01.detach().cpu().numpy())
    return torch.from_numpy((rgba[..., :3] * 255).round().astype(np.uint8)).permute(0, 3, 1, 2)


def overlay(
    images: torch.Tensor, maps: torch.Tensor, alpha: float = 0.45, cmap: str = "jet"
) -> torch.Tensor:
    """uint8 (N, C, H, W) images with (N, h, w) maps blended on top: uint8 (N, 3, H, W)."""
    images = images.detach().cpu()
    heat = colourise(normalise(upsample(maps.detach().cpu(), tuple(images.shape[-2:]))), cmap)
    base = images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images[:, :3]
    blended = (1 - alpha) * base.float() + alpha * heat.float()
    return blended.round().clamp(0, 255).to(torch.uint8)


def overlay_figure(
    images: torch.Tensor,
    maps: torch.Tensor,
    labels: torch.Tensor,
    predictions: torch.Tensor,
    classes: list[str],
    title: str,
) -> Figure:
    """Overlays in a grid, each titled ``true / predicted`` (mistakes in red)."""
    return sample_predictions_figure(
        overlay(images, maps), labels.cpu(), predictions.cpu(), classes, title=title
    )


def figure_to_image(fig: Figure) -> Image.Image:
    """Render a matplotlib figure to an RGB Pillow image (a GIF frame)."""
    fig.canvas.draw()
    return Image.fromarray(np.asarray(fig.canvas.buffer_rgba())).convert("RGB")
