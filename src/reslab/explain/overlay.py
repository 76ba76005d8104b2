"""Maps onto images: upsample, normalise per image, colour, blend, and lay out in a titled grid."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
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


def maps_figure(
    images: torch.Tensor,
    rows: dict[str, torch.Tensor],
    labels: torch.Tensor,
    predictions: torch.Tensor,
    classes: list[str],
    title: str,
    row_predictions: dict[str, torch.Tensor] | None = None,
    cols: int = 8,
) -> Figure:
    """Each image above its overlays, one row per named map (e.g. class CAM and global map),
    so the maps of one image can be compared; the image is titled ``true / predicted``.
    ``row_predictions`` (maps of several models) titles each overlay with its own model's
    prediction instead, mistakes in red."""
    images = images.detach().cpu()
    panels = [images, *(overlay(images, maps) for maps in rows.values())]
    names = ["input", *rows]
    n = len(images)
    cols = max(1, min(cols, n))
    groups = -(-n // cols)
    fig, axes = plt.subplots(
        groups * len(panels),
        cols,
        figsize=(1.3 * cols + 0.4, 1.35 * groups * len(panels) + 0.5),
        squeeze=False,
    )
    for ax in axes.flat:
        ax.axis("off")
    for i, (true, pred) in enumerate(zip(labels.tolist(), predictions.tolist())):
        group, col = divmod(i, cols)
        for r, (name, panel) in enumerate(zip(names, panels)):
            ax = axes[group * len(panels) + r, col]
            pixels = panel[i].permute(1, 2, 0).numpy()
            if pixels.shape[2] == 1:
                ax.imshow(pixels[:, :, 0], cmap="gray", vmin=0, vmax=255)
            else:
                ax.imshow(pixels)
            if r == 0 and row_predictions is None:
                colour = "black" if true == pred else "red"
                ax.set_title(f"{classes[true]} / {classes[pred]}", fontsize=7, color=colour)
            elif r == 0:
                ax.set_title(classes[true], fontsize=7)
            elif row_predictions is not None:
                said = int(row_predictions[name][i])
                colour = "black" if said == true else "red"
                ax.set_title(f"→ {classes[said]}", fontsize=6, color=colour)
            if col == 0:
                ax.text(
                    -0.08,
                    0.5,
                    name,
                    transform=ax.transAxes,
                    rotation=90,
                    ha="right",
                    va="center",
                    fontsize=7,
                )
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def figure_to_image(fig: Figure) -> Image.Image:
    """Render a matplotlib figure to an RGB Pillow image (a GIF frame)."""
    fig.canvas.draw()
    return Image.fromarray(np.asarray(fig.canvas.buffer_rgba())).convert("RGB")
