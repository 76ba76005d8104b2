"""Image sets written in their datasets' own on-disk formats (MNIST's IDX files, CIFAR-10's
and CIFAR-100's python pickles, SVHN's .mat files, image folders, tensor files), so that
tests and the benchmark read them through the real loaders."""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from pathlib import Path

import numpy as np


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write an uint8 array in the IDX format MNIST uses (magic 0x08, big-endian dims)."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape
    )
    Path(path).write_bytes(header + array.astype(np.uint8).tobytes())


def write_mnist_files(
    raw: Path, train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray]
) -> None:
    """The four IDX files of MNIST (or Fashion-MNIST) in ``raw``: images N×28×28, labels N."""
    raw = Path(raw)
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, (images, labels) in (("train", train), ("t10k", test)):
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels)


def write_cifar10_files(
    root: Path,
    train_batches: Sequence[tuple[np.ndarray, Sequence[int]]],
    test: tuple[np.ndarray, Sequence[int]],
    classes: Sequence[str],
) -> None:
    """``root/cifar-10-batches-py``: five training batches and the test batch, each of uint8
    images N×3×32×32 and their labels, and batches.meta with the class names."""
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name, (images, labels) in zip(names, [*train_batches, test], strict=True):
        n = len(images)
        # CIFAR-10 rows: 1024 red, 1024 green, 1024 blue values, each image row-major.
        entry = {
            "batch_label": name,
            "labels": [int(y) for y in labels],
            "data": np.asarray(images, dtype=np.uint8).reshape(n, 3072),
            "filenames": [f"{name}_{i}.png" for i in range(n)],
        }
        with open(folder / name, "wb") as f:
            pickle.dump(entry, f, protocol=2)
    meta = {"label_names": list(classes), "num_cases_per_batch": len(test[0]), "num_vis": 3072}
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump(meta, f)


def write_cifar100_files(
    root: Path,
    train: tuple[np.ndarray, Sequence[int], Sequence[int]],
    test: tuple[np.ndarray, Sequence[int], Sequence[int]],
    fine_classes: Sequence[str],
    coarse_classes: Sequence[str],
) -> None:
    """``root/cifar-100-python``: ``train`` and ``test``, each of uint8 images N×3×32×32 with
    their fine and coarse labels, and ``meta`` with both lists of class names."""
    folder = Path(root) / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    for name, (images, fine, coarse) in (("train", train), ("test", test)):
        entry = {
            "filenames": [f"{name}_{i}.png" for i in range(len(images))],
            "batch_label": name,
            "fine_labels": [int(y) for y in fine],
            "coarse_labels": [int(y) for y in coarse],
            "data": np.asarray(images, dtype=np.uint8).reshape(len(images), 3072),
        }
        with open(folder / name, "wb") as f:
            pickle.dump(entry, f, protocol=2)
    meta = {"fine_label_names": list(fine_classes), "coarse_label_names": list(coarse_classes)}
    with open(folder / "meta", "wb") as f:
        pickle.dump(meta, f)


def write_svhn_file(path: Path, images: np.ndarray, digits: Sequence[int]) -> None:
    """One SVHN .mat file (train_32x32.mat, ...): ``X`` 32×32×3×N and ``y`` N×1, the digit 0
    stored as label 10 as in the real files. ``images`` are uint8 N×3×32×32."""
    from scipy.io import savemat

    labels = np.array([[10 if int(d) == 0 else int(d)] for d in digits], dtype=np.uint8)
    x = np.ascontiguousarray(np.asarray(images, dtype=np.uint8).transpose(2, 3, 1, 0))
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    savemat(str(path), {"X": x, "y": labels})


def write_image_folder(
    folder: Path, images: np.ndarray, labels: Sequence[int], classes: Sequence[str], ext="png"
) -> list[Path]:
    """``folder/<class>/<i>.<ext>`` for uint8 images N×H×W (grayscale) or N×H×W×3 (RGB),
    written with Pillow; returns the paths in order."""
    from PIL import Image

    paths = []
    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
        path = Path(folder) / classes[int(label)] / f"{i:05d}.{ext}"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.asarray(image, dtype=np.uint8)).save(path)
        paths.append(path)
    return paths
