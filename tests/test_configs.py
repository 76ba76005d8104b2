"""Every model x dataset composes and builds; top-level knobs reach the groups; schedules step right."""

import math

import pytest
import torch
from hydra.utils import instantiate

from reslab.config.shapes import DATASET_SHAPES
from reslab.config.validate import validate_config
from reslab.errors import ConfigError
from reslab.training.schedule import build_schedule

from .conftest import compose_config

MODELS = ["mlp", "residual_mlp", "cnn", "resnet"]
DATASETS = ["mnist", "fashion_mnist", "cifar10"]


@pytest.mark.parametrize("dataset", DATASETS)
@pytest.mark.parametrize("model", MODELS)
def test_every_model_dataset_pair_composes_and_builds(model, dataset):
    cfg = compose_config(f"model={model}", f"dataset={dataset}")
    shape, classes = DATASET_SHAPES[dataset]
    net = instantiate(cfg.model, input_shape=list(shape), num_classes=classes)
    assert net(torch.randn(2, *shape)).shape == (2, classes)


def test_depth_and_width_without_prefix_feed_the_model():
    cfg = compose_config("model=resnet", "depth=56", "width=8")
    assert cfg.depth == 56 and cfg.model.depth == 56 and cfg.model.width == 8


def test_plain_twin_override():
    cfg = compose_config("model=resnet", "depth=56", "model.residual=false")
    assert cfg.model.residual is False


def test_experiment_sets_lab_mlp():
    cfg = compose_config("experiment=lab_mlp")
    assert list(cfg.model.hidden_sizes) == [256, 128]
    assert cfg.optimizer.lr == pytest.approx(1e-3)


def _schedule(*overrides, steps_per_epoch=10, epochs=5):
    cfg = compose_config(*overrides)
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


def test_linear_warmup_then_schedule():
    _, schedule = _schedule("optimizer=sgd", "scheduler=cosine", "scheduler.warmup_epochs=1")
    ramp = []
    for _ in range(10):
        ramp.append(schedule.lr)
        schedule.after_batch()
    assert ramp == pytest.approx([0.1 * (i + 1) / 10 for i in range(10)])
    assert schedule.lr == pytest.approx(0.1)
    schedule.after_epoch(1.0)
    # The 4 epochs after warm-up follow the cosine of a 4-epoch run without warm-up: they
    # start at the base lr and the last one is not spent at eta_min.
    per_epoch = []
    for _ in range(4):
        per_epoch.append(schedule.lr)
        for _ in range(10):
            schedule.after_batch()
        schedule.after_epoch(1.0)
    assert per_epoch == pytest.approx([0.1 * (1 + math.cos(math.pi * t / 4)) / 2 for t in range(4)])


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


@pytest.mark.parametrize("monitor", ["val/f1_macro", "train/loss", "val/top5_acc"])
def test_every_logged_metric_can_be_monitored(monitor):
    validate_config(compose_config(f"monitor={monitor}"))


@pytest.mark.parametrize("monitor", ["val/accuracy", "test/acc", "lr"])
def test_a_metric_that_is_not_logged_is_refused_before_training(monitor):
    with pytest.raises(ConfigError, match="choose one of val/loss, val/acc"):
        validate_config(compose_config(f"monitor={monitor}"))
