"""The CNN half of the lab: exercise 2's depth study and the CIFAR-10 course's ladder compose,
build and run; the course's net is the one the course describes."""

from __future__ import annotations

import itertools

import pytest
import torch
from omegaconf import OmegaConf

from reslab.config.validate import build, check_model_builds, validate_config
from reslab.data import load_dataset
from reslab.data.registry import declared_shape
from reslab.models import count_params
from reslab.report.compare import main as compare
from reslab.run import train
from reslab.sweep import job_dirs
from reslab.tracking.results import read_json

from .conftest import CONFIG_DIR, compose_config
from .data_files import write_cifar10

RUNGS = [
    "1_plain_sgd",
    "2_standardize",
    "3_augment",
    "4_momentum_schedule",
    "5_dropout",
    "6_batchnorm",
]


def _sweep(experiment: str) -> list[list[str]]:
    """Every job of an experiment's sweep, as the overrides Hydra's basic sweeper makes."""
    params = OmegaConf.load(CONFIG_DIR / "experiment" / f"{experiment}.yaml").hydra.sweeper.params
    values = [[f"{key}={v}" for v in str(choices).split(",")] for key, choices in params.items()]
    return [list(job) for job in itertools.product(*values)]


@pytest.mark.parametrize("dataset", ["fashion_mnist", "cifar10"])
def test_every_cnn_depth_job_composes_validates_and_builds(dataset):
    jobs = _sweep("cnn_depth")
    assert len(jobs) == 3 * 5 * 2
    variants = set()
    for job in jobs:
        cfg = compose_config("experiment=cnn_depth", f"dataset={dataset}", *job)
        validate_config(cfg)
        shape, classes = declared_shape(cfg.dataset)
        check_model_builds(cfg.model, shape, classes)
        variants.add((cfg.model._target_.rsplit(".", 1)[-1], cfg.model.get("residual")))
        if cfg.model._target_.endswith("CNN"):
            assert cfg.model.norm == "none"  # the lab's plain CNN has no normalisation
    assert variants == {("CNN", None), ("ResNet", True), ("ResNet", False)}
    depths = {int(job[1].split("=")[1]) for job in jobs}
    assert {8, 20, 56} <= depths
    augment = compose_config("experiment=cnn_depth", f"dataset={dataset}").dataset.augment
    assert augment.hflip and augment.crop_padding == (2 if dataset == "fashion_mnist" else 4)


def test_plain_resnet_is_the_resnet_without_shortcuts_and_the_same_parameters():
    shape, classes = declared_shape({"name": "cifar10"})
    nets = {}
    for model in ("resnet", "plain_resnet"):
        cfg = compose_config(f"model={model}", "depth=20")
        nets[model] = build(cfg.model, input_shape=list(shape), num_classes=classes)
    assert nets["resnet"].residual and not nets["plain_resnet"].residual
    assert (
        count_params(nets["resnet"]) == count_params(nets["plain_resnet"]) == 269_722
    )  # 0.27M, as He et al. report


def test_the_course_net_has_the_parameters_counted_by_hand():
    cfg = compose_config("experiment=course_cnn", "dataset=fashion_mnist")
    net = build(cfg.model, input_shape=[1, 28, 28], num_classes=10)
    # 5x5 convs, padding 2, each followed by a 2x2 max-pool: 28 -> 14 -> 7 -> 3 pixels.
    conv1 = 5 * 5 * 1 * 32 + 32  # 832
    conv2 = 5 * 5 * 32 * 64 + 64  # 51,264
    conv3 = 5 * 5 * 64 * 64 + 64  # 102,464
    fc = 64 * 3 * 3 * 1000 + 1000  # 577,000
    classifier = 1000 * 10 + 10  # 10,010
    # Rung 6 adds batch norm: the convs lose their bias, each gains a scale and a shift.
    batch_norm = -(32 + 64 + 64) + 2 * (32 + 64 + 64)
    assert count_params(net) == conv1 + conv2 + conv3 + fc + classifier + batch_norm == 741_730
    plain = compose_config("experiment=course_cnn", "course=5_dropout")
    net = build(plain.model, input_shape=[3, 32, 32], num_classes=10)  # CIFAR-10: 32 -> 4 pixels
    assert (
        count_params(net)
        == (5 * 5 * 3 * 32 + 32) + conv2 + conv3 + (64 * 4 * 4 * 1000 + 1000) + classifier
    )


@pytest.fixture(scope="module")
def cifar_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("cifar")
    write_cifar10(root, per_batch=40)
    return root


def _rung(rung: str, root, run_dir=None):
    return compose_config(
        "experiment=course_cnn",
        f"course={rung}",
        f"dataset.root={root}",
        "dataset.download=false",
        "trainer=debug",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=1",
        "logger=none",
        run_dir=run_dir,
    )


@pytest.mark.parametrize("rung", RUNGS)
def test_every_rung_composes_and_trains_a_step(rung, cifar_root, tmp_path):
    cfg = _rung(rung, cifar_root, tmp_path)
    number = int(rung[0])
    assert cfg.label.startswith(f"{number} ")
    assert cfg.dataset.standardize == (number >= 2)
    assert bool(cfg.dataset.augment.hflip) == (number >= 3)
    assert cfg.optimizer.momentum == (0.9 if number >= 4 else 0.0)
    assert (cfg.scheduler._target_ is not None) == (number >= 4)
    assert cfg.model.dropout == (0.5 if number >= 5 else 0.0)
    assert cfg.model.norm == ("batch" if number >= 6 else "none")
    data = load_dataset(cfg.dataset)
    assert (data.mean == (0.0, 0.0, 0.0)) == (number == 1)
    results = train(cfg, tmp_path)
    assert results["status"] == "completed" and results["label"] == cfg.label
    assert torch.isfinite(torch.tensor(results["test/loss"]))


def test_the_ladder_sweeps_every_rung_and_the_report_names_them(cifar_root, tmp_path, cli, capsys):
    sweep = tmp_path / "ladder"
    proc = cli(
        "-m",
        "experiment=course_cnn",
        f"dataset.root={cifar_root}",
        "dataset.download=false",
        "trainer=debug",
        "trainer.max_epochs=2",
        "logger=none",
        f"hydra.sweep.dir={sweep}",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = job_dirs(sweep)
    assert [j.name.split(",", 1)[0] for j in jobs] == [
        f"{i}_course={r}" for i, r in enumerate(RUNGS)
    ]
    labels = [read_json(j / "results.json")["label"] for j in jobs]
    assert compare([str(sweep)]) == 0
    report = (sweep / "report.md").read_text()
    for label in labels:
        assert f"| {label} | cnn | plain | 5 |" in report
    assert "overfitting from epoch" in report
    assert "## Each setting against the one before it: McNemar's test" in report
    assert f"| {labels[0]} (seed 0) | {labels[1]} (seed 0) | 5 / 5 |" in report
    assert (sweep / "curves.png").is_file() and not (sweep / "depth.png").exists()
