"""One trainer for every model: fit with early stopping and checkpoints, then test the best weights.

Read top to bottom: ``fit`` runs epochs; an epoch is ``_train_epoch`` then ``evaluate``
on the validation split; the monitored metric drives early stopping, ``best.pt`` and
plateau schedules. Per-step values stay on the device and are read once per epoch.
"""

from __future__ import annotations

import logging
import math
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from reslab.errors import ResumeRefused, TrainingError, TrainingInterrupted
from reslab.tracking.base import LoggerGroup
from reslab.training.callbacks import Callback
from reslab.training.checkpoint import (
    CheckpointWriter,
    duplicate_checkpoint,
    host_copy,
    load_checkpoint,
    save_checkpoint,
)
from reslab.training.distributed import (
    all_gather_objects,
    all_reduce_sum,
    broadcast_module,
    gather_strided,
    max_over_ranks,
)
from reslab.training.fastpath import step_models
from reslab.training.metrics import class_report, per_class_metrics, summary_metrics
from reslab.training.options import Placement, StepOptions, Stopping
from reslab.training.overfitting import OverfittingDetector
from reslab.training.readback import FiniteGuard, HostReadback, non_finite_loss
from reslab.training.schedule import LRSchedule

log = logging.getLogger(__name__)

# Under torchrun the ranks agree every this many steps whether one of them was asked to stop
# (one small all-reduce on the CPU), so all checkpoint at the same step and none is left
# waiting in a collective.
STOP_CHECK_EVERY = 10


@dataclass
class FitResult:
    status: str  # completed | stopped_early
    epochs: int
    best_epoch: int
    history: list[dict] = field(default_factory=list)
    overfitting_epoch: int | None = None


@dataclass
class TestResult:
    metrics: dict[str, float]
    class_report: list[dict]
    confusion: torch.Tensor
    labels: torch.Tensor
    predictions: torch.Tensor


class Trainer:
    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        schedule: LRSchedule,
        *,
        stopping: Stopping,
        classes: Sequence[str] | int,
        checkpoint_dir: Path,
        placement: Placement | None = None,
        step: StepOptions | None = None,
        loggers: LoggerGroup | None = None,
        callbacks: list[Callback] | None = None,
        progress: bool | None = None,
        checkpoint_extra: dict[str, Any] | None = None,
    ) -> None:
        """``classes``: the class names, or how many (named 0..n-1). ``checkpoint_extra`` is
        stored in every checkpoint beside the training state (the run's config). Without a
        placement the steps run on the CPU in fp32, one process."""
        placement, step = placement or Placement(), step or StepOptions()
        self.device = placement.device
        self.precision = placement.precision
        self.dist = placement.dist
        self.model, self._train_model, self._eval_model = _placed_models(model, placement, step)
        self.optimizer = optimizer
        self.schedule = schedule
        self.max_epochs = stopping.max_epochs
        self.early_stopping = stopping.early_stopping
        self.overfitting = OverfittingDetector(stopping.overfitting_epochs)
        self.grad_clip = step.grad_clip
        self.checkpoint_dir = Path(checkpoint_dir)
        self.classes = (
            [str(i) for i in range(classes)] if isinstance(classes, int) else list(classes)
        )
        self.num_classes = len(self.classes)
        self.loggers = loggers or LoggerGroup()
        self.progress = progress
        self.checkpoint_extra = checkpoint_extra or {}
        self.callbacks = list(callbacks or [])
        self.loss_fn = nn.CrossEntropyLoss()
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.precision.needs_scaler)
        # Summary metrics of an evaluation: the validation split each epoch, the test split after.
        self.eval_metrics = summary_metrics(self.num_classes).to(self.device)
        self.epoch = 0
        self.global_step = 0
        self.history: list[dict] = []
        # Set by a signal handler; honoured at the next step boundary.
        self.stop_requested: str | None = None
        self.train_loader: Any = None
        self._epoch_progress: dict | None = None  # partial sums of an epoch resumed mid-way
        self._loader_state: dict | None = None
        self._writer = CheckpointWriter()

    @classmethod
    def for_evaluation(
        cls,
        model: nn.Module,
        classes: Sequence[str] | int,
        placement: Placement | None = None,
        step: StepOptions | None = None,
    ) -> Trainer:
        """A Trainer that only evaluates and tests (scripts/evaluate.py): it never steps its
        optimiser or writes a checkpoint."""
        optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
        schedule = LRSchedule(optimizer, None, "epoch", 0)
        return cls(
            model,
            optimizer,
            schedule,
            stopping=Stopping(max_epochs=1),
            classes=classes,
            checkpoint_dir=Path("unused"),  # written only by fit
            placement=placement,
            step=step,
            progress=False,
        )

    # ------------------------------------------------------------------ fit
    def fit(self, train_loader: Any, val_loader: Any) -> FitResult:
        self.train_loader = train_loader
        if self._loader_state is not None:
            train_loader.load_state_dict(self._loader_state)
            self._loader_state = None
        for callback in self.callbacks:
            callback.on_fit_start(self)
        try:
            status = self._fit_epochs(train_loader, val_loader)
        finally:
            self._writer.wait()  # every checkpoint is on disk before fit returns or raises
        if self.early_stopping.best_epoch > 0:
            self.restore("best.pt")
        for callback in self.callbacks:
            callback.on_fit_end(self)
        return FitResult(
            status=status,
            epochs=self.epoch,
            best_epoch=self.early_stopping.best_epoch,
            history=self.history,
            overfitting_epoch=self.overfitting.onset_epoch,
        )

    def _fit_epochs(self, train_loader: Any, val_loader: Any) -> str:
        """Train and validate until the budget is spent or early stopping ends the run."""
        monitor = self.early_stopping.monitor
        status = "completed"
        while self.epoch < self.max_epochs:
            epoch = self.epoch + 1
            started = time.perf_counter()
            train_stats = self._train_epoch(train_loader, epoch)
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
            improved = self.early_stopping.update(row[monitor], epoch)
            if self.overfitting.update(epoch, row["train/loss"], row["val/loss"]):
                log.warning(
                    "overfitting: val/loss has risen for %d epochs while train/loss kept falling; "
                    "the gap opened after epoch %d",
                    self.overfitting.epochs,
                    self.overfitting.onset_epoch,
                )
            self._save("last.pt", also=("best.pt",) if improved else ())
            log.info(self._summary_line(row))
            if self._agreed_stop():
                raise TrainingInterrupted(self.stop_requested)
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
        return status

    def _train_epoch(self, loader: Any, epoch: int) -> dict[str, float]:
        self.model.train()
        progress, self._epoch_progress = self._epoch_progress or {}, None
        loss_sum = torch.tensor(progress.get("loss_sum", 0.0), device=self.device)
        correct = torch.tensor(progress.get("correct", 0), device=self.device, dtype=torch.long)
        seen = progress.get("seen", 0)
        guard = FiniteGuard(self.device, lambda: self.schedule.lr)
        postfix = HostReadback(self.device)
        bar = tqdm(
            loader,
            desc=f"epoch {epoch}/{self.max_epochs}",
            leave=False,
            disable=_bar_disabled(self.progress),
            dynamic_ncols=True,
        )
        for step, (x, y) in enumerate(bar):
            with self.precision.autocast():
                logits = self._train_model(x)
                loss = self.loss_fn(logits, y)
            guard.check(loss, self.global_step)
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
                # On CUDA the numbers shown are a few steps old: reading them now would wait for the GPU.
                shown_now = postfix.push(torch.stack([loss.detach().float(), correct / seen]))
                for _, shown in shown_now:
                    bar.set_postfix(loss=f"{shown[0]:.4f}", acc=f"{shown[1]:.3f}")
            if self._agreed_stop(step):
                guard.flush()
                self._epoch_progress = {
                    "loss_sum": loss_sum.item(),
                    "correct": int(correct.item()),
                    "seen": seen,
                }
                self._save("last.pt")
                self._writer.wait()
                raise TrainingInterrupted(self.stop_requested)
        guard.flush()
        if self.dist.enabled:  # one all-reduce per epoch: the whole batch's numbers
            loss_sum, correct, seen = self._reduce(loss_sum, correct, seen)
        seen = max(seen, 1)
        train_loss = loss_sum.item() / seen
        if not math.isfinite(train_loss):
            raise non_finite_loss(self.global_step, self.schedule.lr)
        return {"train/loss": train_loss, "train/acc": correct.item() / seen, "_samples": seen}

    # ----------------------------------------------------------- evaluate
    def evaluate(self, loader: Any, split: str) -> dict[str, float]:
        """Loss and summary metrics of the current weights on one split, named ``split/name``."""
        return self._evaluate(loader, split, per_class=None)[0]

    def test(self, loader: Any, split: str = "test") -> TestResult:
        """Evaluate the current weights on a split (the test split after fit; any split for
        scripts/evaluate.py), with a per-class report and predictions."""
        per_class = per_class_metrics(self.num_classes).to(self.device)
        metrics, labels, preds = self._evaluate(loader, split, per_class)
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
        metrics = self.eval_metrics
        metrics.reset()
        loss_sum = torch.zeros((), device=self.device)
        seen = 0
        labels, preds = [], []
        for x, y in loader:
            with self.precision.autocast():
                logits = self._eval_model(x)
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
        if self.dist.enabled:  # torchmetrics synchronised itself in compute()
            loss_sum, _, seen = self._reduce(loss_sum, loss_sum, seen)
        result = {f"{split}/loss": loss_sum.item() / max(seen, 1), **values}
        if per_class is None:
            return result, None, None
        # Each rank saw a strided shard of the split; put the predictions back in split order.
        world = self.dist.world_size
        return (
            result,
            gather_strided(torch.cat(labels), world),
            gather_strided(torch.cat(preds), world),
        )

    def _reduce(self, total: torch.Tensor, count: torch.Tensor, seen: int) -> tuple[Any, Any, int]:
        """Sums over all ranks of a loss sum, a count and a number of samples."""
        n = torch.tensor(float(seen), device=total.device)
        summed = all_reduce_sum(torch.stack([total.double(), count.double(), n.double()]))
        return summed[0], summed[1], int(summed[2].item())

    # -------------------------------------------------------- checkpoints
    def _agreed_stop(self, step: int | None = None) -> str | None:
        """The stop request every rank acts on: this process's signal, or under torchrun any
        rank's, compared at the same steps on all of them (``step`` None: an epoch's end)."""
        if not self.dist.enabled:
            return self.stop_requested
        if step is not None and (step + 1) % STOP_CHECK_EVERY:
            return None
        mine = signal.Signals[self.stop_requested].value if self.stop_requested else 0
        agreed = max_over_ranks(mine)
        if agreed:
            self.stop_requested = signal.Signals(agreed).name
        return self.stop_requested if agreed else None

    def _rank_state(self) -> dict:
        """What differs between ranks: RNG (dropout), augmentation draws, a partial epoch's sums."""
        loader = self.train_loader.state_dict() if self.train_loader is not None else None
        return {"rng": _rng_state(), "train_loader": loader, "epoch_progress": self._epoch_progress}

    def state_dict(self, ranks: list[dict] | None = None) -> dict:
        """Everything a resume needs; ``ranks`` holds each rank's own part (default: this one's).
        Rank 0's part is also at the top level, as a single process writes it."""
        ranks = ranks or [self._rank_state()]
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
            **ranks[0],
            "ranks": ranks,
            **self.checkpoint_extra,
        }

    def load_state_dict(self, state: dict) -> None:
        """Continue exactly where a checkpoint left off: weights, optimiser, schedule, RNG, data order."""
        ranks = state.get("ranks") or [{k: state.get(k) for k in self._rank_state()}]
        if len(ranks) != self.dist.world_size:
            raise ResumeRefused(
                f"the checkpoint was written by {len(ranks)} process(es) and this run has "
                f"{self.dist.world_size}; each process's data order and augmentation continue "
                f"only with the same number (torchrun --nproc_per_node={len(ranks)} for one node)"
            )
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        self.scaler.load_state_dict(state["scaler"])
        self.early_stopping.load_state_dict(state["early_stopping"])
        self.overfitting.load_state_dict(state["overfitting"])
        self.epoch = int(state["epoch"])
        self.global_step = int(state["global_step"])
        self.history = [dict(row) for row in state["history"] if row["epoch"] <= self.epoch]
        mine = ranks[self.dist.rank]
        self._epoch_progress = mine.get("epoch_progress")
        self._loader_state = mine.get("train_loader")
        _set_rng_state(mine["rng"])

    def _save(self, name: str, also: tuple[str, ...] = ()) -> None:
        """Every rank hands in its own state; rank 0 writes the checkpoint, in the background
        from a snapshot, and gives it the names in ``also`` (best.pt: the same state)."""
        ranks = all_gather_objects(self._rank_state())
        if not self.dist.is_main:
            return
        state = host_copy(self.state_dict(ranks))
        directory = self.checkpoint_dir

        def write() -> None:
            save_checkpoint(directory / name, state)
            for other in also:  # one serialisation, several names
                duplicate_checkpoint(directory / name, directory / other)

        self._writer.submit(write)

    def restore(self, name: str) -> None:
        """Load model weights from a checkpoint of this run (e.g. the best epoch's)."""
        self._writer.wait()
        if self.dist.is_main:
            state = load_checkpoint(self.checkpoint_dir / name, map_location=self.device)
            self.model.load_state_dict(state["model"])
        broadcast_module(self.model)  # only rank 0 wrote the checkpoint

    def _summary_line(self, row: dict) -> str:
        parts = [f"epoch {self.epoch}/{self.max_epochs}"]
        for key in ("train/loss", "train/acc", "val/loss", "val/acc"):
            parts.append(f"{key} {row[key]:.4f}")
        parts.append(f"lr {row['lr']:.3g}")
        parts.append(f"{row['epoch_time_s']:.1f}s")
        return "  ".join(parts)


def _placed_models(
    model: nn.Module, placement: Placement, step: StepOptions
) -> tuple[nn.Module, nn.Module, nn.Module]:
    """The plain module on its device (checkpoints and callbacks use it) and the two the steps
    call, which may be compiled and, under torchrun, wrapped in DistributedDataParallel."""
    model = model.to(placement.device)
    if step.channels_last:
        model = model.to(memory_format=torch.channels_last)
    train_model, eval_model = step_models(
        model,
        placement.dist,
        placement.device,
        compile=step.compile,
        sync_batchnorm=step.sync_batchnorm,
    )
    return model, train_model, eval_model


def _rng_state() -> dict:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _bar_disabled(progress: bool | None) -> bool | None:
    # None lets tqdm decide: quiet when stderr is not a terminal.
    return None if progress is None else not progress
