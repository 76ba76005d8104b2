"""Under load: a sweep of 20 tiny jobs on Hydra's joblib launcher with two workers."""

from __future__ import annotations

import json
import re

from .data_files import write_cifar10

N_JOBS = 20


def test_twenty_jobs_on_two_joblib_workers_lose_and_mix_nothing(cli, tmp_path):
    data = tmp_path / "data"
    write_cifar10(data, per_batch=10)
    sweep = tmp_path / "sweep"
    result = cli(
        "-m",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        f"hydra.sweep.dir={sweep}",
        "dataset=cifar10",
        f"dataset.root={data}",
        "dataset.download=false",
        "dataset.batch_size=10",
        "model=mlp",
        "depth=2",
        "width=8",
        "trainer=debug",
        "trainer.max_epochs=1",
        "logger=none",
        f"seed=range(0,{N_JOBS})",
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]

    job_dirs = sorted(p for p in sweep.iterdir() if p.is_dir() and (p / ".hydra").is_dir())
    assert len(job_dirs) == N_JOBS
    seeds = set()
    for job in job_dirs:
        results = json.loads((job / "results.json").read_text())  # whole, parseable JSON
        assert results["status"] == "completed", (job.name, results.get("error"))
        seeds.add(results["seed"])
        # Each job's log and metrics belong to that job alone: one epoch, one test line,
        # and its own seed in its own folder name.
        assert re.search(rf"[_,]seed={results['seed']}(,|$)", job.name), job.name
        log = (job / "train.log").read_text()
        assert log.count("test on best epoch") == 1, job.name
        assert log.count("epoch 1/1") == 1, job.name
        rows = (job / "metrics.csv").read_text().strip().splitlines()
        assert len(rows) == 2, job.name  # header + one epoch
        assert (job / "checkpoints" / "best.pt").is_file()
    assert seeds == set(range(N_JOBS))
