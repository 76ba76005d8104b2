"""CIFAR-10 from its python-pickle batches, through torchvision's reader.

torchvision checks every batch against the published MD5, which also rejects files
written in the same format for tests; here presence is checked and a file that does
not unpickle is reported as corrupt instead.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import torch
from torchvision import datasets

from reslab.data.image_data import ImageSet
from reslab.errors import DataError


class CIFAR10Batches(datasets.CIFAR10):
    """torchvision's CIFAR10 that trusts batches that exist and unpickle."""

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


def first_bad_batch(folder: Path) -> Path | None:
    """The first CIFAR-10 batch file in ``folder`` that does not unpickle to images and labels."""
    names = [name for name, _ in CIFAR10Batches.train_list + CIFAR10Batches.test_list]
    for name in names:
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


def _to_image_set(ds: datasets.CIFAR10) -> ImageSet:
    images = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()
    return ImageSet(images, torch.as_tensor(ds.targets, dtype=torch.long))


def load_cifar10(root: Path, download: bool) -> tuple[ImageSet, ImageSet, list[str], str]:
    folder = root / CIFAR10Batches.base_folder
    try:
        train = CIFAR10Batches(str(root), train=True, download=download)
        test = CIFAR10Batches(str(root), train=False, download=False)
    except RuntimeError as exc:
        if "not found" in str(exc) or "download" in str(exc).lower():
            hint = "set dataset.download=true or " if not download else ""
            raise DataError(
                f"CIFAR-10 not found in {folder} and not downloadable here; {hint}download "
                "cifar-10-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html and extract it "
                f"into {root} (giving {folder}/data_batch_1..5, test_batch, batches.meta)"
            ) from exc
        raise
    except (pickle.UnpicklingError, EOFError, KeyError, ValueError) as exc:
        bad = first_bad_batch(folder) or folder
        raise DataError(
            f"{bad} is corrupt or truncated ({exc.__class__.__name__}); delete {folder} and run "
            "again with dataset.download=true to fetch CIFAR-10 again"
        ) from exc
    except OSError as exc:
        raise DataError(
            f"CIFAR-10 could not be downloaded ({exc}); download cifar-10-python.tar.gz from "
            f"https://www.cs.toronto.edu/~kriz/cifar.html and extract it into {root}"
        ) from exc
    return _to_image_set(train), _to_image_set(test), list(train.classes), f"CIFAR-10 in {folder}"
