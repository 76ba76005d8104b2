"""Every model x dataset composes and builds; top-level knobs reach the groups; schedules step right."""

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from reslab.config.validate import validate_config
from reslab.data.registry import declared_shape
from reslab.errors import ConfigError

from .conftest import CONFIG_DIR, compose_config

MODELS = ["mlp", "residual_mlp", "cnn", "resnet"]
# Every shipped dataset whose shape its definition gives (the others' shape comes from the data).
DATASETS = [
    name
    for name in sorted(p.stem for p in (CONFIG_DIR / "dataset").glob("*.yaml"))
    if declared_shape({"name": name}) is not None
]


@pytest.mark.parametrize("dataset", DATASETS)
@pytest.mark.parametrize("model", MODELS)
def test_every_model_dataset_pair_composes_and_builds(model, dataset):
    cfg = compose_config(f"model={model}", f"dataset={dataset}")
    shape, classes = declared_shape(cfg.dataset)
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


@pytest.mark.parametrize("monitor", ["val/f1_macro", "train/loss", "val/top5_acc"])
def test_every_logged_metric_can_be_monitored(monitor):
    validate_config(compose_config(f"monitor={monitor}"))


@pytest.mark.parametrize("monitor", ["val/accuracy", "test/acc", "lr"])
def test_a_metric_that_is_not_logged_is_refused_before_training(monitor):
    with pytest.raises(ConfigError, match="choose one of val/loss, val/acc"):
        validate_config(compose_config(f"monitor={monitor}"))


@pytest.mark.parametrize(
    "experiment", sorted(p.stem for p in (CONFIG_DIR / "experiment").glob("*.yaml"))
)
def test_an_experiments_own_top_level_values_win(experiment):
    """train.yaml's defaults must not override what an experiment sets (its monitor, tags)."""
    own = OmegaConf.load(CONFIG_DIR / "experiment" / f"{experiment}.yaml")
    cfg = compose_config(f"experiment={experiment}")
    for key in ("monitor", "tags", "depth", "width", "seed"):
        if key in own:
            assert cfg[key] == own[key], key
