"""SVHN (street-view house numbers, 32x32 colour digits) from its .mat files, through
torchvision's reader: ``train`` and ``test``, and with ``dataset.extra=true`` the 531k
``extra`` images added to the training set.

torchvision checks each file against the published MD5, which also rejects files written in
the same format for tests; here presence is checked and a file that does not load is
reported as corrupt instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torchvision import datasets

from reslab.data.image_data import ImageSet, Splits
from reslab.errors import DataError

SVHN_PAGE = "http://ufldl.stanford.edu/housenumbers/"
SVHN_CLASSES = [str(d) for d in range(10)]  # the file's label 10 is the digit 0


class SVHNFile(datasets.SVHN):
    """torchvision's SVHN that trusts a file that is there: its download() would hash every
    file on every run and fetch again over one that differs from the published MD5."""

    def _check_integrity(self) -> bool:
        return (Path(self.root) / self.filename).exists()

    def download(self) -> None:
        if not self._check_integrity():
            super().download()


def svhn_folder(root: Path) -> Path:
    return root / "SVHN"


def _read(folder: Path, split: str, download: bool) -> ImageSet:
    from scipy.io.matlab import MatReadError  # here, not at start-up: only SVHN needs scipy.io

    path = folder / SVHNFile.split_list[split][1]
    try:
        ds = SVHNFile(str(folder), split=split, download=download)
    except RuntimeError as exc:
        hint = "set dataset.download=true or " if not download else ""
        raise DataError(
            f"SVHN's {path.name} not found in {folder} and not downloadable here; {hint}"
            f"download it from {SVHN_PAGE} into {folder}"
        ) from exc
    except (MatReadError, ValueError, KeyError, TypeError, OSError, NotImplementedError) as exc:
        if not path.exists():  # the download itself failed
            raise DataError(
                f"SVHN's {path.name} could not be downloaded ({exc.__class__.__name__}); "
                f"download it from {SVHN_PAGE} into {folder}"
            ) from exc
        raise DataError(
            f"{path} is corrupt or truncated ({exc.__class__.__name__}); delete it and run again "
            "with dataset.download=true to fetch it again"
        ) from exc
    return ImageSet(torch.from_numpy(ds.data).contiguous(), torch.from_numpy(ds.labels).long())


def load_svhn(cfg: Any, root: Path) -> Splits:
    folder = svhn_folder(root)
    download = bool(cfg.get("download", True))
    train = _read(folder, "train", download)
    if cfg.get("extra", False):
        extra = _read(folder, "extra", download)
        train = ImageSet(
            torch.cat([train.images, extra.images]), torch.cat([train.labels, extra.labels])
        )
    test = _read(folder, "test", download)
    source = f"SVHN {'train+extra' if cfg.get('extra', False) else 'train'}/test in {folder}"
    return Splits(train, test, SVHN_CLASSES, source)
