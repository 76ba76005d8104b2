"""What TensorBoard + W&B cost per epoch: the same training with the loggers off and on.

    python scripts/benchmark_logging.py                       # tiny MLP on MNIST, CPU
    python scripts/benchmark_logging.py --repeats 5 model=cnn depth=4 trainer.device=cuda

Both variants run in this one process, alternating (off, on, on, off, ...) so that a machine
getting slower or faster during the run affects both alike. An epoch's wall time is taken
between two consecutive per-epoch logging calls, so it includes the loggers' own work; the
trainer's `epoch_time_s` stops before logging and would hide it. Start-up and finish (W&B's
init and sync-to-disk) are one-off costs, reported apart. metrics.csv is written in both.
The time spent inside each dashboard logger's per-epoch call is also measured directly: free
of run-to-run noise, but blind to work W&B hands to its background process, which the
epoch-time comparison does see; the CPU time those background processes use during the
epochs is measured as well (Linux).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = ROOT / "configs"
DEFAULTS = [
    "model=mlp",
    "depth=3",
    "width=256",
    "trainer.device=cpu",
    "trainer.early_stopping.patience=null",
    "trainer.progress=false",
    "dataset.download=false",
]


def compose(overrides: list[str], run_dir: Path):
    from reslab.config.compose import compose_train_config

    return compose_train_config(CONFIG_DIR, overrides, run_dir)


def child_cpu_seconds() -> float | None:
    """CPU time used so far by this process's descendants (W&B's service and system monitor
    do their work there, out of sight of the per-call timing); None without Linux's /proc."""
    proc = Path("/proc")
    if not (proc / "self" / "stat").exists():
        return None
    parents: dict[int, int] = {}
    cpu: dict[int, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for stat in proc.glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # the process ended while being read
        pid = int(stat.parent.name)
        parents[pid] = int(fields[1])
        cpu[pid] = (int(fields[11]) + int(fields[12])) / tick  # utime + stime
    family, total = {os.getpid()}, 0.0
    changed = True
    while changed:
        changed = False
        for pid, parent in parents.items():
            if parent in family and pid not in family:
                family.add(pid)
                total += cpu[pid]
                changed = True
    return total


def run_once(overrides: list[str], run_dir: Path, loggers_on: bool) -> dict[str, Any]:
    from reslab.run import train
    from reslab.tracking.base import RunLogger
    from reslab.tracking.factory import build_loggers

    class Timed(RunLogger):
        """Passes every call on to ``inner`` and adds up the time spent in ``log_metrics``."""

        def __init__(self, inner: RunLogger) -> None:
            self.inner, self.name, self.seconds = inner, inner.name, 0.0

        def resume(self, step: int) -> None:
            self.inner.resume(step)

        def log_hparams(self, params: dict[str, Any]) -> None:
            self.inner.log_hparams(params)

        def log_metrics(self, metrics: dict[str, float], step: int) -> None:
            started = time.perf_counter()
            self.inner.log_metrics(metrics, step)
            self.seconds += time.perf_counter() - started

        def log_figure(self, tag: str, figure: Any, step: int) -> None:
            self.inner.log_figure(tag, figure, step)

        def log_summary(self, summary: dict[str, Any]) -> None:
            self.inner.log_summary(summary)

        def finish(self, status: str) -> None:
            self.inner.finish(status)

    class EpochClock(RunLogger):
        """Last in the group: the time between its calls spans one epoch and all its logging."""

        name = "clock"

        def __init__(self) -> None:
            self.ticks: list[float] = []
            self.cpu: list[float | None] = []  # background processes' CPU time at each tick

        def log_metrics(self, metrics: dict[str, float], step: int) -> None:
            self.ticks.append(time.perf_counter())
            self.cpu.append(child_cpu_seconds())

    preset = "logger=default" if loggers_on else "logger=none"
    extra = ["logger.wandb.mode=offline"] if loggers_on else []
    cfg = compose([*overrides, preset, *extra], run_dir)
    clock = EpochClock()
    timed = [Timed(logger) for logger in build_loggers(cfg, run_dir)] if loggers_on else []
    started = time.perf_counter()
    results = train(cfg, run_dir, extra_loggers=[*timed, clock])
    total = time.perf_counter() - started
    epochs = [b - a for a, b in zip(clock.ticks, clock.ticks[1:])]
    if not epochs:
        raise SystemExit("error: need at least 2 epochs; set --epochs 2 or more")
    n_epochs = len(clock.ticks)
    return {
        "loggers": "tensorboard+wandb(offline)" if loggers_on else "none",
        "status": results["status"],
        "epoch_s": epochs,
        "median_epoch_s": statistics.median(epochs),
        "logging_s_per_epoch": {t.name: t.seconds / n_epochs for t in timed},
        "background_cpu_s_per_epoch": (
            None
            if None in (clock.cpu[0], clock.cpu[-1])
            else (clock.cpu[-1] - clock.cpu[0]) / len(epochs)
        ),
        "total_s": total,
        "one_off_s": total - sum(epochs),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. model=cnn depth=4")
    parser.add_argument("--epochs", type=int, default=6, help="epochs per run (first one unused)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per variant")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "outputs" / "benchmarks" / "logging.json"
    )
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    overrides = [*DEFAULTS, f"trainer.max_epochs={args.epochs}", *args.overrides]

    runs: dict[str, list[dict]] = {"off": [], "on": []}
    with tempfile.TemporaryDirectory(prefix="reslab-bench-") as tmp:
        # Warm-up (imports, data decoding, allocator) so neither variant pays it alone.
        run_once([*overrides, "trainer.max_epochs=2"], Path(tmp) / "warmup", loggers_on=True)
        for i in range(args.repeats):
            order = ("off", "on") if i % 2 == 0 else ("on", "off")
            for variant in order:
                run = run_once(overrides, Path(tmp) / f"{variant}-{i}", variant == "on")
                runs[variant].append(run)
                print(
                    f"repeat {i + 1}/{args.repeats}  loggers {variant:3s}  "
                    f"median epoch {run['median_epoch_s'] * 1000:8.1f} ms  "
                    f"one-off {run['one_off_s']:.2f} s",
                    file=sys.stderr,
                )

    def pooled(variant: str) -> float:
        return statistics.median(t for r in runs[variant] for t in r["epoch_s"])

    off, on = pooled("off"), pooled("on")
    ratio = on / off
    background = {
        v: statistics.median(r["background_cpu_s_per_epoch"] or 0.0 for r in runs[v]) for v in runs
    }
    in_loggers = {
        name: statistics.median(r["logging_s_per_epoch"][name] for r in runs["on"])
        for name in runs["on"][0]["logging_s_per_epoch"]
    }
    one_off = {v: statistics.median(r["one_off_s"] for r in runs[v]) for v in runs}
    report = {
        "command": " ".join(
            ["python scripts/benchmark_logging.py", *(argv if argv is not None else sys.argv[1:])]
        ),
        "overrides": overrides,
        "epochs": args.epochs,
        "repeats": args.repeats,
        "median_epoch_s_off": off,
        "median_epoch_s_on": on,
        "ratio_on_off": ratio,
        "within_5_percent": ratio <= 1.05,
        "logging_s_per_epoch": in_loggers,
        "logging_share_of_epoch": sum(in_loggers.values()) / off,
        "median_background_cpu_s_per_epoch": background,
        "median_one_off_s": one_off,
        "machine": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "cpu": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "threads": torch.get_num_threads(),
        },
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(
        f"median epoch: loggers off {off * 1000:.1f} ms, on {on * 1000:.1f} ms, "
        f"ratio {ratio:.3f} ({'within' if ratio <= 1.05 else 'over'} 5%); "
        f"one-off start+finish: off {one_off['off']:.2f} s, on {one_off['on']:.2f} s\n"
        "time inside the loggers per epoch: "
        + ", ".join(f"{k} {v * 1000:.1f} ms" for k, v in in_loggers.items())
        + f" ({sum(in_loggers.values()) / off:.2%} of an epoch)\n"
        "CPU time of background processes (W&B's service) per epoch: "
        f"off {background['off'] * 1000:.0f} ms, on {background['on'] * 1000:.0f} ms\n"
        f"written to {args.out}"
    )


if __name__ == "__main__":
    main()
