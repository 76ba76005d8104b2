"""Where a job of a parallel sweep runs: its share of the CPU cores and, on a machine with
several GPUs, its GPU. Without this every joblib worker would take all cores (or GPU 0)."""

from __future__ import annotations

import os
from typing import Any

from omegaconf import DictConfig


def runs_side_by_side(launcher: Any) -> bool:
    """Whether the launcher runs several jobs of a sweep at once on this machine (joblib)."""
    return "joblib" in str(launcher.get("_target_", "")).lower()


def usable_cores() -> int:
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def jobs_at_once(n_jobs: int | None, cores: int) -> int:
    """joblib's reading of ``n_jobs``: a count, or -1 for every core, -2 for all but one, ..."""
    n_jobs = int(n_jobs or -1)
    return n_jobs if n_jobs > 0 else max(1, cores + 1 + n_jobs)


def threads_per_job(n_jobs: int | None, cores: int) -> int:
    return max(1, cores // jobs_at_once(n_jobs, cores))


def gpu_for_job(job_num: int, gpus: int) -> str | None:
    """Jobs take the GPUs in turn: job k on cuda:<k mod gpus>; None with fewer than two GPUs."""
    return f"cuda:{job_num % gpus}" if gpus > 1 else None


def place_job(cfg: DictConfig, launcher: Any, job_num: int) -> None:
    """Share the cores among the jobs joblib runs at once, and spread ``trainer.device=auto``
    jobs over the GPUs; launchers that give each job its own machine are left alone."""
    if not runs_side_by_side(launcher):
        return
    import torch

    torch.set_num_threads(threads_per_job(launcher.get("n_jobs"), usable_cores()))
    if str(cfg.trainer.device) == "auto" and torch.cuda.is_available():
        device = gpu_for_job(job_num, torch.cuda.device_count())
        if device is not None:
            cfg.trainer.device = device
