"""``scripts/explain.py``: explain a finished run from its folder, writing into ``<run>/figures/``.

python scripts/explain.py run=outputs/runs/<date>/<run> method=cam n=16
python scripts/explain.py run=<run> method=gradcam layer=features.3 target=true
python scripts/explain.py run=<run> method=weights
python scripts/explain.py run=<run> method=gradflow twin=<run of the residual twin>
"""

from __future__ import annotations

import csv
import logging
import sys
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import torch
from omegaconf import DictConfig, OmegaConf

from reslab.config.shapes import DATASET_SHAPES
from reslab.config.validate import build
from reslab.errors import ConfigError, ReslabError
from reslab.explain.callbacks import explain_maps, normalise_images, pick_images
from reslab.explain.gradient_flow import gradient_flow_figure, layer_grad_norms
from reslab.explain.overlay import overlay_figure
from reslab.explain.state import unwrap
from reslab.explain.weights import first_layer_images, image_grid, save_grid_png
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
    "twin": None,  # gradflow: the residual twin's run folder; null = look beside the run
    "batches": 4,  # gradflow: training batches the norms are averaged over
    "seed": 0,  # gradflow: the seed of the models at initialisation
    "tensorboard": True,  # also add figures to the run's tensorboard/ folder when it has one
    "dataset": {"root": None},  # where the data lives, when not where the run found it
}
USAGE = (
    "usage: python scripts/explain.py run=<run folder> [method=cam|gradcam|weights|gradflow] "
    "[n=16] [target=pred|true|<class>] [layer=<module>] [split=test|val] [checkpoint=best|last] "
    "[twin=<run folder>] [batches=4] [device=auto|cpu|cuda] [dataset.root=<dir>]"
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
    try:
        opts = OmegaConf.merge(opts, given)
    except Exception:
        known = ", ".join(sorted(k for k in DEFAULTS if k != "dataset")) + ", dataset.root"
        unknown = next(k for k in _keys(given) if k not in _keys(OmegaConf.create(DEFAULTS)))
        raise ConfigError(f"{unknown} is not an explain option; use one of: {known}") from None
    if not opts.run:
        raise ConfigError(f"run= is required: the run folder to explain; {USAGE}")
    if opts.method not in METHODS:
        raise ConfigError(f"method={opts.method} is unknown; choose one of {', '.join(METHODS)}")
    if opts.split not in ("test", "val"):
        raise ConfigError(f"split={opts.split} is unknown; choose test or val")
    for key in ("n", "batches"):
        if opts[key] is not None and (not isinstance(opts[key], int) or opts[key] < 1):
            raise ConfigError(f"{key}={opts[key]} must be a whole number >= 1")
    return opts


def _keys(cfg: Any, prefix: str = "") -> list[str]:
    keys = []
    for k, v in cfg.items():
        keys += _keys(v, f"{prefix}{k}.") if isinstance(v, DictConfig) else [f"{prefix}{k}"]
    return keys


def load_run_config(run_dir: Path, state: dict | None = None) -> DictConfig:
    """The run's composed config: ``.hydra/config.yaml``, else the copy inside its checkpoint."""
    path = run_dir / ".hydra" / "config.yaml"
    if path.is_file():
        return OmegaConf.load(path)
    if state is not None and isinstance(state.get("config"), dict):
        return OmegaConf.create(state["config"])
    raise ReslabError(f"{run_dir} has no .hydra/config.yaml; point run= at a reslab run folder")


def checkpoint_path(run_dir: Path, which: str) -> Path:
    if which in ("best", "last"):
        return run_dir / "checkpoints" / f"{which}.pt"
    return Path(which)


def model_state(state: dict) -> dict:
    """Weights saved from a compiled or DDP-wrapped model load into the plain module."""
    weights = state["model"]
    for prefix in ("_orig_mod.", "module."):
        if weights and all(k.startswith(prefix) for k in weights):
            weights = {k[len(prefix) :]: v for k, v in weights.items()}
    return weights


def input_shape(cfg: DictConfig, data: Any = None) -> tuple[list[int], int]:
    if data is not None:
        return list(data.input_shape), data.num_classes
    name = cfg.dataset.get("name")
    if name not in DATASET_SHAPES:
        raise ConfigError(f"dataset {name!r} has no known input shape; explain it with its data")
    shape, classes = DATASET_SHAPES[name]
    return list(shape), classes


def build_model(
    cfg: DictConfig, shape: list[int], num_classes: int, state: dict | None
) -> torch.nn.Module:
    model = build(cfg.model, input_shape=shape, num_classes=num_classes)
    if state is not None:
        model.load_state_dict(model_state(state))
    return model


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
        raise ReslabError(f"run={run_dir} is not a folder; point it at outputs/runs/<date>/<run>")
    device = resolve_device(str(opts.device))
    state = load_checkpoint(checkpoint_path(run_dir, str(opts.checkpoint)), map_location=device)
    cfg = load_run_config(run_dir, state)
    figures = run_dir / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    step = int(state.get("epoch", 0) or 0)
    if opts.method == "weights":
        return explain_weights(cfg, state, opts, figures)
    data = load_data(cfg, opts)
    shape, num_classes = input_shape(cfg, data)
    model = build_model(cfg, shape, num_classes, state).to(device)
    if opts.method == "gradflow":
        return explain_gradflow(cfg, model, data, opts, run_dir, device, step)
    return explain_maps_figures(model, data, opts, figures, device, step)


def explain_maps_figures(model, data, opts, figures: Path, device, step: int) -> list[Path]:
    split = data.test if opts.split == "test" else data.val
    index = pick_images(split.labels, int(opts.n or 16))
    images, labels = split.images[index], split.labels[index]
    x = normalise_images(images, data.mean, data.std).to(device)
    target = opts.target if opts.target in ("pred", "true") else int(opts.target)
    result = explain_maps(model, x, opts.method, opts.layer, target, labels.to(device))
    name = "cam" if opts.method == "cam" else f"gradcam_{opts.layer or 'features'}"
    label = "CAM" if opts.method == "cam" else f"Grad-CAM at {opts.layer or 'features'}"
    panels = {f"{name}_{opts.target}": (result.maps, f"{label} of the {opts.target} class")}
    if result.global_maps is not None:
        panels["cam_global"] = (result.global_maps, "global activation map (class-agnostic)")
    written = []
    for stem, (maps, title) in panels.items():
        fig = overlay_figure(
            images, maps, labels, result.predictions, data.classes, f"{title}: true / predicted"
        )
        written.append(save(fig, figures / f"{stem}.png", opts, f"explain/{stem}", step))
    return written


def explain_weights(cfg: DictConfig, state: dict, opts: DictConfig, figures: Path) -> list[Path]:
    shape, num_classes = input_shape(cfg)
    model = build_model(cfg, shape, num_classes, state)
    images = first_layer_images(model, shape, int(opts.n or 64))
    path = figures / "weights_first_layer.png"
    save_grid_png(image_grid(images), path)
    return [path]


def explain_gradflow(cfg, model, data, opts, run_dir: Path, device, step: int) -> list[Path]:
    from reslab.data.loader import TensorBatchLoader

    if "residual" not in cfg.model:
        raise ConfigError(
            "method=gradflow compares a model with its residual twin, and this model has none; "
            "explain an mlp, residual_mlp or resnet run"
        )
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
        fresh = build_model(this_cfg, shape, num_classes, None).to(device)
        curves[f"{kind[this]}, init"] = layer_grad_norms(fresh, batches).tolist()
    curves[f"{kind[residual]}, trained"] = layer_grad_norms(model, batches).tolist()
    twin_dir = Path(opts.twin) if opts.twin else find_twin(run_dir, cfg)
    if twin_dir is not None:
        twin_state = load_checkpoint(twin_dir / "checkpoints" / "best.pt", map_location=device)
        trained_twin = build_model(twin_cfg, shape, num_classes, twin_state).to(device)
        curves[f"{kind[not residual]}, trained"] = layer_grad_norms(trained_twin, batches).tolist()
    else:
        log.warning(
            "no trained %s twin found beside %s; pass twin=<run folder> to draw it after training",
            kind[not residual],
            run_dir,
        )
    depth = cfg.get("depth")
    title = f"gradient flow, {type(unwrap(model)).__name__} depth {depth}: plain vs residual"
    figures = run_dir / "figures"
    table = figures / "gradient_flow.csv"
    with table.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["layer", *curves])
        for i, row in enumerate(zip(*curves.values()), start=1):
            writer.writerow([i, *(f"{v:.6g}" for v in row)])
    fig = gradient_flow_figure(curves, title)
    return [save(fig, figures / "gradient_flow.png", opts, "explain/gradient_flow", step), table]


def find_twin(run_dir: Path, cfg: DictConfig) -> Path | None:
    """A sibling run (same sweep) with the same model, depth, width and data but the other
    ``residual`` setting, e.g. from ``python train.py -m model=mlp,residual_mlp depth=32``."""
    want = (
        cfg.model.get("_target_"),
        not bool(cfg.model.residual),
        cfg.get("depth"),
        cfg.get("width"),
        cfg.dataset.get("name"),
    )
    for other in sorted(run_dir.resolve().parent.iterdir()):
        config = other / ".hydra" / "config.yaml"
        if other == run_dir.resolve() or not config.is_file():
            continue
        if not (other / "checkpoints" / "best.pt").is_file():
            continue
        try:
            o = OmegaConf.load(config)
            have = (
                o.model.get("_target_"),
                bool(o.model.get("residual")),
                o.get("depth"),
                o.get("width"),
                o.dataset.get("name"),
            )
        except Exception:
            continue
        if have == want:
            return other
    return None


def save(fig, path: Path, opts: DictConfig, tag: str, step: int) -> Path:
    fig.savefig(path, dpi=120)
    tb_dir = path.parent.parent / "tensorboard"
    if opts.tensorboard and tb_dir.is_dir():
        from torch.utils.tensorboard import SummaryWriter

        with SummaryWriter(log_dir=str(tb_dir)) as writer:
            writer.add_figure(tag, fig, step, close=False)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if any(a in ("-h", "--help") for a in argv):
        print(USAGE)
        print(__doc__)
        return 0
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        for path in explain_run(parse_args(argv)):
            print(path)
    except ReslabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, ConfigError) else 1
    return 0
