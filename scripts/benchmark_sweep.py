"""A whole study run one job at a time against the same study under joblib, in one run.

    python scripts/benchmark_sweep.py                                  # experiment=mlp_depth
    python scripts/benchmark_sweep.py --rounds 2 --n-jobs 2 --out sweep_bench.json
    python scripts/benchmark_sweep.py model=mlp depth=2,4 seed=0,1     # any sweep's overrides

Each variant is the command a user would type (``python train.py -m ...``), timed as a
whole process, so start-up, data loading and the sweep summary count. ``sequential`` is
Hydra's default launcher (one job after another in one process, torch using every core);
``joblib`` adds ``hydra/launcher=joblib hydra.launcher.n_jobs=N`` (N jobs at once, each
with cores // N torch threads). Rounds alternate the order (sequential first, then joblib
first, ...) so that a machine getting busier or quieter affects both alike. The figure of
merit is the ratio of median wall times, sequential / joblib.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from reslab.placement import usable_cores
from reslab.tracking.results import read_json

ROOT = Path(__file__).resolve().parent.parent

DEFAULT_STUDY = ["experiment=mlp_depth"]


def time_sweep(overrides: list[str], sweep_dir: Path) -> dict[str, Any]:
    """Run ``train.py -m overrides`` into ``sweep_dir``; its wall time and job counts."""
    command = [sys.executable, str(ROOT / "train.py"), "-m", *overrides]
    started = time.perf_counter()
    proc = subprocess.run(
        [*command, f"hydra.sweep.dir={sweep_dir}"], cwd=ROOT, capture_output=True, text=True
    )
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"error: the sweep failed ({' '.join(command)}):\n{proc.stderr[-2000:]}")
    summary = read_json(sweep_dir / "summary.json")
    return {"wall_s": round(wall, 2), "jobs": summary["jobs"], "succeeded": summary["succeeded"]}


def variants(study: list[str], n_jobs: int) -> dict[str, list[str]]:
    joblib = ["hydra/launcher=joblib", f"hydra.launcher.n_jobs={n_jobs}"]
    return {"sequential": study, "joblib": [*study, *joblib]}


def run_rounds(study: list[str], n_jobs: int, rounds: int, tmp: Path) -> dict[str, list[dict]]:
    timed: dict[str, list[dict]] = {"sequential": [], "joblib": []}
    commands = variants(study, n_jobs)
    for r in range(rounds):
        order = list(commands) if r % 2 == 0 else list(commands)[::-1]
        for name in order:
            result = time_sweep(commands[name], tmp / f"{name}-{r}")
            timed[name].append(result)
            print(f"round {r + 1}: {name:<10} {result['wall_s']:8.1f} s ({result['jobs']} jobs)")
    return timed


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("overrides", nargs="*", help="the study's overrides (default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=1, help="timings per variant")
    parser.add_argument("--n-jobs", type=int, default=0, help="joblib jobs at once (0: cores)")
    parser.add_argument("--out", type=Path, help="also write the figures as JSON")
    args = parser.parse_args(argv)
    study = args.overrides or DEFAULT_STUDY
    cores = usable_cores()
    n_jobs = args.n_jobs or cores
    with tempfile.TemporaryDirectory(prefix="reslab-sweep-bench-") as tmp:
        timed = run_rounds(study, n_jobs, args.rounds, Path(tmp))
    medians = {name: statistics.median(r["wall_s"] for r in runs) for name, runs in timed.items()}
    report = {
        "study": study,
        "n_jobs": n_jobs,
        "machine": {"cpu_count": cores, "platform": platform.platform()},
        "variants": {name: {"median_wall_s": medians[name], "runs": timed[name]} for name in timed},
        "speedup": round(medians["sequential"] / medians["joblib"], 3),
    }
    print(
        f"{' '.join(study)} on {cores} cores: sequential {medians['sequential']:.1f} s, "
        f"joblib n_jobs={n_jobs} {medians['joblib']:.1f} s: {report['speedup']:.2f}x faster"
    )
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    main()
