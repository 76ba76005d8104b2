"""CIFAR-10 and CIFAR-100 from their python-pickle files, through torchvision's readers.

torchvision checks every file against the published MD5, which also rejects files written
in the same format for tests; here presence is checked and a file that does not unpickle is
reported as corrupt instead.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import torch
from torchvision import datasets

from reslab.data.image_data import ImageSet, Splits
from reslab.errors import ConfigError, DataError

CIFAR_PAGE = "https://www.cs.toronto.edu/~kriz/cifar.html"
CIFAR100_LABELS = ("fine", "coarse")


class _PresenceChecked:
    """torchvision's CIFAR reader that trusts files that exist and unpickle."""

    base_folder: str
    train_list: list
    test_list: list
    meta: dict
    root: str

    def _check_integrity(self) -> bool:
        folder = Path(self.root) / self.base_folder
        names = [name for name, _ in self.train_list + self.test_list] + [self.meta["filename"]]
        return all((folder / name).exists() for name in names)

    def _load_meta(self) -> None:
        path = os.path.join(self.root, self.base_folder, self.meta["filename"])
        with open(path, "rb") as infile:
            data = pickle.load(infile, encoding="latin1")
        self.classes = data[self.meta["key"]]
        self.class_to_idx = {name: i for i, name in enumerate(self.classes)}


class CIFAR10Batches(_PresenceChecked, datasets.CIFAR10):
    pass


class CIFAR100Files(_PresenceChecked, datasets.CIFAR100):
    pass


def first_bad_batch(folder: Path, reader: type = CIFAR10Batches) -> Path | None:
    """The first data file in ``folder`` that does not unpickle to images and labels."""
    for name in [name for name, _ in reader.train_list + reader.test_list]:
        try:
            with open(folder / name, "rb") as infile:
                entry = pickle.load(infile, encoding="latin1")
            if "data" not in entry or not ("labels" in entry or "fine_labels" in entry):
                return folder / name
        except FileNotFoundError:
            continue
        except Exception:  # any unpickling failure marks the file as the culprit
            return folder / name
    return None


def _to_image_set(ds: datasets.CIFAR10, labels: list[int] | None = None) -> ImageSet:
    images = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()
    return ImageSet(images, torch.as_tensor(labels or ds.targets, dtype=torch.long))


def _read(reader: type, root: Path, download: bool, title: str, archive: str) -> tuple[Any, Any]:
    """Train and test through ``reader``, every failure turned into one line that says what to do."""
    folder = root / reader.base_folder
    try:
        return reader(str(root), train=True, download=download), reader(str(root), train=False)
    except RuntimeError as exc:
        if "not found" in str(exc) or "download" in str(exc).lower():
            hint = "set dataset.download=true or " if not download else ""
            raise DataError(
                f"{title} not found in {folder} and not downloadable here; {hint}download "
                f"{archive} from {CIFAR_PAGE} and extract it into {root} (giving {folder}/"
                f"{', '.join(n for n, _ in reader.train_list + reader.test_list)}, "
                f"{reader.meta['filename']})"
            ) from exc
        raise
    except (pickle.UnpicklingError, EOFError, KeyError, ValueError) as exc:
        bad = first_bad_batch(folder, reader) or folder
        raise DataError(
            f"{bad} is corrupt or truncated ({exc.__class__.__name__}); delete {folder} and run "
            f"again with dataset.download=true to fetch {title} again"
        ) from exc
    except OSError as exc:
        raise DataError(
            f"{title} could not be downloaded ({exc}); download {archive} from {CIFAR_PAGE} "
            f"and extract it into {root}"
        ) from exc


def load_cifar10(cfg: Any, root: Path) -> Splits:
    download = bool(cfg.get("download", True))
    train, test = _read(CIFAR10Batches, root, download, "CIFAR-10", "cifar-10-python.tar.gz")
    source = f"CIFAR-10 in {root / CIFAR10Batches.base_folder}"
    return Splits(_to_image_set(train), _to_image_set(test), list(train.classes), source)


def load_cifar100(cfg: Any, root: Path) -> Splits:
    """CIFAR-100's 100 fine classes, or with ``dataset.labels=coarse`` its 20 superclasses."""
    labels = str(cfg.get("labels", "fine"))
    if labels not in CIFAR100_LABELS:
        raise ConfigError(f"dataset.labels={labels} is unknown; choose fine or coarse")
    download = bool(cfg.get("download", True))
    train, test = _read(CIFAR100Files, root, download, "CIFAR-100", "cifar-100-python.tar.gz")
    folder = root / CIFAR100Files.base_folder
    source = f"CIFAR-100 ({labels} labels) in {folder}"
    if labels == "fine":
        return Splits(_to_image_set(train), _to_image_set(test), list(train.classes), source)
    coarse = [_read_key(folder / name, "coarse_labels") for name in ("train", "test")]
    classes = list(_read_key(folder / "meta", "coarse_label_names"))
    return Splits(_to_image_set(train, coarse[0]), _to_image_set(test, coarse[1]), classes, source)


def _read_key(path: Path, key: str) -> list:
    # torchvision keeps only the fine labels; the superclasses sit beside them in the files.
    with open(path, "rb") as infile:
        entry = pickle.load(infile, encoding="latin1")
    if key not in entry:
        raise DataError(
            f"{path} has no {key}, so dataset.labels=coarse cannot be read; use "
            "dataset.labels=fine or fetch CIFAR-100 again"
        )
    return list(entry[key])
