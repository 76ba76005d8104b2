"""Figures the run folder gets (matplotlib, no display needed)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402


def confusion_matrix_figure(
    confusion: torch.Tensor, classes: list[str], title: str = "test confusion matrix"
):
    """Counts with row-normalised colour, so a user sees which classes are mistaken for which."""
    counts = confusion.to(torch.float64)
    rates = counts / counts.sum(dim=1, keepdim=True).clamp_min(1)
    size = max(4.0, 0.55 * len(classes) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(rates.numpy(), cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    for i in range(len(classes)):
        for j in range(len(classes)):
            value = int(counts[i, j])
            if value:
                ax.text(
                    j,
                    i,
                    str(value),
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if rates[i, j] > 0.5 else "black",
                )
    fig.tight_layout()
    return fig


def sample_indices(labels: torch.Tensor, predictions: torch.Tensor, n: int = 24) -> torch.Tensor:
    """Up to ``n`` test images, half of them mistakes where there are any, spread evenly over
    the test set (which may be sorted by class), in test-set order."""
    wrong = _spread(torch.nonzero(labels != predictions).flatten(), n // 2)
    right = _spread(torch.nonzero(labels == predictions).flatten(), n - len(wrong))
    return torch.cat([wrong, right]).sort().values


def _spread(index: torch.Tensor, k: int) -> torch.Tensor:
    if len(index) <= k:
        return index
    return index[torch.linspace(0, len(index) - 1, k).round().long()]


def sample_predictions_figure(
    images: torch.Tensor,
    labels: torch.Tensor,
    predictions: torch.Tensor,
    classes: list[str],
    title: str = "test samples: true / predicted",
):
    """A grid of uint8 (N, C, H, W) images titled ``true / pred``, mistakes in red."""
    n = len(images)
    cols = min(8, max(n, 1))
    rows = max(1, -(-n // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(1.4 * cols, 1.6 * rows + 0.4), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, true, pred in zip(axes.flat, images, labels.tolist(), predictions.tolist()):
        pixels = image.permute(1, 2, 0).numpy()
        if pixels.shape[2] == 1:
            ax.imshow(pixels[:, :, 0], cmap="gray", vmin=0, vmax=255)
        else:
            ax.imshow(pixels)
        ax.set_title(
            f"{classes[true]} / {classes[pred]}",
            fontsize=7,
            color="black" if true == pred else "red",
        )
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def save_figure(fig, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
