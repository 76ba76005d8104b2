"""One trainer for every model: fit with early stopping and checkpoints, then test the best weights.

Read top to bottom: ``fit`` runs epochs; an epoch is ``_train_epoch`` then ``evaluate``
on the validation split; the monitored metric drives early stopping, ``best.pt`` and
plateau schedules. Per-step values stay on the device and are read once per epoch.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from reslab.errors import TrainingError
from reslab.tracking.base import LoggerGroup
from reslab.training.callbacks import Callback
from reslab.training.checkpoint import load_checkpoint, save_checkpoint
from reslab.training.early_stopping import EarlyStopping
from reslab.training.metrics import class_report, per_class_metrics, summary_metrics
from reslab.training.overfitting import OverfittingDetector
from reslab.training.precision import Precision
from reslab.training.schedule import LRSchedule

log = logging.getLogger(__name__)


@dataclass
class FitResult:
    status: str  # completed | stopped_early | interrupted
    epochs: int
    best_epoch: int
    best_value: float
    history: list[dict] = field(default_factory=list)
    overfitting_epoch: int | None = None


@dataclass
class TestResult:
    metrics: dict[str, float]
    class_report: list[dict]
    confusion: torch.Tensor
    labels: torch.Tensor
    predictions: torch.Tensor


class NonFiniteLossError(TrainingError):
    pass


class Trainer:
    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        schedule: LRSchedule,
        *,
        device: torch.device,
        precision: Precision,
        max_epochs: int,
        early_stopping: EarlyStopping,
        checkpoint_dir: Path,
        num_classes: int,
        classes: list[str] | None = None,
        loggers: LoggerGroup | None = None,
        grad_clip: float | None = None,
        overfitting_epochs: int = 3,
        progress: bool | None = None,
        checkpoint_extra: dict[str, Any] | None = None,
        callbacks: list[Callback] | None = None,
    ) -> None:
        self.model = model.to(device)
        self.optimizer = optimizer
        self.schedule = schedule
        self.device = device
        self.precision = precision
        self.max_epochs = max_epochs
        self.early_stopping = early_stopping
        self.checkpoint_dir = Path(checkpoint_dir)
        self.num_classes = num_classes
        self.classes = classes or [str(i) for i in range(num_classes)]
        self.loggers = loggers or LoggerGroup()
        self.grad_clip = grad_clip
        self.overfitting = OverfittingDetector(overfitting_epochs)
        self.progress = progress
        self.checkpoint_extra = checkpoint_extra or {}
        self.callbacks = list(callbacks or [])
        self.loss_fn = nn.CrossEntropyLoss()
        self.scaler = torch.amp.GradScaler("cuda", enabled=precision.needs_scaler)
        self.val_metrics = summary_metrics(num_classes).to(device)
        self.epoch = 0
        self.global_step = 0
        self.history: list[dict] = []
        self.stop_requested: str | None = (
            None  # set by a signal handler; honoured at a step boundary
        )

    # ------------------------------------------------------------------ fit
    def fit(self, train_loader: Any, val_loader: Any) -> FitResult:
        monitor = self.early_stopping.monitor
        status = "completed"
        for callback in self.callbacks:
            callback.on_fit_start(self)
        while self.epoch < self.max_epochs:
            epoch = self.epoch + 1
            started = time.perf_counter()
            train_stats = self._train_epoch(train_loader, epoch)
            if self.stop_requested:
                status = "interrupted"
                break
            val = self.evaluate(val_loader, "val")
            elapsed = time.perf_counter() - started
            samples = train_stats.pop("_samples")
            row = {
                **train_stats,
                **val,
                "lr": self.schedule.lr,
                "epoch_time_s": elapsed,
                "samples_per_s": samples / elapsed,
            }
            if monitor not in row:
                raise TrainingError(
                    f"monitor={monitor} is not a logged metric; use one of {', '.join(sorted(row))}"
                )
            self.epoch = epoch
            for callback in self.callbacks:
                row.update(callback.on_epoch_end(self, epoch, row) or {})
            self.history.append({"epoch": epoch, **row})
            self.schedule.after_epoch(row[monitor])
            self.loggers.log_metrics(row, epoch)
            if self.early_stopping.update(row[monitor], epoch):
                self._save("best.pt")
            if self.overfitting.update(epoch, row["train/loss"], row["val/loss"]):
                log.warning(
                    "overfitting: val/loss has risen for %d epochs while train/loss kept falling; "
                    "the gap opened after epoch %d",
                    self.overfitting.epochs,
                    self.overfitting.onset_epoch,
                )
            self._save("last.pt")
            log.info(self._summary_line(row))
            if self.early_stopping.should_stop:
                status = "stopped_early"
                log.info(
                    "early stopping: %s has not improved for %d epochs (best %.4f at epoch %d)",
                    monitor,
                    self.early_stopping.patience,
                    self.early_stopping.best,
                    self.early_stopping.best_epoch,
                )
                break
        if self.early_stopping.best_epoch > 0:
            self.restore("best.pt")
        for callback in self.callbacks:
            callback.on_fit_end(self)
        return FitResult(
            status=status,
            epochs=self.epoch,
            best_epoch=self.early_stopping.best_epoch,
            best_value=self.early_stopping.best,
            history=self.history,
            overfitting_epoch=self.overfitting.onset_epoch,
        )

    def _train_epoch(self, loader: Any, epoch: int) -> dict[str, float]:
        self.model.train()
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device, dtype=torch.long)
        seen = 0
        guard = _FiniteGuard(self.device)
        bar = tqdm(
            loader,
            desc=f"epoch {epoch}/{self.max_epochs}",
            leave=False,
            disable=_bar_disabled(self.progress),
            dynamic_ncols=True,
        )
        for step, (x, y) in enumerate(bar):
            with self.precision.autocast():
                logits = self.model(x)
                loss = self.loss_fn(logits, y)
            guard.check(loss, self.global_step, self.schedule.lr)
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            for callback in self.callbacks:
                callback.on_after_backward(self, step)
            if self.grad_clip:
                self.scaler.unscale_(self.optimizer)
                nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.schedule.after_batch()
            self.global_step += 1
            n = y.shape[0]
            seen += n
            loss_sum += loss.detach().float() * n
            correct += (logits.detach().argmax(1) == y).sum()
            if not bar.disable and step % 20 == 0:
                bar.set_postfix(loss=f"{loss.item():.4f}", acc=f"{correct.item() / seen:.3f}")
            if self.stop_requested:
                break
        guard.flush(self.global_step, self.schedule.lr)
        seen = max(seen, 1)
        train_loss = loss_sum.item() / seen
        if not math.isfinite(train_loss):
            raise _non_finite(self.global_step, self.schedule.lr)
        return {"train/loss": train_loss, "train/acc": correct.item() / seen, "_samples": seen}

    # ----------------------------------------------------------- evaluate
    def evaluate(self, loader: Any, split: str) -> dict[str, float]:
        """Loss and summary metrics of the current weights on one split, named ``split/name``."""
        return self._evaluate(loader, split, per_class=None)[0]

    def test(self, loader: Any) -> TestResult:
        """Evaluate the current weights on the test split, with a per-class report and predictions."""
        per_class = per_class_metrics(self.num_classes).to(self.device)
        metrics, labels, preds = self._evaluate(loader, "test", per_class)
        values = per_class.compute()
        return TestResult(
            metrics=metrics,
            class_report=class_report(values, self.classes),
            confusion=values["confusion"].cpu(),
            labels=labels,
            predictions=preds,
        )

    @torch.inference_mode()
    def _evaluate(self, loader: Any, split: str, per_class: Any | None) -> tuple[dict, Any, Any]:
        was_training = self.model.training
        self.model.eval()
        metrics = self.val_metrics
        metrics.reset()
        loss_sum = torch.zeros((), device=self.device)
        seen = 0
        labels, preds = [], []
        for x, y in loader:
            with self.precision.autocast():
                logits = self.model(x)
            logits = logits.float()
            loss_sum += nn.functional.cross_entropy(logits, y, reduction="sum")
            metrics.update(logits, y)
            seen += y.shape[0]
            if per_class is not None:
                per_class.update(logits, y)
                labels.append(y)
                preds.append(logits.argmax(1))
        values = {f"{split}/{k}": float(v) for k, v in metrics.compute().items()}
        self.model.train(was_training)
        result = {f"{split}/loss": loss_sum.item() / max(seen, 1), **values}
        if per_class is None:
            return result, None, None
        return result, torch.cat(labels).cpu(), torch.cat(preds).cpu()

    # -------------------------------------------------------- checkpoints
    def state_dict(self) -> dict:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(),
            "scaler": self.scaler.state_dict(),
            "early_stopping": self.early_stopping.state_dict(),
            "overfitting": self.overfitting.state_dict(),
            "epoch": self.epoch,
            "global_step": self.global_step,
            "history": self.history,
            **self.checkpoint_extra,
        }

    def _save(self, name: str) -> None:
        save_checkpoint(self.checkpoint_dir / name, self.state_dict())

    def restore(self, name: str) -> None:
        """Load model weights from a checkpoint of this run (e.g. the best epoch's)."""
        state = load_checkpoint(self.checkpoint_dir / name, map_location=self.device)
        self.model.load_state_dict(state["model"])

    def _summary_line(self, row: dict) -> str:
        parts = [f"epoch {self.epoch}/{self.max_epochs}"]
        for key in ("train/loss", "train/acc", "val/loss", "val/acc"):
            parts.append(f"{key} {row[key]:.4f}")
        parts.append(f"lr {row['lr']:.3g}")
        parts.append(f"{row['epoch_time_s']:.1f}s")
        return "  ".join(parts)


class _FiniteGuard:
    """Stop on a NaN/inf loss without a host sync per step on CUDA.

    On CPU the check is free and immediate. On CUDA the flag is copied to pinned memory
    and read one step later, when that copy has long finished.
    """

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.pending: tuple[torch.Tensor, torch.cuda.Event] | None = None

    def check(self, loss: torch.Tensor, step: int, lr: float) -> None:
        if not self.cuda:
            if not torch.isfinite(loss).item():
                raise _non_finite(step, lr)
            return
        self.flush(step, lr)
        flag = torch.empty((), dtype=torch.bool, pin_memory=True)
        flag.copy_(~torch.isfinite(loss.detach()), non_blocking=True)
        event = torch.cuda.Event()
        event.record()
        self.pending = (flag, event)

    def flush(self, step: int, lr: float) -> None:
        if self.pending is None:
            return
        flag, event = self.pending
        self.pending = None
        event.synchronize()
        if bool(flag):
            raise _non_finite(step, lr)


def _non_finite(step: int, lr: float) -> NonFiniteLossError:
    return NonFiniteLossError(
        f"loss became NaN/inf at step {step} (lr {lr:.3g}); lower optimizer.lr, set trainer.grad_clip=1.0, "
        "or use trainer.precision=32 if mixed precision overflowed"
    )


def _bar_disabled(progress: bool | None) -> bool | None:
    # None lets tqdm decide: quiet when stderr is not a terminal.
    return None if progress is None else not progress
