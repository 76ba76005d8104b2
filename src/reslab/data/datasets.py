"""Turn a ``dataset`` config into decoded, split, normalisation-ready tensors."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from reslab.data.image_data import ImageData, ImageSet, Splits
from reslab.data.registry import dataset_spec
from reslab.data.splits import channel_stats, split_train_val, stratified_subset
from reslab.errors import ConfigError, DataError

log = logging.getLogger(__name__)


def data_root(root: str | os.PathLike | None) -> Path:
    """``dataset.root`` if given, else ``$RESLAB_DATA``, else ``data/``."""
    return Path(root or os.environ.get("RESLAB_DATA") or "data").expanduser()


def load_dataset(cfg: Any) -> ImageData:
    """Load the dataset ``cfg`` defines (reslab.data.registry) and carve the validation split
    off its training set."""
    name = cfg.name
    spec = dataset_spec(cfg)
    train, test, classes, source = spec.load(cfg, data_root(cfg.get("root")))
    check_loaded(name, Splits(train, test, classes, source), spec.shape(cfg))
    train, val = split_train_val(train, float(cfg.val_fraction), int(cfg.split_seed))
    train_size = cfg.get("train_size")
    if train_size is not None:
        train = _training_subset(name, train, int(train_size), len(classes), int(cfg.split_seed))
    if cfg.get("standardize", True):
        mean, std = channel_stats(train.images)
    else:  # pixels in [0, 1] only, as torchvision's ToTensor gives them
        mean, std = (0.0,) * train.images.shape[1], (1.0,) * train.images.shape[1]
    notes = []
    if "subset" in source:
        notes.append(f"trained on {source}, not the full dataset")
    log.info(
        "%s: %d train%s / %d val / %d test images (%s)",
        name,
        len(train),
        " (a stratified subset, dataset.train_size)" if train_size is not None else "",
        len(val),
        len(test),
        source,
    )
    return ImageData(name, train, val, test, classes, mean, std, source, notes)


def _training_subset(name: str, train: ImageSet, size: int, n_classes: int, seed: int) -> ImageSet:
    """``dataset.train_size`` images of the training split, taken after the validation split
    was carved, so validation and test sets are the same whatever the size."""
    allowed = f"use {n_classes} to {len(train)}, or null for all"
    if size > len(train):
        raise ConfigError(
            f"dataset.train_size={size} is more than the {len(train)} training images {name} "
            f"has after the validation split; {allowed}"
        )
    if size < n_classes:
        raise ConfigError(
            f"dataset.train_size={size} is fewer than the {n_classes} classes of {name}: a "
            f"stratified subset holds at least one image of each; {allowed}"
        )
    return stratified_subset(train, size, seed)


def check_loaded(name: str, splits: Splits, declared: tuple | None) -> None:
    """The loaded data agree with the dataset's definition, and every label names a class."""
    train, test, classes, _ = splits
    shape = tuple(int(d) for d in train.images.shape[1:])
    if declared is not None and (shape, len(classes)) != (tuple(declared[0]), declared[1]):
        raise DataError(
            f"dataset {name} loaded {shape} images of {len(classes)} classes but its definition "
            f"says {tuple(declared[0])} and {declared[1]}; the files are not {name}'s"
        )
    for split, data in (("training", train), ("test", test)):
        if len(data) == 0:
            raise DataError(f"dataset {name} has no {split} images")
        if int(data.labels.min()) < 0 or int(data.labels.max()) >= len(classes):
            raise DataError(
                f"dataset {name}'s {split} labels run outside 0..{len(classes) - 1} "
                f"for its {len(classes)} classes"
            )
