"""``scripts/evaluate.py``: test a saved run again, on its own data or another compatible dataset.

python scripts/evaluate.py run=outputs/runs/<date>/<run>                 # best.pt, its test split
python scripts/evaluate.py run=<run> checkpoint=last split=val
python scripts/evaluate.py run=<run> dataset=fashion_mnist dataset.root=<dir>

Writes ``<run>/evaluations/<checkpoint>_<dataset>_<split>.json`` (+ ``.confusion_matrix.csv``,
``.predictions.npz``) and never touches results.json. The data, checkpoint and metrics go
through the code training uses: load_dataset + build_loaders, load_checkpoint, Trainer.test.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from reslab.cli import run_script
from reslab.config.overrides import override_key
from reslab.errors import ConfigError
from reslab.saved_run import build_model, checkpoint_path, load_run_config

log = logging.getLogger("reslab")

SPLITS = ("test", "val")
# device=run: the device the run trained on (its trainer.device), so a run trained on the CPU in
# fp32 is not re-tested in bf16 on a GPU and gives the numbers training reported.
OPTIONS = {"run": None, "checkpoint": "best", "split": "test", "device": "run"}
USAGE = (
    "usage: python scripts/evaluate.py run=<run folder> [checkpoint=best|last|<path.pt>] "
    "[split=test|val] [dataset=<name>] [dataset.<key>=<value> ...] [device=run|auto|cpu|cuda]"
)


def parse_args(argv: list[str]) -> tuple[DictConfig, str | None, list[str]]:
    """The options, the dataset name (None: the run's own) and the ``dataset.*`` overrides."""
    bad = [a for a in argv if "=" not in a]
    if bad:
        raise ConfigError(f"{bad[0]!r} is not key=value; {USAGE}")
    # dataset=<name> and dataset.root=... cannot share one dotlist, so they are split off.
    name = next((a.split("=", 1)[1] for a in argv if a.startswith("dataset=")), None)
    overrides = [a for a in argv if a.startswith("dataset.")]
    rest = [a for a in argv if not a.startswith(("dataset=", "dataset."))]
    unknown = [override_key(a) for a in rest if override_key(a) not in OPTIONS]
    if unknown:
        raise ConfigError(f"{unknown[0]} is not an evaluate option; use one of: {_names()}")
    opts = OmegaConf.merge(OmegaConf.create(OPTIONS), OmegaConf.from_dotlist(rest))
    if not opts.run:
        raise ConfigError(f"run= is required: the run folder to evaluate; {USAGE}")
    if opts.split not in SPLITS:
        raise ConfigError(f"split={opts.split} is unknown; choose test or val")
    return opts, name, overrides


def _names() -> str:
    return ", ".join([*OPTIONS, "dataset", "dataset.<key>"])


def evaluation_dataset(
    cfg: DictConfig, name: str | None, overrides: list[str], config_dir: Path
) -> DictConfig:
    """The run's dataset config with ``overrides``, or ``dataset=<name>`` composed from
    configs/ as train.py would compose it."""
    if name is None or name == cfg.dataset.get("name"):
        dataset = cfg.dataset.copy()
        dataset.download = False  # its own data: the run had it, evaluating never fetches
        given = OmegaConf.from_dotlist([o.removeprefix("dataset.") for o in overrides])
        return OmegaConf.merge(dataset, given)
    from reslab.config.compose import compose_train_config

    try:
        return compose_train_config(config_dir, [f"dataset={name}", *overrides]).dataset
    except Exception as exc:  # Hydra's message names the missing option
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"dataset={name}: {first}") from None


def check_compatible(trained: tuple, evaluated: tuple, run_dir: Path, name: str) -> None:
    """The model takes one input shape and predicts a fixed number of classes."""
    (shape, classes), (new_shape, new_classes) = trained, evaluated
    if tuple(shape) != tuple(new_shape):
        raise ConfigError(
            f"dataset={name} has inputs {tuple(new_shape)} but {run_dir.name} trained on "
            f"{tuple(shape)}; evaluate it on a dataset of the same input shape"
        )
    if classes != new_classes:
        raise ConfigError(
            f"dataset={name} has {new_classes} classes but {run_dir.name} predicts {classes}; "
            "evaluate it on a dataset with as many classes"
        )


def evaluate_split(
    cfg: DictConfig, model: torch.nn.Module, data: Any, split: str, device: torch.device
):
    """Trainer.test on one split, with the loaders, precision and layout training used."""
    from reslab.run import build_loaders, step_options
    from reslab.training.fastpath import use_channels_last
    from reslab.training.options import Placement
    from reslab.training.precision import resolve_precision
    from reslab.training.trainer import Trainer

    channels_last = use_channels_last(cfg.trainer.get("channels_last", "auto"), model, device)
    _, val, test = build_loaders(cfg, data, device, int(cfg.seed), channels_last=channels_last)
    placement = Placement(device, resolve_precision(cfg.trainer.precision, device))
    step = step_options(cfg.trainer, channels_last)
    trainer = Trainer.for_evaluation(model, data.classes, placement, step)
    return trainer.test(test if split == "test" else val, split)


def evaluate_run(
    opts: DictConfig, name: str | None, overrides: list[str], config_dir: Path
) -> list[Path]:
    """Evaluate one checkpoint of one run; returns the files written."""
    from reslab.data import load_dataset
    from reslab.data.registry import declared_shape
    from reslab.training.checkpoint import load_checkpoint
    from reslab.training.precision import resolve_precision

    run_dir = Path(opts.run)
    if not run_dir.is_dir():
        raise ConfigError(f"run={run_dir} is not a folder; point it at outputs/runs/<date>/<run>")
    ckpt = checkpoint_path(run_dir, str(opts.checkpoint))
    state = load_checkpoint(ckpt, map_location="cpu")
    cfg = load_run_config(run_dir, state)
    device = evaluation_device(str(opts.device), cfg)
    trained = declared_shape(cfg.dataset) or recorded_shape(run_dir)  # what the run trained on
    cfg.dataset = evaluation_dataset(cfg, name, overrides, config_dir)
    new_name = str(cfg.dataset.get("name"))
    known = declared_shape(cfg.dataset)
    if trained is not None and known is not None:  # refuse before loading any data
        check_compatible(trained, known, run_dir, new_name)
    data = load_dataset(cfg.dataset)
    if trained is not None:
        check_compatible(trained, (data.input_shape, data.num_classes), run_dir, new_name)
    model = build_model(cfg, list(data.input_shape), data.num_classes, state)
    tested = evaluate_split(cfg, model, data, str(opts.split), device)
    label = str(opts.checkpoint) if opts.checkpoint in ("best", "last") else ckpt.stem
    facts = {"checkpoint": str(ckpt), "epoch": state.get("epoch"), "dataset": new_name}
    precision = resolve_precision(cfg.trainer.precision, device).name
    facts.update(device=str(device), precision=precision)
    facts.update(data_source=data.source, split=str(opts.split), n_images=len(tested.labels))
    return write_evaluation(
        run_dir / "evaluations", f"{label}_{new_name}_{opts.split}", facts, tested, data
    )


def recorded_shape(run_dir: Path) -> tuple | None:
    """The input shape and classes results.json recorded (runs on the user's own data)."""
    from reslab.tracking.results import read_json

    try:
        results = read_json(run_dir / "results.json")
    except (OSError, ValueError):
        return None
    if "input_shape" not in results or "num_classes" not in results:
        return None
    return tuple(results["input_shape"]), int(results["num_classes"])


def evaluation_device(option: str, cfg: DictConfig) -> torch.device:
    """``device=run`` (the default) is the run's own trainer.device; else the one asked for."""
    from reslab.training.precision import resolve_device

    if option != "run":
        return resolve_device(option)
    trained_on = str(cfg.trainer.get("device", "auto"))
    if trained_on.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(
            f"the run trained on trainer.device={trained_on} and this machine has no CUDA GPU; "
            "pass device=cpu to evaluate it on the CPU (in fp32)"
        )
    return resolve_device(trained_on)


def write_evaluation(folder: Path, stem: str, facts: dict, tested: Any, data: Any) -> list[Path]:
    """``<stem>.json`` (facts, metrics, per-class report), its confusion matrix and predictions."""
    from reslab.run import write_confusion_csv, write_predictions
    from reslab.tracking import write_json

    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{stem}.json", folder / f"{stem}.confusion_matrix.csv"]
    paths.append(folder / f"{stem}.predictions.npz")
    write_json(paths[0], {**facts, **tested.metrics, "class_report": tested.class_report})
    write_confusion_csv(paths[1], tested.confusion, data.classes)
    write_predictions(paths[2], tested)
    return paths


def main(argv: list[str] | None = None, config_dir: Path | None = None) -> int:
    """The command line: one line and a non-zero exit for bad input, as scripts/explain.py."""
    config_dir = config_dir or Path(__file__).resolve().parents[2] / "configs"
    argv = sys.argv[1:] if argv is None else argv
    return run_script(argv, USAGE, __doc__, lambda a: evaluate_run(*parse_args(a), config_dir))
