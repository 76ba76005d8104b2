"""Where a dataset is defined: its loader, and its input shape and classes when they are known
before any image is read. Everything that needs them (config checks, evaluate, explain,
the download script) asks here.

A dataset config (``configs/dataset/<name>.yaml``) names its loader with ``loader:``, either a
name registered below or the dotted path of the user's own function
``load(cfg, root) -> reslab.data.image_data.Splits``. Without the key (runs saved before it
existed) the loader registered under the dataset's ``name`` is used.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reslab.data.cifar import load_cifar10, load_cifar100
from reslab.data.image_data import Splits
from reslab.data.image_folder import load_image_folder
from reslab.data.mnist import load_fashion_mnist, load_mnist
from reslab.data.svhn import load_svhn
from reslab.data.tensor_file import load_tensor_file
from reslab.errors import ConfigError

Shape = tuple[tuple[int, int, int], int]


@dataclass(frozen=True)
class DatasetSpec:
    load: Callable[[Any, Path], Splits]
    # (input shape, number of classes) from the config alone, or None when only the data tells.
    shape: Callable[[Any], Shape | None]
    downloadable: bool = False


def _fixed(shape: tuple[int, int, int], classes: int) -> Callable[[Any], Shape]:
    return lambda cfg: (shape, classes)


def _cifar100_shape(cfg: Any) -> Shape:
    return (3, 32, 32), 20 if cfg.get("labels") == "coarse" else 100


def _unknown(cfg: Any) -> None:
    return None


DATASETS: dict[str, DatasetSpec] = {
    "mnist": DatasetSpec(load_mnist, _fixed((1, 28, 28), 10), downloadable=True),
    "fashion_mnist": DatasetSpec(load_fashion_mnist, _fixed((1, 28, 28), 10), downloadable=True),
    "cifar10": DatasetSpec(load_cifar10, _fixed((3, 32, 32), 10), downloadable=True),
    "cifar100": DatasetSpec(load_cifar100, _cifar100_shape, downloadable=True),
    "svhn": DatasetSpec(load_svhn, _fixed((3, 32, 32), 10), downloadable=True),
    "image_folder": DatasetSpec(load_image_folder, _unknown),
    "tensors": DatasetSpec(load_tensor_file, _unknown),
}


def dataset_spec(cfg: Any) -> DatasetSpec:
    """The definition a dataset config names (``loader``, else its ``name``)."""
    loader = str(cfg.get("loader") or cfg.get("name"))
    if loader in DATASETS:
        return DATASETS[loader]
    if "." not in loader:
        raise ConfigError(
            f"dataset.loader={loader} is unknown; choose one of {', '.join(DATASETS)} or give "
            "the dotted path of your own function load(cfg, root) -> Splits"
        )
    from hydra.utils import get_method

    try:
        return DatasetSpec(get_method(loader), _unknown)
    except Exception as exc:  # Hydra's message: "Error loading 'x':", the cause, a hint
        why = " ".join(line.strip() for line in str(exc).splitlines()[1:]) or type(exc).__name__
        raise ConfigError(f"dataset.loader={loader} cannot be imported: {why}") from None


def declared_shape(cfg: Any) -> Shape | None:
    """The input shape (C, H, W) and number of classes a dataset config gives before loading."""
    return dataset_spec(cfg).shape(cfg)
