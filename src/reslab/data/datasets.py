"""Turn a ``dataset`` config into decoded, split, normalisation-ready tensors."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from reslab.data.cifar10 import load_cifar10
from reslab.data.image_data import ImageData
from reslab.data.mnist import load_fashion_mnist, load_mnist
from reslab.data.splits import channel_stats, split_train_val
from reslab.errors import ConfigError

log = logging.getLogger(__name__)

DATASETS = ("mnist", "fashion_mnist", "cifar10")


def data_root(root: str | os.PathLike | None) -> Path:
    """``dataset.root`` if given, else ``$RESLAB_DATA``, else ``data/``."""
    return Path(root or os.environ.get("RESLAB_DATA") or "data").expanduser()


def load_dataset(cfg: Any) -> ImageData:
    """Load the dataset named by ``cfg.name`` and carve the validation split off its training set."""
    name = cfg.name
    root = data_root(cfg.get("root"))
    download = bool(cfg.get("download", True))
    if name == "mnist":
        train, test, classes, source = load_mnist(
            root, download, bool(cfg.get("offline_fallback", True))
        )
    elif name == "fashion_mnist":
        train, test, classes, source = load_fashion_mnist(root, download)
    elif name == "cifar10":
        train, test, classes, source = load_cifar10(root, download)
    else:
        raise ConfigError(f"dataset.name={name!r} is unknown; choose one of {', '.join(DATASETS)}")
    train, val = split_train_val(train, float(cfg.val_fraction), int(cfg.split_seed))
    mean, std = channel_stats(train.images)
    notes = []
    if "subset" in source:
        notes.append(f"trained on {source}, not the full dataset")
    log.info(
        "%s: %d train / %d val / %d test images (%s)", name, len(train), len(val), len(test), source
    )
    return ImageData(name, train, val, test, classes, mean, std, source, notes)
