"""Explanations recorded while training: a CAM timeline (animated GIF) and per-layer gradient norms."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import torch
from omegaconf import DictConfig
from torch import nn

from reslab.data.normalise import normalise_images
from reslab.errors import ConfigError
from reslab.explain.cam import class_activation_maps, gap_head
from reslab.explain.gradcam import default_layer, find_layer, grad_cam
from reslab.explain.gradient_flow import metric_names, norms_of, weight_layers
from reslab.explain.overlay import figure_to_image, overlay_figure
from reslab.explain.state import ExplainError, unwrap
from reslab.training.callbacks import Callback

log = logging.getLogger(__name__)

METHODS = ("cam", "gradcam")
TARGET_WORDS = {"pred": "predicted", "true": "true"}


def pick_images(labels: torch.Tensor, n: int) -> torch.Tensor:
    """Indices of ``n`` images taking the classes in turn (first of each class first), so
    every class is shown; in test-set order within a class."""
    by_class = [torch.nonzero(labels == c).flatten().tolist() for c in labels.unique().tolist()]
    picked: list[int] = []
    depth = 0
    while len(picked) < min(n, len(labels)):
        for members in by_class:
            if depth < len(members) and len(picked) < n:
                picked.append(members[depth])
        depth += 1
    return torch.tensor(picked, dtype=torch.long)


def explain_maps(
    model: nn.Module,
    x: torch.Tensor,
    method: str,
    layer: str | None,
    target: str,
    labels: torch.Tensor,
):
    if method == "cam":
        return class_activation_maps(model, x, target, labels)
    return grad_cam(model, x, layer, target, labels)


def check_method(model: nn.Module, method: str, layer: str | None) -> None:
    """Refuse, before training starts, a timeline the model cannot be explained with."""
    if method not in METHODS:
        raise ConfigError(
            f"explain.method={method!r} is unknown; choose one of {', '.join(METHODS)}"
        )
    net = unwrap(model)
    if not any(isinstance(m, nn.Conv2d) for m in net.modules()):
        raise ConfigError(
            f"explain.cam_every_epoch=true needs convolutional feature maps and "
            f"{type(net).__name__} has none; train a cnn or resnet, or draw this model's first "
            "layer after training with scripts/explain.py run=<run> method=weights"
        )
    try:
        if method == "cam":
            gap_head(net)
        else:
            find_layer(net, layer)
    except ExplainError as exc:
        if method == "cam":
            raise ConfigError(
                f"explain.method=cam needs a model that ends in global average pooling and one "
                f"linear layer, which this {type(net).__name__} does not; set model.head=gap "
                "(cnn) or explain.method=gradcam"
            ) from None
        raise ConfigError(f"explain.{exc}") from None


class CAMTimeline(Callback):
    """Maps of a fixed set of test images after every epoch: one PNG frame per epoch in
    ``figures/cam_timeline/``, joined into ``figures/cam_timeline.gif`` when training ends."""

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        classes: list[str],
        figures_dir: Path,
        method: str = "cam",
        layer: str | None = None,
        target: str = "pred",
        frame_ms: int = 700,
    ) -> None:
        self.images = images.cpu()
        self.labels = labels.cpu()
        self.inputs = normalise_images(self.images, mean, std)
        self.classes = classes
        self.figures_dir = Path(figures_dir)
        self.frames_dir = self.figures_dir / "cam_timeline"
        self.method, self.layer, self.target = method, layer, target
        self.frame_ms = frame_ms

    def _label(self, model: nn.Module) -> str:
        return (
            "CAM" if self.method == "cam" else f"Grad-CAM at {self.layer or default_layer(model)}"
        )

    def _figure(self, trainer: Any, title: str):
        device = next(unwrap(trainer.model).parameters()).device
        result = explain_maps(
            trainer.model,
            self.inputs.to(device),
            self.method,
            self.layer,
            self.target,
            self.labels.to(device),
        )
        return overlay_figure(
            self.images,
            result.maps,
            self.labels,
            result.predictions,
            self.classes,
            title=f"{self._label(trainer.model)} of the {TARGET_WORDS[self.target]} class, {title} "
            "(true / predicted)",
        )

    def on_epoch_end(self, trainer: Any, epoch: int, metrics: dict[str, float]) -> None:
        fig = self._figure(trainer, f"epoch {epoch}")
        self.frames_dir.mkdir(parents=True, exist_ok=True)
        figure_to_image(fig).save(self.frames_dir / f"epoch_{epoch:04d}.png")
        trainer.loggers.log_figure("explain/cam", fig, epoch)
        plt.close(fig)
        return None

    def on_fit_end(self, trainer: Any) -> None:
        path = write_gif(
            self.frames_dir, self.figures_dir / "cam_timeline.gif", trainer.epoch, self.frame_ms
        )
        if path is not None:
            log.info("CAM timeline: %s", path)
        # The weights the test set sees: the best epoch's, restored by the trainer.
        fig = self._figure(trainer, "best epoch")
        fig.savefig(self.figures_dir / "cam_best.png", dpi=120)
        trainer.loggers.log_figure("explain/cam_best", fig, trainer.epoch)
        plt.close(fig)


def write_gif(frames_dir: Path, path: Path, last_epoch: int, frame_ms: int) -> Path | None:
    """Join the frames of epochs 1..last_epoch (a resumed run's earlier frames included)."""
    from PIL import Image

    files = sorted(frames_dir.glob("epoch_*.png"))
    files = [f for f in files if int(f.stem.split("_")[1]) <= last_epoch]
    if not files:
        return None
    frames = [Image.open(f).convert("RGB") for f in files]
    # Hold the last frame longer, so the final focus is readable before the loop restarts.
    durations = [frame_ms] * (len(frames) - 1) + [max(frame_ms, 2000)]
    frames[0].save(
        path, save_all=True, append_images=frames[1:], duration=durations, loop=0, optimize=False
    )
    return path


class GradNormLogger(Callback):
    """Per-layer gradient norms averaged over each epoch, logged as ``grad_norm/layer_NN``.

    Norms are summed on the device after every backward and read once per epoch, so the
    training loop gains no host sync. Under fp16 the loss scale is divided out, and
    steps that overflowed (and were skipped by the scaler) are left out.
    """

    def __init__(self) -> None:
        self.params: list[nn.Parameter] = []
        self.names: list[str] = []
        self.total: torch.Tensor | None = None
        self.count: torch.Tensor | None = None

    def on_fit_start(self, trainer: Any) -> None:
        self.params = [p for _, p in weight_layers(trainer.model)]
        self.names = metric_names(len(self.params))
        self.total = self.count = None

    def on_after_backward(self, trainer: Any, batch_index: int) -> None:
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in self.params]
        norms = norms_of(grads)
        scaler = getattr(trainer, "scaler", None)
        scale = getattr(scaler, "_scale", None) if scaler is not None else None
        if scaler is not None and scaler.is_enabled() and isinstance(scale, torch.Tensor):
            norms = norms / scale.float()
        finite = torch.isfinite(norms)
        norms = torch.where(finite, norms, torch.zeros_like(norms))
        if self.total is None:
            self.total, self.count = norms, finite.float()
        else:
            self.total += norms
            self.count += finite.float()

    def on_epoch_end(self, trainer: Any, epoch: int, metrics: dict[str, float]) -> dict[str, float]:
        if self.total is None:
            return {}
        values = (self.total / self.count.clamp_min(1)).tolist()  # the epoch's one sync
        self.total = self.count = None
        return dict(zip(self.names, values))


def explain_callbacks(
    cfg: DictConfig, model: nn.Module, data: Any, run_dir: Path
) -> list[Callback]:
    """The callbacks ``cfg.explain`` turns on (none by default)."""
    settings = cfg.get("explain") or {}
    callbacks: list[Callback] = []
    if settings.get("cam_every_epoch"):
        method = str(settings.get("method", "cam"))
        layer = settings.get("layer")
        # The command line reads `explain.target=true` as the boolean; the schema checked the rest.
        target = "true" if settings.get("target") is True else str(settings.get("target", "pred"))
        n = int(settings.get("n_images", 8))
        check_method(model, method, layer)
        index = pick_images(data.test.labels, n)
        callbacks.append(
            CAMTimeline(
                data.test.images[index],
                data.test.labels[index],
                data.mean,
                data.std,
                data.classes,
                Path(run_dir) / "figures",
                method=method,
                layer=layer,
                target=target,
                frame_ms=int(settings.get("frame_ms", 700)),
            )
        )
    if settings.get("grad_norms"):
        callbacks.append(GradNormLogger())
    return callbacks
