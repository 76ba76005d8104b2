"""One training run, from a composed config to a finished run folder.

``train`` reads as its steps: check the config -> find the checkpoint to resume -> devices
-> data and model -> loggers -> loaders, schedule and trainer -> fit -> test on the best
checkpoint -> results.json, metrics.csv, checkpoints, figures. Failures are handled in one
place, ``RunOutcome``. Nothing global: every piece is built here and handed to the trainer
as an argument.
"""

from __future__ import annotations

import logging
import math
import time
import traceback
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from reslab.config.validate import build, check_config
from reslab.data import load_dataset
from reslab.data.image_data import ImageData
from reslab.data.loader import Augmentation, DataLoaderBatches, TensorBatchLoader, on_device
from reslab.errors import (
    ConfigError,
    ReslabError,
    ResumeRefused,
    TrainingError,
    TrainingInterrupted,
)
from reslab.explain.callbacks import explain_callbacks
from reslab.figures import (
    confusion_matrix_figure,
    sample_indices,
    sample_predictions_figure,
    save_figure,
)
from reslab.models import count_params
from reslab.seeding import seed_everything
from reslab.tracking import LoggerGroup, MetricsCSV, write_json
from reslab.tracking.results import describe
from reslab.training import distributed
from reslab.training.distributed import SINGLE, DistEnv
from reslab.training.early_stopping import EarlyStopping, monitor_mode
from reslab.training.fastpath import use_channels_last
from reslab.training.interrupts import GracefulStop
from reslab.training.metrics import format_class_report
from reslab.training.options import Placement, StepOptions, Stopping
from reslab.training.precision import resolve_device, resolve_precision
from reslab.training.resume import load_resume_state
from reslab.training.schedule import build_schedule
from reslab.training.trainer import Trainer

log = logging.getLogger("reslab")


def run_length_epochs(trainer_cfg: DictConfig, steps_per_epoch: int) -> int:
    """Epochs to train: ``max_steps`` (optimizer steps, rounded up to whole epochs) when set,
    else ``max_epochs``. Papers state budgets in iterations (ResNet on CIFAR: 64k)."""
    max_steps = trainer_cfg.get("max_steps")
    if max_steps is None:
        return int(trainer_cfg.max_epochs)
    return math.ceil(int(max_steps) / max(1, steps_per_epoch))


def build_loaders(
    cfg: DictConfig,
    data,
    device: torch.device,
    seed: int,
    *,
    dist_env: DistEnv = SINGLE,
    channels_last: bool = False,
) -> tuple[TensorBatchLoader | DataLoaderBatches, ...]:
    """Train/val/test loaders on ``device``; under torchrun each yields this rank's shard."""
    t = cfg.trainer
    aug = cfg.dataset.get("augment") or {}
    augmentation = Augmentation(int(aug.get("crop_padding", 0) or 0), bool(aug.get("hflip", False)))
    if cfg.dataset.batch_size % dist_env.world_size:
        raise ConfigError(
            f"dataset.batch_size={cfg.dataset.batch_size} is the global batch and must split "
            f"evenly over {dist_env.world_size} processes"
        )
    common = {
        "mean": data.mean,
        "std": data.std,
        "device": device,
        "channels_last": channels_last,
        "rank": dist_env.rank,
        "world_size": dist_env.world_size,
    }
    splits = (data.train, data.val, data.test)
    nbytes = sum(s.images.nbytes + s.labels.nbytes for s in splits)
    if on_device(cfg.dataset.get("on_device", "auto"), nbytes, device):
        batches: Any = TensorBatchLoader  # uint8 on the device, batches built there
    else:
        log.info("data: DataLoader with per-item transforms (dataset.on_device=false or too big)")
        batches = partial(DataLoaderBatches, num_workers=int(cfg.dataset.get("num_workers", 2)))
    train = batches(
        data.train,
        cfg.dataset.batch_size,
        shuffle=True,
        augmentation=augmentation,
        seed=seed,
        limit_batches=t.limit_train_batches,
        **common,
    )
    val = batches(
        data.val, cfg.dataset.eval_batch_size, limit_batches=t.limit_eval_batches, **common
    )
    test = batches(data.test, cfg.dataset.eval_batch_size, **common)
    return train, val, test


class RunOutcome:
    """results.json of one run, and the one place that handles its failures: whatever ends the
    ``with`` block, results.json ends with the run's status (and error), the dashboards are
    closed, the process group is left and a cluster's requeue is handed over."""

    def __init__(self, cfg: DictConfig, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.batch_size = int(cfg.dataset.batch_size)
        self.started = time.time()
        self.results: dict[str, Any] = {"status": "running", **describe(cfg)}
        self.loggers = LoggerGroup()
        self.dist_env = SINGLE
        self.stop: GracefulStop | None = None

    def write(self) -> None:
        if self.dist_env.is_main:
            write_json(self.run_dir / "results.json", self.results)

    def __enter__(self) -> RunOutcome:
        return self

    def __exit__(self, kind: Any, exc: BaseException | None, tb: Any) -> bool:
        try:
            if exc is not None:
                self._record_failure(exc)
        finally:
            self.results["duration_s"] = round(time.time() - self.started, 3)
            self.loggers.finish(self.results["status"])
            if not isinstance(exc, ResumeRefused):  # a refused resume leaves its run as it was
                self.write()
            distributed.teardown(self.dist_env)
            if self.stop is not None:
                self.stop.hand_over()  # submitit requeues now that last.pt and results.json exist
        if isinstance(exc, torch.OutOfMemoryError):
            raise TrainingError(self._out_of_memory()) from exc
        return False

    def _record_failure(self, exc: BaseException) -> None:
        if isinstance(exc, torch.OutOfMemoryError):
            self.results.update(status="failed", error=f"TrainingError: {self._out_of_memory()}")
            return
        interrupted = isinstance(exc, (KeyboardInterrupt, TrainingInterrupted))
        self.results["status"] = "interrupted" if interrupted else "failed"
        self.results["error"] = f"{exc.__class__.__name__}: {exc}".strip()
        if not isinstance(exc, (ReslabError, TrainingInterrupted, KeyboardInterrupt)):
            self.results["traceback"] = "".join(traceback.format_exception(exc))

    def _out_of_memory(self) -> str:
        return (
            f"out of GPU memory at dataset.batch_size={self.batch_size}; lower it "
            f"(e.g. dataset.batch_size={max(1, self.batch_size // 2)}) or use a smaller model"
        )


def train(
    cfg: DictConfig,
    run_dir: Path,
    extra_loggers: list | None = None,
    extra_callbacks: list | None = None,
) -> dict[str, Any]:
    """Train and test one config into ``run_dir``; returns what results.json holds."""
    run_dir = Path(run_dir)
    with RunOutcome(cfg, run_dir) as outcome:
        check_config(cfg)
        resume_state = load_resume_state(cfg, run_dir)
        place = set_up_devices(cfg, outcome)
        data, model = load_data_and_model(cfg, place, outcome)
        add_loggers(cfg, outcome, extra_loggers, resume_state)
        trainer, loaders = build_trainer(cfg, data, model, place, outcome, extra_callbacks)
        if resume_state is not None:
            trainer.load_state_dict(resume_state)
            outcome.results["resumed_from_epoch"] = trainer.epoch
        outcome.write()  # a job killed outright leaves "running": restarted, it resumes
        fit_and_test(trainer, loaders, data, outcome)
    return outcome.results


def set_up_devices(cfg: DictConfig, outcome: RunOutcome) -> Placement:
    """Seed, device and precision; under torchrun/SLURM tasks, join the process group (rank 0
    alone writes and logs)."""
    seed_everything(int(cfg.seed), bool(cfg.trainer.deterministic))
    device = resolve_device(str(cfg.trainer.device))
    outcome.dist_env, device = distributed.setup(device)
    if device.type == "cuda":
        torch.cuda.set_device(device)  # the job's streams and events live on its own GPU
    if not outcome.dist_env.is_main:
        log.setLevel(logging.WARNING)
    return Placement(device, resolve_precision(cfg.trainer.precision, device), outcome.dist_env)


def load_data_and_model(
    cfg: DictConfig, place: Placement, outcome: RunOutcome
) -> tuple[ImageData, torch.nn.Module]:
    """The dataset and the model built for its shape; their facts go into results.json."""
    data = load_dataset(cfg.dataset)
    model = build(cfg.model, input_shape=list(data.input_shape), num_classes=data.num_classes)
    results = outcome.results
    results.update(
        params=count_params(model),
        data_source=data.source,
        input_shape=list(data.input_shape),
        num_classes=data.num_classes,
        n_train=len(data.train),
        n_val=len(data.val),
        n_test=len(data.test),
        device=str(place.device),
        precision=place.precision.name,
        torch_threads=torch.get_num_threads(),
    )
    log.info(
        "%s: %s parameters, depth %s, on %s (precision %s)",
        results["name"],
        f"{results['params']:,}",
        cfg.get("depth"),
        place.device,
        place.precision.name,
    )
    for note in data.notes:
        log.warning("data: %s", note)
    return data, model


def build_trainer(
    cfg: DictConfig,
    data: ImageData,
    model: torch.nn.Module,
    place: Placement,
    outcome: RunOutcome,
    extra_callbacks: list | None,
) -> tuple[Trainer, tuple]:
    """Optimizer, loaders, schedule, loggers and callbacks, handed to one Trainer."""
    run_dir, device = outcome.run_dir, place.device
    optimizer = build(cfg.optimizer)(model.parameters())
    channels_last = use_channels_last(cfg.trainer.get("channels_last", "auto"), model, device)
    loaders = build_loaders(
        cfg, data, device, int(cfg.seed), dist_env=place.dist, channels_last=channels_last
    )
    mode = monitor_mode(cfg.monitor, cfg.trainer.early_stopping.mode)
    max_epochs = run_length_epochs(cfg.trainer, len(loaders[0]))
    schedule = build_schedule(
        cfg.scheduler,
        optimizer,
        steps_per_epoch=len(loaders[0]),
        max_epochs=max_epochs,
        monitor_mode=mode,
    )
    # explain.*: CAM timeline, per-layer gradient norms; checked on every rank, run on rank 0.
    explainers = explain_callbacks(cfg, model, data, run_dir)
    stop = cfg.trainer.early_stopping
    stopping = Stopping(
        max_epochs,
        EarlyStopping(cfg.monitor, mode, stop.patience, float(stop.min_delta)),
        int(cfg.trainer.overfitting_epochs),
    )
    trainer = Trainer(
        model,
        optimizer,
        schedule,
        stopping=stopping,
        classes=data.classes,
        checkpoint_dir=run_dir / "checkpoints",
        placement=place,
        step=step_options(cfg.trainer, channels_last),
        loggers=outcome.loggers,
        callbacks=[*(extra_callbacks or []), *(explainers if place.dist.is_main else [])],
        progress=cfg.trainer.progress if place.dist.is_main else False,
        checkpoint_extra={"config": OmegaConf.to_container(cfg, resolve=True)},
    )
    return trainer, loaders


def step_options(trainer_cfg: DictConfig, channels_last: bool) -> StepOptions:
    """How a step runs, from the trainer config (channels_last already resolved for the model)."""
    return StepOptions(
        grad_clip=trainer_cfg.grad_clip,
        channels_last=channels_last,
        compile=bool(trainer_cfg.get("compile", False)),
        sync_batchnorm=bool(trainer_cfg.get("sync_batchnorm", False)),
    )


def add_loggers(
    cfg: DictConfig, outcome: RunOutcome, extra_loggers: list | None, resume_state: dict | None
) -> None:
    """metrics.csv and the dashboards, on rank 0; a resumed run continues its rows and its
    dashboard runs rather than starting others."""
    loggers = outcome.loggers
    if outcome.dist_env.is_main:
        history = resume_state["history"] if resume_state else []
        loggers.add(MetricsCSV(outcome.run_dir / "metrics.csv", rows=history))
        for logger in extra_loggers or []:
            loggers.add(logger)
    if resume_state is not None:
        loggers.resume(int(resume_state["epoch"]))
    loggers.log_hparams({**describe(cfg), "params": outcome.results["params"]})


def fit_and_test(trainer: Trainer, loaders: tuple, data: ImageData, outcome: RunOutcome) -> None:
    """Fit (which ends with the best epoch's weights restored), test those weights once, and
    put both into results.json, the test outputs and the dashboards' summary."""
    train_loader, val_loader, test_loader = loaders
    outcome.stop = GracefulStop(trainer)
    with outcome.stop:
        fit = trainer.fit(train_loader, val_loader)
    tested = trainer.test(test_loader)
    best_row = next((r for r in fit.history if r["epoch"] == fit.best_epoch), fit.history[-1])
    outcome.results.update(
        status=fit.status,
        epochs=fit.epochs,
        best_epoch=fit.best_epoch,
        **{k: v for k, v in best_row.items() if k.startswith("val/")},
        **tested.metrics,
        final_train_loss=fit.history[-1]["train/loss"],
        best_train_loss=min(r["train/loss"] for r in fit.history),
        overfitting_epoch=fit.overfitting_epoch,
        class_report=tested.class_report,
    )
    if outcome.dist_env.is_main:
        _write_test_outputs(outcome.run_dir, tested, data, outcome.loggers, fit.epochs)
    log.info(
        "test on best epoch %d: test/acc %.4f  test/loss %.4f\n%s",
        fit.best_epoch,
        tested.metrics["test/acc"],
        tested.metrics["test/loss"],
        format_class_report(tested.class_report),
    )
    for note in data.notes:  # again beside the result, where a reader of the log's end looks
        log.warning("data: %s", note)
    outcome.loggers.log_summary({k: v for k, v in outcome.results.items() if k != "class_report"})


def _write_test_outputs(run_dir: Path, tested, data, loggers: LoggerGroup, step: int) -> None:
    """Confusion matrix (numbers and figure), a grid of sample predictions, and per-image test
    predictions (for McNemar); the figures also go to the dashboards."""
    classes = data.classes
    confusion = tested.confusion.to(torch.long)
    write_confusion_csv(run_dir / "confusion_matrix.csv", confusion, classes)
    figure = confusion_matrix_figure(confusion, classes)
    loggers.log_figure("test/confusion_matrix", figure, step)
    save_figure(figure, run_dir / "figures" / "confusion_matrix.png")
    shown = sample_indices(tested.labels, tested.predictions)
    figure = sample_predictions_figure(
        data.test.images[shown], tested.labels[shown], tested.predictions[shown], classes
    )
    loggers.log_figure("test/sample_predictions", figure, step)
    save_figure(figure, run_dir / "figures" / "sample_predictions.png")
    write_predictions(run_dir / "test_predictions.npz", tested)


def write_confusion_csv(path: Path, confusion: torch.Tensor, classes: list[str]) -> None:
    """The confusion matrix as CSV: one row per true class, one column per predicted class."""
    lines = ["true\\pred," + ",".join(classes)]
    lines += [
        f"{name}," + ",".join(str(int(v)) for v in row)
        for name, row in zip(classes, confusion.to(torch.long))
    ]
    path.write_text("\n".join(lines) + "\n")


def write_predictions(path: Path, tested) -> None:
    """Per-image labels and predictions, in split order (for McNemar and paired tests)."""
    np.savez_compressed(path, labels=tested.labels.numpy(), predictions=tested.predictions.numpy())
