"""``scripts/explain.py``: explain a finished run from its folder, writing into ``<run>/figures/``.

python scripts/explain.py run=outputs/runs/<date>/<run> method=cam n=16
python scripts/explain.py run=<resnet run> method=gradcam layer=layer3.2.conv2 target=true
python scripts/explain.py run=<run> method=weights
python scripts/explain.py run=<run> method=gradflow twin=<run of the residual (or plain) twin>
python scripts/explain.py run=<resnet run> method=cam compare=twin     # beside its plain twin
python scripts/explain.py run=<run> method=cam compare=<another run>   # beside any run
"""

from __future__ import annotations

import csv
import json
import logging
import sys
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import torch
from matplotlib.figure import Figure
from omegaconf import DictConfig, OmegaConf
from torch import nn

from reslab.cli import run_script
from reslab.data.normalise import normalise_images
from reslab.data.registry import declared_shape
from reslab.errors import ConfigError, ReslabError
from reslab.explain.callbacks import pick_images
from reslab.explain.cam import class_activation_maps, gap_head
from reslab.explain.gradcam import default_layer, find_layer, grad_cam
from reslab.explain.gradient_flow import gradient_flow_figure, layer_grad_norms, weight_layers
from reslab.explain.overlay import maps_figure
from reslab.explain.weights import first_layer_images, first_weight_layer, image_grid, save_grid_png
from reslab.saved_run import build_model, checkpoint_path, input_shape, load_run_config
from reslab.training.checkpoint import load_checkpoint

log = logging.getLogger("reslab")

METHODS = ("cam", "gradcam", "weights", "gradflow")
DEFAULTS: dict[str, Any] = {
    "run": None,  # the run folder (required)
    "method": "cam",
    "n": None,  # images (cam, gradcam: 16) or first-layer units (weights: 64)
    "target": "pred",  # pred | true | a class index
    "layer": None,  # gradcam: module name; null = the last feature maps
    "split": "test",  # test | val: where the images come from
    "checkpoint": "best",  # best | last | a path to a .pt file
    "device": "auto",
    "twin": None,  # gradflow: the twin's run folder; null = look beside the run
    "compare": None,  # cam, gradcam: another run's maps of the same images below; twin = its twin
    "batches": 4,  # gradflow: training batches the norms are averaged over
    "seed": 0,  # gradflow: the seed of the models at initialisation
    "log": True,  # also add the figures to the run's TensorBoard folder and W&B
    "dataset": {"root": None},  # where the data lives, when not where the run found it
}
USAGE = (
    "usage: python scripts/explain.py run=<run folder> [method=cam|gradcam|weights|gradflow] "
    "[n=16] [target=pred|true|<class>] [layer=<module>] [split=test|val] [checkpoint=best|last] "
    "[twin=<run folder>] [compare=twin|<run folder>] [batches=4] [device=auto|cpu|cuda] "
    "[log=true] [dataset.root=<dir>]"
)


def parse_args(argv: list[str]) -> DictConfig:
    """key=value arguments over DEFAULTS; unknown keys and bad values are one-line errors."""
    bad = [a for a in argv if "=" not in a]
    if bad:
        raise ConfigError(f"{bad[0]!r} is not key=value; {USAGE}")
    try:
        given = OmegaConf.from_dotlist(argv)
    except Exception as exc:
        raise ConfigError(f"cannot parse the arguments ({exc}); write them as key=value") from None
    opts = OmegaConf.create(DEFAULTS)
    OmegaConf.set_struct(opts, True)
    known = _keys(opts)
    unknown = [k for k in _keys(given) if k not in known]
    if unknown:
        names = ", ".join(sorted(k for k in known))
        raise ConfigError(f"{unknown[0]} is not an explain option; use one of: {names}")
    opts = OmegaConf.merge(opts, given)
    if not opts.run:
        raise ConfigError(f"run= is required: the run folder to explain; {USAGE}")
    if opts.method not in METHODS:
        raise ConfigError(f"method={opts.method} is unknown; choose one of {', '.join(METHODS)}")
    if opts.compare and opts.method not in ("cam", "gradcam"):
        raise ConfigError(f"compare= works with method=cam or gradcam, not {opts.method}")
    if opts.split not in ("test", "val"):
        raise ConfigError(f"split={opts.split} is unknown; choose test or val")
    # `target=true` reaches us as the boolean True.
    opts.target = "true" if opts.target is True else opts.target
    if opts.target not in ("pred", "true") and not (
        isinstance(opts.target, int) and not isinstance(opts.target, bool) and opts.target >= 0
    ):
        raise ConfigError(f"target={opts.target} is unknown; use pred, true or a class index")
    for key in ("n", "batches"):
        value = opts[key]
        if value is not None and (
            not isinstance(value, int) or isinstance(value, bool) or value < 1
        ):
            raise ConfigError(f"{key}={value} must be a whole number >= 1")
    return opts


def _keys(cfg: Any, prefix: str = "") -> list[str]:
    keys = []
    for k, v in cfg.items():
        keys += _keys(v, f"{prefix}{k}.") if isinstance(v, DictConfig) else [f"{prefix}{k}"]
    return keys


def check_applicable(model: nn.Module, cfg: DictConfig, opts: DictConfig) -> None:
    """Refuse a method the model cannot be explained with, before any data is loaded."""
    if opts.method == "cam":
        gap_head(model)
    elif opts.method == "gradcam":
        find_layer(model, opts.layer)
    elif opts.method == "weights":
        first_weight_layer(model)
    elif "residual" not in cfg.model:
        raise ConfigError(
            "method=gradflow compares a model with its residual twin, and this model has none; "
            "explain an mlp, residual_mlp or resnet run"
        )


def load_data(cfg: DictConfig, opts: DictConfig):
    from reslab.data import load_dataset

    dataset = cfg.dataset.copy()
    if opts.dataset.root:
        dataset.root = opts.dataset.root
    dataset.download = False  # explaining never fetches: the run had its data
    return load_dataset(dataset)


def explain_run(opts: DictConfig) -> list[Path]:
    """Run one method on one run folder; returns the files written."""
    from reslab.training.precision import resolve_device

    run_dir = Path(opts.run)
    if not run_dir.is_dir():
        raise ConfigError(f"run={run_dir} is not a folder; point it at outputs/runs/<date>/<run>")
    device = resolve_device(str(opts.device))
    state = load_checkpoint(checkpoint_path(run_dir, str(opts.checkpoint)), map_location=device)
    cfg = load_run_config(run_dir, state)
    step = int(state.get("epoch", 0) or 0)
    data = None
    if declared_shape(cfg.dataset) is None:  # only the data tell the model's shape
        data = load_data(cfg, opts)
    shape, num_classes = input_shape(cfg, data)
    model = build_model(cfg, shape, num_classes, state).to(device)
    check_applicable(model, cfg, opts)
    figures = run_dir / "figures"
    if opts.method == "weights":
        images = first_layer_images(model, shape, int(opts.n or 64))
        path = figures / "weights_first_layer.png"
        save_grid_png(image_grid(images), path)
        return [path]
    data = data if data is not None else load_data(cfg, opts)
    if opts.method == "gradflow":
        fig, table = gradient_flow(cfg, model, data, opts, run_dir, device)
        written = {figures / "gradient_flow.png": ("explain/gradient_flow", fig)}
        return [*publish(written, cfg, run_dir, step, opts.log), table]
    compared = load_compared(opts, run_dir, cfg, device) if opts.compare else None
    return publish(
        activation_maps(model, data, opts, figures, device, compared, run_title(cfg)),
        cfg,
        run_dir,
        step,
        opts.log,
    )


def run_title(cfg: DictConfig) -> str:
    """``resnet d20``, ``resnet (plain) d20``: what a row of maps belongs to."""
    family = str(cfg.model.get("_target_", "")).rsplit(".", 1)[-1].lower()
    plain = " (plain)" if cfg.model.get("residual") is False and family != "mlp" else ""
    return f"{family}{plain} d{cfg.get('depth')}"


def load_compared(opts: DictConfig, run_dir: Path, cfg: DictConfig, device) -> tuple:
    """``compare=``'s run (``twin``: the run's plain or residual twin beside it): its
    model, its data (for its own normalisation) and its title."""
    other = find_twin(run_dir, cfg) if opts.compare == "twin" else Path(opts.compare)
    if other is None:
        raise ConfigError(
            f"compare=twin: no finished twin of {run_dir.name} (same model, depth, width and "
            "data, the other model.residual) beside it; pass compare=<run folder>"
        )
    if not other.is_dir():
        raise ConfigError(f"compare={other} is not a folder; point it at a run folder")
    state = load_checkpoint(checkpoint_path(other, str(opts.checkpoint)), map_location=device)
    other_cfg = load_run_config(other, state)
    if other_cfg.dataset.get("name") != cfg.dataset.get("name"):
        raise ConfigError(
            f"compare={other} trained on {other_cfg.dataset.get('name')} and this run on "
            f"{cfg.dataset.get('name')}; compare runs of the same dataset"
        )
    other_data = load_data(other_cfg, opts)
    model = build_model(other_cfg, *input_shape(other_cfg, other_data), state).to(device)
    check_applicable(model, other_cfg, opts)
    return model, other_data, run_title(other_cfg)


def activation_maps(
    model: nn.Module,
    data: Any,
    opts: DictConfig,
    figures: Path,
    device: torch.device,
    compared: tuple | None = None,
    title_of_run: str = "",
) -> dict[Path, tuple[str, Figure]]:
    """CAM (class map over the class-agnostic global map) or Grad-CAM of ``n`` images; with
    ``compared`` (model, data, title), the other run's maps of the same images beneath."""
    split = data.test if opts.split == "test" else data.val
    index = pick_images(split.labels, int(opts.n or 16))
    images, labels = split.images[index], split.labels[index]
    target = opts.target
    if target in ("pred", "true"):
        explained = "the predicted class" if target == "pred" else "the true class"
    else:
        explained = f"class {data.classes[target] if target < len(data.classes) else target}"
    suffix = "" if target == "pred" else f"_{target}" if target == "true" else f"_class{target}"
    name = "CAM" if opts.method == "cam" else "Grad-CAM"
    layer = opts.layer or default_layer(model)
    where = "" if opts.method == "cam" else f" at {layer}"
    result = _maps(model, images, labels, data, opts, device)
    if compared is not None:
        other_model, other_data, other_title = compared
        other = _maps(other_model, images, labels, other_data, opts, device)
        rows = {f"{name} {title_of_run}": result.maps, f"{name} {other_title}": other.maps}
        predictions = {row: r.predictions for row, r in zip(rows, (result, other))}
        title = f"{name}{where} of {explained}: {title_of_run} above {other_title} (true class; → each net's answer, red when wrong)"
        fig = maps_figure(
            images, rows, labels, result.predictions, data.classes, title, predictions
        )
        stem = f"{opts.method}_compare{suffix}"
        return {figures / f"{stem}.png": (f"explain/{stem}", fig)}
    if opts.method == "cam":
        rows = {"CAM": result.maps, "global map": result.global_maps}
        title = f"CAM of {explained} and the class-agnostic global map (true / predicted)"
        stem = f"cam{suffix}"
    else:
        rows = {"Grad-CAM": result.maps}
        title = f"Grad-CAM of {explained}{where} (true / predicted)"
        stem = f"gradcam_{layer}{suffix}"
    fig = maps_figure(images, rows, labels, result.predictions, data.classes, title)
    return {figures / f"{stem}.png": (f"explain/{stem}", fig)}


def _maps(model: nn.Module, images, labels, data: Any, opts: DictConfig, device):
    """One model's CAM or Grad-CAM of uint8 ``images``, normalised as that model trained."""
    x = normalise_images(images, data.mean, data.std).to(device)
    if opts.method == "cam":
        return class_activation_maps(model, x, opts.target, labels.to(device))
    # layer=None: each model's own last feature maps, so a ResNet compares with a CNN.
    return grad_cam(model, x, opts.layer, opts.target, labels.to(device))


def gradient_flow(
    cfg: DictConfig, model: nn.Module, data: Any, opts: DictConfig, run_dir: Path, device
) -> tuple[Figure, Path]:
    """Per-layer gradient norms of the model and its twin, at initialisation and trained."""
    from reslab.data.loader import TensorBatchLoader

    residual = bool(cfg.model.residual)
    twin_cfg = cfg.copy()
    twin_cfg.model.residual = not residual
    shape, num_classes = input_shape(cfg, data)
    batches = list(
        TensorBatchLoader(
            data.train,
            cfg.dataset.batch_size,
            data.mean,
            data.std,
            device=device,
            shuffle=True,
            seed=int(opts.seed),
            limit_batches=int(opts.batches),
        )
    )
    kind = {True: "residual", False: "plain"}
    curves: dict[str, list[float]] = {}
    for this, this_cfg in ((residual, cfg), (not residual, twin_cfg)):
        torch.manual_seed(int(opts.seed))
        try:
            fresh = build_model(this_cfg, shape, num_classes, None).to(device)
        except ReslabError as exc:
            raise ConfigError(
                f"method=gradflow: the {kind[this]} twin cannot be built: {exc}"
            ) from None
        curves[f"{kind[this]}, init"] = layer_grad_norms(fresh, batches).tolist()
    curves[f"{kind[residual]}, trained"] = layer_grad_norms(model, batches).tolist()
    twin_dir = Path(opts.twin) if opts.twin else find_twin(run_dir, cfg)
    if twin_dir is not None:
        trained_twin = load_twin(twin_dir, cfg, model, shape, num_classes, device)
        curves[f"{kind[not residual]}, trained"] = layer_grad_norms(trained_twin, batches).tolist()
    else:
        log.warning(
            "no trained %s twin found beside %s; pass twin=<run folder> to draw it after training",
            kind[not residual],
            run_dir,
        )
    table = run_dir / "figures" / "gradient_flow.csv"
    table.parent.mkdir(parents=True, exist_ok=True)
    with table.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["layer", *curves])
        for i, row in enumerate(zip(*curves.values()), start=1):
            writer.writerow([i, *(f"{v:.6g}" for v in row)])
    title = (
        f"gradient flow, {type(model).__name__} depth {cfg.get('depth')} on "
        f"{cfg.dataset.get('name')}: plain vs residual"
    )
    return gradient_flow_figure(curves, title), table


def load_twin(
    twin_dir: Path, cfg: DictConfig, model: nn.Module, shape, num_classes: int, device
) -> nn.Module:
    """The trained twin: the same layers as ``model``, the other ``residual`` setting."""
    if not twin_dir.is_dir():
        raise ConfigError(f"twin={twin_dir} is not a folder; point it at the twin's run folder")
    state = load_checkpoint(checkpoint_path(twin_dir, "best"), map_location=device)
    twin_cfg = load_run_config(twin_dir, state)
    residual = bool(cfg.model.residual)
    if "residual" not in twin_cfg.model or bool(twin_cfg.model.residual) == residual:
        raise ConfigError(
            f"twin={twin_dir} is not the {'plain' if residual else 'residual'} twin of this run; "
            "point twin= at a run with the same model and the other model.residual"
        )
    twin = build_model(twin_cfg, shape, num_classes, state).to(device)
    if len(weight_layers(twin)) != len(weight_layers(model)):
        raise ConfigError(
            f"twin={twin_dir} has {len(weight_layers(twin))} weight layers and this run "
            f"{len(weight_layers(model))}; the twin needs the same depth and width"
        )
    return twin


def find_twin(run_dir: Path, cfg: DictConfig) -> Path | None:
    """A sibling run (same sweep) with the same model family, depth, width and data but the
    other ``residual`` setting, e.g. from ``python train.py -m model=mlp,residual_mlp depth=32``;
    matched on what each run's results.json describes."""

    def described(folder: Path) -> tuple | None:
        try:
            facts = json.loads((folder / "results.json").read_text())
        except (OSError, ValueError):
            return None
        family = str(facts.get("model")).replace("residual_mlp", "mlp")
        keys = ("depth", "width", "dataset")
        return (family, *(facts.get(k) for k in keys), bool(facts.get("residual")))

    mine = described(run_dir)
    if mine is None:
        return None
    want = (*mine[:-1], not mine[-1])
    for other in sorted(run_dir.resolve().parent.iterdir()):
        if other == run_dir.resolve() or not (other / "checkpoints" / "best.pt").is_file():
            continue
        if described(other) == want:
            return other
    return None


def publish(
    figures: dict[Path, tuple[str, Figure]],
    cfg: DictConfig,
    run_dir: Path,
    step: int,
    dashboards: bool,
) -> list[Path]:
    """Save each figure as a PNG and, when ``dashboards``, add it to the run's dashboards."""
    for path, (_tag, fig) in figures.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120)
    if dashboards:
        to_dashboards({tag: fig for tag, fig in figures.values()}, cfg, run_dir, step)
    for _tag, fig in figures.values():
        plt.close(fig)
    return list(figures)


def to_dashboards(figures: dict[str, Figure], cfg: DictConfig, run_dir: Path, step: int) -> None:
    """Figures into the run's own TensorBoard folder (beside its curves), and to W&B as a run
    of job type ``explain`` in the training run's group, when the run used them."""
    from reslab.tracking import LoggerGroup
    from reslab.tracking.factory import RunInfo, build_loggers

    settings = cfg.get("logger") or {}
    tb = settings.get("tensorboard")
    if tb and tb.get("figures", True):
        from torch.utils.tensorboard import SummaryWriter

        with SummaryWriter(log_dir=str(run_dir / tb.get("dir", "tensorboard"))) as writer:
            for tag, fig in figures.items():
                writer.add_figure(tag, fig, step, close=False)
    if not (settings.get("wandb") or {}).get("figures", True):
        return
    name = str(cfg.get("name") or run_dir.name)
    try:
        loggers = build_loggers(cfg, run_dir, RunInfo(name=f"{name}-explain", group=name))
    except Exception as exc:  # the PNGs are written; a dashboard must not fail the command
        log.warning("figures not sent to W&B: %s", exc)
        return
    group = LoggerGroup([lg for lg in loggers if lg.name == "wandb"])
    if not group.loggers:
        return
    for logger in group.loggers:
        logger.job_type = "explain"
    from reslab.tracking.results import describe

    group.log_hparams(describe(cfg))
    for tag, fig in figures.items():
        group.log_figure(tag, fig, step)
    group.finish("completed")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    return run_script(argv, USAGE, __doc__, lambda a: explain_run(parse_args(a)))
