"""The type and range of every config key reslab ships, checked before any work starts.

``RULES`` maps a dotted key to a check; ``check_values`` walks a composed config and runs
the check of every key it holds. A key a user adds with ``+key=value`` has no rule and is
handed on as given (torch checks its own arguments). tests/test_schema.py composes every
option of every group and fails when a shipped key has no rule here.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from reslab.errors import ConfigError


@dataclass(frozen=True)
class Check:
    """One key's rule: ``test`` says whether a value is allowed; ``want`` says what is."""

    test: Callable[[Any], bool]
    want: str
    example: str | None = None
    null: bool = False

    def __call__(self, key: str, value: Any) -> None:
        if value is None and self.null:
            return
        if value is None or not self.test(value):
            hint = f" (e.g. {key}={self.example})" if self.example else ""
            also = ", or null" if self.null else ""
            raise ConfigError(f"{key}={_show(value)} must be {self.want}{also}{hint}")


def _show(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_show(v) for v in value) + "]"
    return repr(value) if isinstance(value, str) else str(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def integer(low: int | None = None, example: str | None = None, null: bool = False) -> Check:
    want = "a whole number" + (f" >= {low}" if low is not None else "")
    return Check(
        lambda v: _is_int(v) and (low is None or v >= low), want, example or str(low or 0), null
    )


def number(
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
    example: str | None = None,
    null: bool = False,
) -> Check:
    """A finite float; ``low``/``high`` bounds, open (strict) or closed."""

    def test(v: Any) -> bool:
        if not _is_number(v):
            return False
        above = low is None or (v > low if low_open else v >= low)
        below = high is None or (v < high if high_open else v <= high)
        return above and below

    return Check(test, _range_words(low, high, low_open, high_open), example, null)


def _range_words(low, high, low_open, high_open) -> str:
    if low is not None and high is not None:
        left, right = ("(" if low_open else "["), (")" if high_open else "]")
        return f"a number in {left}{low}, {high}{right}"
    if low is not None:
        return f"a number {'>' if low_open else '>='} {low}"
    if high is not None:
        return f"a number {'<' if high_open else '<='} {high}"
    return "a number"


def boolean(null: bool = False) -> Check:
    return Check(lambda v: isinstance(v, bool), "true or false", None, null)


def choice(*options: str, null: bool = False) -> Check:
    return Check(
        lambda v: isinstance(v, str) and v in options, f"one of {', '.join(options)}", None, null
    )


def text(null: bool = False) -> Check:
    return Check(lambda v: isinstance(v, str) and v != "", "a non-empty string", None, null)


def listing(
    item: Check,
    want: str,
    *,
    size: int | None = None,
    increasing: bool = False,
    example: str | None = None,
    null: bool = False,
) -> Check:
    """A list whose every element passes ``item``; optionally of one size, strictly increasing."""

    def test(v: Any) -> bool:
        if not isinstance(v, (list, tuple)) or (size is not None and len(v) != size):
            return False
        if not all(item.test(x) for x in v):
            return False
        return not increasing or all(a < b for a, b in zip(v, v[1:]))

    return Check(test, want, example, null)


def on_off_auto() -> Check:
    return Check(lambda v: v == "auto" or isinstance(v, bool), "auto, true or false")


POSITIVE_INT = integer(1)
WHOLE_NUMBERS = "a list of whole numbers >= 1"
PATIENCE = integer(0, example="5", null=True)

RULES: dict[str, Check] = {
    # top level
    "seed": integer(0),
    "depth": integer(1, example="20"),
    "width": integer(1, example="64"),
    "monitor": text(),
    "name": text(),
    "label": text(null=True),
    "tags": listing(text(), "a list of names", example="[baseline]"),
    "resume": text(null=True),
    # dataset
    "dataset.name": text(),
    "dataset.loader": text(),
    "dataset.root": text(null=True),
    "dataset.labels": choice("fine", "coarse"),
    "dataset.extra": boolean(),
    "dataset.path": text(null=True),
    "dataset.image_size": integer(1, example="32", null=True),
    "dataset.interpolation": choice("nearest", "bilinear", "bicubic", "lanczos"),
    "dataset.channels": Check(
        lambda v: v in (1, 3) and not isinstance(v, bool), "1 or 3", "3", True
    ),
    "dataset.test_fraction": number(0, 1, low_open=True, high_open=True, example="0.2"),
    "dataset.cache_dir": text(null=True),
    "dataset.download": boolean(),
    "dataset.offline_fallback": boolean(),
    "dataset.val_fraction": number(0, 1, low_open=True, high_open=True, example="0.1"),
    "dataset.split_seed": integer(0),
    "dataset.train_size": integer(1, example="10000", null=True),
    "dataset.standardize": boolean(),
    "dataset.batch_size": integer(1, example="128"),
    "dataset.eval_batch_size": integer(1, example="1000"),
    "dataset.on_device": on_off_auto(),
    "dataset.num_workers": integer(0, example="2"),
    "dataset.augment.crop_padding": integer(0, example="4"),
    "dataset.augment.hflip": boolean(),
    # model
    "model.depth": integer(1, example="20"),
    "model.width": integer(1, example="64"),
    "model.residual": boolean(),
    "model.norm": choice("none", "batch", "layer", null=True),
    "model.dropout": number(0, 1, high_open=True, example="0.5"),
    "model.hidden_sizes": listing(POSITIVE_INT, WHOLE_NUMBERS, example="[256,128]", null=True),
    "model.channels": listing(POSITIVE_INT, WHOLE_NUMBERS, example="[32,64,64]", null=True),
    "model.kernel_size": Check(
        lambda v: _is_int(v) and v >= 1 and v % 2 == 1, "an odd whole number >= 1", "5"
    ),
    "model.max_width": integer(1, example="256"),
    "model.layers_per_stage": integer(1, example="2"),
    "model.head": choice("fc", "gap"),
    "model.fc_width": integer(1, example="128"),
    # optimizer
    "optimizer.lr": number(0, low_open=True, example="0.001"),
    "optimizer.weight_decay": number(0, example="0.0001"),
    "optimizer.momentum": number(0, 1, high_open=True, example="0.9"),
    "optimizer.nesterov": boolean(),
    "optimizer.betas": listing(
        number(0, 1, high_open=True),
        "a list of two numbers in [0, 1)",
        size=2,
        example="[0.9,0.999]",
    ),
    # scheduler
    "scheduler.interval": choice("epoch", "step"),
    "scheduler.warmup_epochs": number(0, example="1"),
    "scheduler.step_size": integer(1, example="30"),
    "scheduler.gamma": number(0, low_open=True, example="0.1"),
    "scheduler.milestones": listing(
        POSITIVE_INT, WHOLE_NUMBERS + " in increasing order", increasing=True, example="[100,150]"
    ),
    "scheduler.T_max": integer(1, example="200", null=True),
    "scheduler.eta_min": number(0, example="0.0"),
    "scheduler.max_lr": number(0, low_open=True, example="0.1"),
    "scheduler.total_steps": integer(1, example="10000", null=True),
    "scheduler.pct_start": number(0, 1, low_open=True, high_open=True, example="0.3"),
    "scheduler.mode": choice("auto", "min", "max"),
    "scheduler.factor": number(0, 1, low_open=True, high_open=True, example="0.1"),
    "scheduler.patience": integer(0, example="2"),
    "scheduler.threshold": number(0, example="0.0001"),
    "scheduler.cooldown": integer(0),
    "scheduler.min_lr": number(0),
    # trainer
    "trainer.max_epochs": integer(1, example="30"),
    "trainer.max_steps": integer(1, example="64000", null=True),
    "trainer.device": Check(
        lambda v: isinstance(v, str) and (v in ("auto", "cpu", "cuda") or v.startswith("cuda:")),
        "auto, cpu, cuda or cuda:<index>",
    ),
    "trainer.precision": Check(
        lambda v: not isinstance(v, bool) and str(v) in ("auto", "bf16", "fp16", "32"),
        "one of auto, bf16, fp16, 32",
    ),
    "trainer.channels_last": on_off_auto(),
    "trainer.compile": boolean(),
    "trainer.sync_batchnorm": boolean(),
    "trainer.grad_clip": number(0, low_open=True, example="1.0", null=True),
    "trainer.deterministic": boolean(),
    "trainer.limit_train_batches": integer(1, example="10", null=True),
    "trainer.limit_eval_batches": integer(1, example="2", null=True),
    "trainer.progress": boolean(null=True),
    "trainer.overfitting_epochs": integer(1, example="3"),
    "trainer.early_stopping.patience": PATIENCE,
    "trainer.early_stopping.mode": choice("auto", "min", "max"),
    "trainer.early_stopping.min_delta": number(0, example="0.001"),
    # logger
    "logger.tensorboard.dir": text(),
    "logger.tensorboard.figures": boolean(),
    "logger.wandb.mode": choice("online", "offline", "disabled"),
    "logger.wandb.project": text(),
    "logger.wandb.entity": text(null=True),
    "logger.wandb.name": text(null=True),
    "logger.wandb.group": text(null=True),
    "logger.wandb.tags": listing(text(), "a list of names", example="[baseline]"),
    "logger.wandb.figures": boolean(),
    "logger.wandb.init_timeout": number(0, low_open=True, example="90"),
    # explain
    "explain.cam_every_epoch": boolean(),
    "explain.method": choice("cam", "gradcam"),
    "explain.layer": text(null=True),
    "explain.target": Check(lambda v: v in ("pred", "true") or v is True, "pred or true"),
    "explain.n_images": integer(1, example="8"),
    "explain.frame_ms": integer(1, example="700"),
    "explain.grad_norms": boolean(),
}
# Keys for Hydra and instantiate, not values of reslab's.
SKIPPED = ("_target_", "_partial_", "_recursive_", "_convert_", "_args_")


def leaf_keys(cfg: DictConfig, prefix: str = "") -> list[str]:
    """Dotted names of every value in ``cfg`` (lists are values)."""
    keys = []
    for key in cfg.keys():
        node = cfg._get_node(key)
        name = f"{prefix}{key}"
        if isinstance(node, DictConfig) and not node._is_none():
            keys += leaf_keys(node, f"{name}.")
        else:
            keys.append(name)
    return keys


def check_values(cfg: DictConfig) -> None:
    """Run the rule of every key ``cfg`` holds; the first bad value raises a one-line ConfigError."""
    # Top-level keys first: `width=0` is reported as width, not as the model.width it feeds.
    for key in sorted(leaf_keys(cfg), key=lambda k: k.count(".")):
        rule = RULES.get(key)
        if rule is None or key.rsplit(".", 1)[-1] in SKIPPED:
            continue
        try:
            value = OmegaConf.select(cfg, key, throw_on_resolution_failure=True)
        except OmegaConfBaseException:
            continue  # an interpolation only Hydra's runtime resolves (the run's name)
        if isinstance(value, (ListConfig, DictConfig)):
            value = OmegaConf.to_container(value, resolve=True)
        rule(key, value)
