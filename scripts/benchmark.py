"""reslab's trainer against the training loop a user would write by hand, in one process.

    python scripts/benchmark.py                          # every case this machine can run
    python scripts/benchmark.py --cases mlp,startup --epochs 4 --repeats 3 --out bench.json

Five variants train the same model with the same optimizer, batch size and data, on the
same device, interleaved (a b c, b c a, c a b, ...) so that a machine getting busier or
quieter during the run affects all of them alike:

  bare_loop          a hand-written loop: torch DataLoader over a Dataset that applies
                     torchvision transforms per image, fp32 eager, loss.item() per step,
                     validation under no_grad each epoch
  fast_loop          the fastest hand-written loop: the splits normalised once into float
                     tensors in memory, batches sliced from a permutation, no DataLoader,
                     sums kept on the device (cases without augmentation only)
  reslab             reslab.run.train with default settings and the default loggers on
                     (TensorBoard + W&B offline): data on the device, batched augmentation,
                     bf16 autocast and channels_last on CUDA
  reslab_no_loggers  the same with logger=none (metrics.csv only)
  reslab_dataloader  reslab with dataset.on_device=false: the bare loop's data path, so
                     its ratio to bare_loop is the trainer's own overhead

An epoch is training plus validation; its time, for reslab, runs between two consecutive
per-epoch logging calls, so it includes logging and checkpointing. The first epoch of each
run is warm-up and not counted. Data are random uint8 images of the real sets' shapes,
written in their on-disk formats (throughput does not depend on pixel values).

Cases: ``mlp`` (MNIST-shaped, CPU), ``resnet20`` and ``resnet56`` (CIFAR-shaped, CUDA; skipped
without a GPU), ``startup`` (wall time of ``python train.py --cfg job``), ``loader_memory``
(peak memory of loading CIFAR-10-sized data: reslab's loader against reading the files alone
and against standardisation statistics from a float64 copy, each in a fresh process).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from reslab.data.files import write_cifar10_files, write_mnist_files

ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = ROOT / "configs"
VARIANTS = ("bare_loop", "fast_loop", "reslab", "reslab_no_loggers", "reslab_dataloader")
CASES = ("mlp", "resnet20", "resnet56", "startup", "loader_memory")
MEMORY_VARIANTS = ("read_files", "float64_statistics", "reslab")
# Case -> (overrides, device it needs). CPU cases run on the CPU even where a GPU exists.
TRAINING_CASES = {
    "mlp": (["dataset=mnist", "model=mlp"], "cpu"),
    "resnet20": (["dataset=cifar10", "model=resnet", "depth=20"], "cuda"),
    "resnet56": (["dataset=cifar10", "model=resnet", "depth=56"], "cuda"),
}
COMMON = [
    "trainer.early_stopping.patience=null",  # a fixed number of epochs
    "trainer.progress=false",
    "dataset.download=false",
    "optimizer=sgd",
]


# ---------------------------------------------------------------- data files
def write_mnist_shaped(root: Path, n_train: int, n_test: int, seed: int) -> None:
    """Random 28x28 images and labels as MNIST's four IDX files in ``root/MNIST/raw``."""
    rng = np.random.default_rng(seed)

    def split(n: int) -> tuple[np.ndarray, np.ndarray]:
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        return images, rng.integers(0, 10, size=(n,), dtype=np.uint8)

    write_mnist_files(root / "MNIST" / "raw", split(n_train), split(n_test))


def write_cifar_shaped(root: Path, n_train: int, n_test: int, seed: int) -> None:
    """Random 3x32x32 images in CIFAR-10's python-pickle batches in ``root/cifar-10-batches-py``."""
    rng = np.random.default_rng(seed)

    def split(n: int) -> tuple[np.ndarray, list[int]]:
        images = rng.integers(0, 256, size=(n, 3, 32, 32), dtype=np.uint8)
        return images, rng.integers(0, 10, size=n).tolist()

    batches = [split(n_train // 5 + (i < n_train % 5)) for i in range(5)]
    write_cifar10_files(root, batches, split(n_test), [f"class{i}" for i in range(10)])


# ------------------------------------------------------ hand-written loops
def _model_and_optimizer(cfg: Any, data: Any, device: Any) -> tuple[Any, Any, Any]:
    """The config's model (seeded as reslab seeds it), optimizer and loss, for a hand-written loop."""
    import torch
    from torch import nn

    from reslab.config.validate import build

    torch.manual_seed(int(cfg.seed))
    model = build(cfg.model, input_shape=list(data.input_shape), num_classes=data.num_classes)
    model = model.to(device)
    return model, build(cfg.optimizer)(model.parameters()), nn.CrossEntropyLoss()


def bare_loop(cfg: Any, data: Any, device: Any, epochs: int, workers: int) -> list[float]:
    """The loop a user writes from the PyTorch tutorials; returns each epoch's seconds."""
    import torch
    from torch.utils.data import DataLoader, Dataset
    from torchvision.transforms import v2

    class Images(Dataset):
        def __init__(self, split: Any, transform: Any) -> None:
            self.images, self.labels, self.transform = split.images, split.labels, transform

        def __len__(self) -> int:
            return len(self.labels)

        def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
            return self.transform(self.images[i]), int(self.labels[i])

    normalise = [v2.ToDtype(torch.float32, scale=True), v2.Normalize(data.mean, data.std)]
    augment = []
    aug = cfg.dataset.get("augment") or {}
    if aug.get("crop_padding"):
        augment.append(v2.RandomCrop(data.input_shape[-1], padding=int(aug.crop_padding)))
    if aug.get("hflip"):
        augment.append(v2.RandomHorizontalFlip())
    pin = device.type == "cuda"
    loader_args = {"num_workers": workers, "pin_memory": pin, "persistent_workers": workers > 0}
    train_loader = DataLoader(
        Images(data.train, v2.Compose([*augment, *normalise])),
        batch_size=int(cfg.dataset.batch_size),
        shuffle=True,
        **loader_args,
    )
    val_loader = DataLoader(
        Images(data.val, v2.Compose(normalise)),
        batch_size=int(cfg.dataset.eval_batch_size),
        **loader_args,
    )

    model, optimizer, loss_fn = _model_and_optimizer(cfg, data, device)
    times = []
    for _ in range(epochs):
        start = time.perf_counter()
        model.train()
        running_loss, correct, seen = 0.0, 0, 0
        for x, y in train_loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            logits = model(x)
            loss = loss_fn(logits, y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            running_loss += loss.item() * len(y)
            correct += (logits.argmax(1) == y).sum().item()
            seen += len(y)
        model.eval()
        val_loss, val_correct = 0.0, 0
        with torch.no_grad():
            for x, y in val_loader:
                x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                logits = model(x)
                val_loss += loss_fn(logits, y).item() * len(y)
                val_correct += (logits.argmax(1) == y).sum().item()
        times.append(time.perf_counter() - start)
    return times


def fast_loop(cfg: Any, data: Any, device: Any, epochs: int) -> list[float]:
    """The fastest loop a user writes by hand: the splits normalised once into float tensors
    in memory, batches sliced from a random permutation, no DataLoader; training and
    validation loss and accuracy (what reslab reports per epoch as a minimum) summed on the
    device and read once per epoch. No augmentation: only for cases without."""
    import torch

    def normalised(split: Any) -> tuple[torch.Tensor, torch.Tensor]:
        c = split.images.shape[1]
        mean = torch.tensor(data.mean).view(1, c, 1, 1)
        std = torch.tensor(data.std).view(1, c, 1, 1)
        x = (split.images.to(torch.float32) / 255 - mean) / std
        return x.to(device), split.labels.to(device)

    (x_train, y_train), (x_val, y_val) = normalised(data.train), normalised(data.val)
    batch, eval_batch = int(cfg.dataset.batch_size), int(cfg.dataset.eval_batch_size)
    model, optimizer, loss_fn = _model_and_optimizer(cfg, data, device)
    times = []
    for _ in range(epochs):
        start = time.perf_counter()
        model.train()
        total_loss = torch.zeros((), device=device)
        total_correct = torch.zeros((), device=device, dtype=torch.long)
        order = torch.randperm(len(y_train), device=device)
        for begin in range(0, len(order), batch):
            idx = order[begin : begin + batch]
            x, y = x_train[idx], y_train[idx]
            logits = model(x)
            loss = loss_fn(logits, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total_loss += loss.detach() * len(y)
            total_correct += (logits.detach().argmax(1) == y).sum()
        model.eval()
        val_loss, val_correct = torch.zeros((), device=device), torch.zeros((), device=device)
        with torch.no_grad():
            for begin in range(0, len(y_val), eval_batch):
                x, y = x_val[begin : begin + eval_batch], y_val[begin : begin + eval_batch]
                logits = model(x)
                val_loss += loss_fn(logits, y) * len(y)
                val_correct += (logits.argmax(1) == y).sum()
        n_train, n_val = len(y_train), len(y_val)
        sums = (
            total_loss / n_train,
            total_correct / n_train,
            val_loss / n_val,
            val_correct / n_val,
        )
        torch.stack(sums).tolist()  # the epoch's four numbers, read once
        times.append(time.perf_counter() - start)
    return times


# ------------------------------------------------------------ reslab's runs
def reslab_run(cfg: Any, run_dir: Path) -> list[float]:
    """reslab.run.train with the config's loggers; returns each epoch's seconds."""
    from reslab.run import train
    from reslab.tracking.base import RunLogger
    from reslab.tracking.factory import build_loggers
    from reslab.training.callbacks import Callback

    ticks: list[float] = []

    class EpochClock(RunLogger, Callback):
        """Ticks at the start of fit and, last among the loggers, at each epoch's logging."""

        name = "clock"

        def on_fit_start(self, trainer: Any) -> None:
            ticks.append(time.perf_counter())

        def log_metrics(self, metrics: dict[str, float], step: int) -> None:
            ticks.append(time.perf_counter())

    clock = EpochClock()
    results = train(
        cfg, run_dir, extra_loggers=[*build_loggers(cfg, run_dir), clock], extra_callbacks=[clock]
    )
    if results["status"] != "completed":
        raise SystemExit(f"error: reslab run ended {results['status']}: {results.get('error')}")
    return [b - a for a, b in zip(ticks, ticks[1:])]


# ------------------------------------------------------------------ a case
def run_case(name: str, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    import torch

    from reslab.config.compose import compose_train_config
    from reslab.data import load_dataset

    overrides, needs = TRAINING_CASES[name]
    if needs == "cuda" and not torch.cuda.is_available():
        print(f"{name}: skipped, no CUDA GPU on this machine", file=sys.stderr)
        return {"skipped": "no CUDA GPU on this machine"}
    device = torch.device(needs)
    root = tmp / f"data-{name}"
    n_train = args.train_size or (60000 if name == "mlp" else 50000)
    n_test = max(args.train_size // 6, 100) if args.train_size else 10000
    writer = write_mnist_shaped if name == "mlp" else write_cifar_shaped
    writer(root, n_train, n_test, seed=0)
    settings = [
        *overrides,
        *COMMON,
        f"dataset.root={root}",
        f"trainer.device={needs}",
        f"trainer.max_epochs={args.epochs}",
        f"dataset.num_workers={args.workers}",
        *(["logger=none"] if args.no_loggers else ["logger=default", "logger.wandb.mode=offline"]),
        *args.overrides,
    ]
    per_variant = {
        "bare_loop": [*settings, "trainer.precision=32"],
        "fast_loop": [*settings, "trainer.precision=32"],
        "reslab": settings,
        "reslab_no_loggers": [*(s for s in settings if not s.startswith("logger")), "logger=none"],
        "reslab_dataloader": [*settings, "dataset.on_device=false"],
    }
    base_cfg = compose_train_config(CONFIG_DIR, settings, tmp / "compose")
    data = load_dataset(base_cfg.dataset)
    samples = len(data.train)
    data_bytes = sum(s.images.nbytes + s.labels.nbytes for s in (data.train, data.val, data.test))
    augmented = any((base_cfg.dataset.get("augment") or {}).values())
    names = tuple(v for v in VARIANTS if not (augmented and v == "fast_loop"))
    runs: dict[str, list[dict]] = {v: [] for v in names}
    for repeat in range(args.repeats):
        shift = repeat % len(names)
        for variant in names[shift:] + names[:shift]:
            run_dir = tmp / f"{name}-{variant}-{repeat}"
            cfg = compose_train_config(CONFIG_DIR, per_variant[variant], run_dir)
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            if variant == "bare_loop":
                epochs = bare_loop(cfg, data, device, args.epochs, args.workers)
            elif variant == "fast_loop":
                epochs = fast_loop(cfg, data, device, args.epochs)
            else:
                epochs = reslab_run(cfg, run_dir)
            run = {"epoch_s": epochs, **_peak_memory(device)}
            runs[variant].append(run)
            counted = epochs[1:] or epochs
            print(
                f"{name} repeat {repeat + 1}/{args.repeats}  {variant:18s} "
                f"median epoch {statistics.median(counted):7.3f} s  "
                f"{samples / statistics.median(counted):9.0f} samples/s",
                file=sys.stderr,
            )
    variants = {}
    for variant, variant_runs in runs.items():
        # Epoch 1 of every run is warm-up (allocations, cuDNN autotuning, lazy imports).
        counted = [t for r in variant_runs for t in (r["epoch_s"][1:] or r["epoch_s"])]
        median = statistics.median(counted)
        variants[variant] = {
            "median_epoch_s": median,
            "samples_per_s": samples / median,
            "runs": variant_runs,
        }
    epoch = {v: variants[v]["median_epoch_s"] for v in names}
    bare, fast, same_path = epoch["bare_loop"], epoch["reslab"], epoch["reslab_dataloader"]
    ratios = {
        "overhead_same_data_path": same_path / bare,  # target <= 1.03
        "speedup_reslab_vs_bare_loop": bare / fast,  # target >= 2.5 for ResNet-20 on a GPU
    }
    if "fast_loop" in epoch:  # target <= 1.03, loggers off; with loggers on, reported
        ratios["reslab_no_loggers_vs_fast_loop"] = epoch["reslab_no_loggers"] / epoch["fast_loop"]
        ratios["reslab_vs_fast_loop"] = epoch["reslab"] / epoch["fast_loop"]
    return {
        "device": str(device),
        "overrides": settings,
        "train_images_per_epoch": samples,
        "val_images_per_epoch": len(data.val),
        "batch_size": int(base_cfg.dataset.batch_size),
        "dataset_bytes_uint8": data_bytes,
        "variants": variants,
        "ratios": ratios,
    }


def _peak_memory(device: Any) -> dict[str, float]:
    import torch

    rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    peak = {"process_peak_rss_mb": rss_kib / 1024}
    if device.type == "cuda":
        peak["cuda_max_allocated_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    return peak


def startup(repeats: int) -> dict[str, Any]:
    """Wall time of `python train.py --cfg job`: imports, config composition, printing."""
    runs = []
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, str(ROOT / "train.py"), "--cfg", "job"],
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
        runs.append(time.perf_counter() - started)
    return {
        "command": "python train.py --cfg job",
        "runs_s": runs,
        "median_s": statistics.median(runs),
    }


def loader_memory(tmp: Path, repeats: int, n_train: int = 50000) -> dict[str, Any]:
    """Peak resident memory above the imports of loading CIFAR-10-sized files (50,000 train,
    10,000 test), each variant in a fresh process: the files alone, the split plus float64
    statistics (the baseline), and reslab's loader (split plus histogram statistics)."""
    root = tmp / "data-loader-memory"
    n_test = max(n_train // 5, 10)
    write_cifar_shaped(root, n_train, n_test, seed=0)
    variants: dict[str, Any] = {}
    for variant in MEMORY_VARIANTS:
        peaks = []
        for _ in range(repeats):
            probe = subprocess.run(
                [sys.executable, __file__, "--memory-probe", variant, str(root)],
                capture_output=True,
                text=True,
                check=True,
            )
            peaks.append(json.loads(probe.stdout.strip().splitlines()[-1])["peak_above_imports_mb"])
        variants[variant] = {"peak_above_imports_mb": statistics.median(peaks), "runs_mb": peaks}
        print(f"loader_memory {variant:20s} {statistics.median(peaks):8.0f} MB", file=sys.stderr)
    files = variants["read_files"]["peak_above_imports_mb"]
    return {
        "images": f"{n_train:,} train + {n_test:,} test, 3x32x32 uint8 (CIFAR-10's python batches)",
        "variants": variants,
        "ratios": {
            "reslab_vs_float64_statistics": variants["reslab"]["peak_above_imports_mb"]
            / variants["float64_statistics"]["peak_above_imports_mb"],
            "reslab_extra_over_files_mb": variants["reslab"]["peak_above_imports_mb"] - files,
        },
    }


def memory_probe(variant: str, root: str) -> None:
    """Run one loader_memory variant in this (fresh) process and print its peak as JSON."""
    import torch

    from reslab.config.compose import compose_train_config
    from reslab.data import load_dataset
    from reslab.data.cifar import load_cifar10
    from reslab.data.splits import split_train_val

    cfg = compose_train_config(CONFIG_DIR, ["dataset=cifar10", f"dataset.root={root}"])
    page = os.sysconf("SC_PAGE_SIZE")
    with open("/proc/self/statm") as f:
        imports_mb = int(f.read().split()[1]) * page / 2**20
    if variant == "reslab":
        load_dataset(cfg.dataset)
    else:
        train = load_cifar10(cfg.dataset, Path(root)).train
        if variant == "float64_statistics":
            train, _val = split_train_val(train, 0.1, 0)
            x = train.images.to(torch.float64).div_(255.0)
            x.mean(dim=(0, 2, 3)), x.std(dim=(0, 2, 3))
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"peak_above_imports_mb": peak_mb - imports_mb}))


def machine() -> dict[str, Any]:
    import torch

    info = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    return info


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for every case")
    parser.add_argument("--cases", default=",".join(CASES), help=f"comma list of {CASES}")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per run (first is warm-up)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per variant")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader worker processes")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    parser.add_argument("--train-size", type=int, default=0, help="training images (0: real size)")
    parser.add_argument("--startup-repeats", type=int, default=5)
    parser.add_argument(
        "--no-loggers",
        action="store_true",
        help="metrics.csv only, no TensorBoard/W&B (quick checks)",
    )
    parser.add_argument(
        "--out", type=Path, default=ROOT / "outputs" / "benchmarks" / "benchmark.json"
    )
    parser.add_argument("--memory-probe", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_probe:
        memory_probe(*args.memory_probe)
        return {}
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        parser.error(f"unknown case {unknown[0]!r}; choose from {', '.join(CASES)}")
    os.environ.setdefault("WANDB_SILENT", "true")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)

    report: dict[str, Any] = {
        "command": " ".join(
            ["python scripts/benchmark.py", *(argv if argv is not None else sys.argv[1:])]
        ),
        "machine": machine(),
        "epochs": args.epochs,
        "repeats": args.repeats,
        "workers": args.workers,
        "loggers": "none" if args.no_loggers else "tensorboard+wandb(offline)",
        "cases": {},
    }
    with tempfile.TemporaryDirectory(prefix="reslab-benchmark-") as tmp:
        for case in cases:
            if case == "startup":
                report["cases"][case] = startup(args.startup_repeats)
            elif case == "loader_memory":
                report["cases"][case] = loader_memory(
                    Path(tmp), args.repeats, args.train_size or 50000
                )
            else:
                report["cases"][case] = run_case(case, args, Path(tmp))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(summary(report))
    print(f"written to {args.out}")
    return report


def summary(report: dict[str, Any]) -> str:
    lines = []
    for case, result in report["cases"].items():
        if "skipped" in result:
            lines.append(f"{case}: skipped ({result['skipped']})")
        elif case == "startup":
            lines.append(f"startup: {result['command']} median {result['median_s']:.2f} s")
        elif case == "loader_memory":
            peaks = "  ".join(
                f"{v} {result['variants'][v]['peak_above_imports_mb']:,.0f} MB"
                for v in MEMORY_VARIANTS
            )
            ratios = result["ratios"]
            lines.append(
                f"loader_memory (peak above imports): {peaks}  |  reslab / float64_statistics "
                f"{ratios['reslab_vs_float64_statistics']:.2f}, reslab - read_files "
                f"{ratios['reslab_extra_over_files_mb']:+,.0f} MB"
            )
        else:
            speeds = "  ".join(
                f"{v} {run['samples_per_s']:,.0f}/s" for v, run in result["variants"].items()
            )
            ratios = result["ratios"]
            lines.append(
                f"{case} on {result['device']}: {speeds}  |  "
                f"overhead (reslab_dataloader/bare_loop epoch time) "
                f"{ratios['overhead_same_data_path']:.3f}  "
                f"speed-up (reslab vs bare_loop) {ratios['speedup_reslab_vs_bare_loop']:.2f}x"
            )
            if "reslab_vs_fast_loop" in ratios:
                lines.append(
                    f"  epoch time against the fast hand-written loop: reslab, loggers off "
                    f"{ratios['reslab_no_loggers_vs_fast_loop']:.3f}, loggers on "
                    f"{ratios['reslab_vs_fast_loop']:.3f}"
                )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
