"""A dataset kept in one file: ``.npz`` (numpy) or ``.pt`` (torch) holding ``x_train``,
``y_train``, ``x_test``, ``y_test`` and optionally ``classes``.

Images are uint8 0..255, N x H x W (grayscale) or N x C x H x W; labels are whole numbers
0..K-1, with K the number of ``classes`` names when given, else one more than the largest
training label.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from reslab.data.image_data import ImageSet, Splits
from reslab.errors import ConfigError, DataError

KEYS = ("x_train", "y_train", "x_test", "y_test")


def load_tensor_file(cfg: Any, root: Path) -> Splits:
    path = _path(cfg, root)
    arrays = _read(path)
    missing = [k for k in KEYS if k not in arrays]
    if missing:
        raise DataError(f"{path} lacks {', '.join(missing)}; it needs {', '.join(KEYS)}")
    train, test = (_split(arrays, split, path) for split in ("train", "test"))
    if train.images.shape[1:] != test.images.shape[1:]:
        raise DataError(
            f"{path}: x_train images are {tuple(train.images.shape[1:])} and x_test images "
            f"{tuple(test.images.shape[1:])}; both splits need one shape"
        )
    classes = _classes(arrays, train, test, path)
    return Splits(train, test, classes, f"tensor file {path}")


def _split(arrays: dict, split: str, path: Path) -> ImageSet:
    images, labels = _images(arrays, f"x_{split}", path), _labels(arrays, f"y_{split}", path)
    if len(images) != len(labels):
        raise DataError(
            f"{path}: x_{split} has {len(images)} images but y_{split} {len(labels)} labels"
        )
    return ImageSet(images, labels)


def _path(cfg: Any, root: Path) -> Path:
    if not cfg.get("path"):
        raise ConfigError(
            "dataset=tensors needs dataset.path=<file.npz or file.pt> holding "
            f"{', '.join(KEYS)} (and optionally classes)"
        )
    path = Path(str(cfg.path)).expanduser()
    if not path.is_file() and not path.is_absolute() and (root / path).is_file():
        path = root / path  # relative to the data folder (dataset.root)
    if not path.is_file():
        raise DataError(
            f"dataset.path={path} does not exist (nor in {root}); point it at an .npz or .pt file"
        )
    if path.suffix not in (".npz", ".pt"):
        raise DataError(
            f"dataset.path={path} is neither .npz nor .pt; save it with numpy.savez or torch.save"
        )
    return path


def _read(path: Path) -> dict[str, Any]:
    try:
        if path.suffix == ".pt":
            loaded = torch.load(path, weights_only=True)
            if not isinstance(loaded, dict):
                raise DataError(f"{path} holds a {type(loaded).__name__}, not a dict of tensors")
            return loaded
        with np.load(path, allow_pickle=False) as npz:
            return {key: npz[key] for key in npz.files}
    except DataError:
        raise
    except (OSError, ValueError, RuntimeError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(
            f"{path} is not a readable .npz or .pt file ({exc.__class__.__name__}); write it with "
            "numpy.savez or torch.save"
        ) from exc
    except pickle.UnpicklingError as exc:  # a .pt of numpy arrays, or not a torch file at all
        raise DataError(
            f"{path} holds something other than tensors, lists and strings; save torch tensors "
            "(torch.from_numpy(x)) with torch.save, or use numpy.savez and an .npz"
        ) from exc


def _images(arrays: dict, key: str, path: Path) -> torch.Tensor:
    value = arrays[key]
    dtype = value.dtype if torch.is_tensor(value) else np.asarray(value).dtype
    if dtype not in (torch.uint8, np.uint8):
        raise DataError(
            f"{path}: {key} is {dtype}; store images as uint8 0..255 "
            "(x.astype(numpy.uint8) after scaling to 0..255)"
        )
    images = value if torch.is_tensor(value) else torch.from_numpy(np.asarray(value))
    if images.dim() == 3:
        images = images.unsqueeze(1)  # N x H x W: one grayscale channel
    if images.dim() != 4:
        raise DataError(
            f"{path}: {key} has shape {tuple(images.shape)}; use N x H x W or N x C x H x W"
        )
    if images.shape[-1] in (1, 3) and images.shape[1] not in (1, 3):  # numpy's N x H x W x C
        raise DataError(
            f"{path}: {key} has shape {tuple(images.shape)}, channels last; store N x C x H x W "
            "(x.transpose(0, 3, 1, 2))"
        )
    return images.contiguous()


def _labels(arrays: dict, key: str, path: Path) -> torch.Tensor:
    value = arrays[key]
    array = value if torch.is_tensor(value) else np.asarray(value)
    if torch.is_tensor(array):
        integer = not (array.is_floating_point() or array.is_complex() or array.dtype == torch.bool)
    else:
        integer = array.dtype.kind in "iu"  # not bool ("b"), float, str or object
    if not integer or array.ndim != 1:
        raise DataError(
            f"{path}: {key} must be a 1-D array of whole-number class labels 0..K-1 "
            "(names go in classes)"
        )
    return torch.as_tensor(array).long()


def _classes(arrays: dict, train: ImageSet, test: ImageSet, path: Path) -> list[str]:
    """The names given, else 0..K-1; every label in range, every test class seen in training."""
    if "classes" in arrays:
        classes = [str(c) for c in np.asarray(arrays["classes"]).tolist()]
        count, what = len(classes), f"{len(classes)} names in classes"
    else:
        count = int(train.labels.max()) + 1 if len(train) else 0
        classes, what = [str(i) for i in range(count)], f"labels 0..{count - 1} in y_train"
    for key, labels in (("y_train", train.labels), ("y_test", test.labels)):
        bad = labels[(labels < 0) | (labels >= count)]
        if len(bad):
            raise DataError(
                f"{path}: {key} holds label {int(bad[0])}, out of range for {what}; "
                f"labels must be 0..{count - 1}"
            )
    return classes
