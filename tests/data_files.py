"""Small dataset files written in each dataset's own on-disk format, for tests."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

CIFAR_CLASSES = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
]


def write_cifar10(root: Path, per_batch: int = 20, seed: int = 0) -> np.ndarray:
    """Write cifar-10-batches-py with ``per_batch`` images per file; returns the test images (N, 3, 32, 32)."""
    rng = np.random.default_rng(seed)
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    test_images = None
    for name in names:
        images = rng.integers(0, 256, size=(per_batch, 3, 32, 32), dtype=np.uint8)
        labels = [int(i % 10) for i in range(per_batch)]
        # CIFAR-10 rows: 1024 red, 1024 green, 1024 blue values, each image row-major.
        entry = {
            "batch_label": name,
            "labels": labels,
            "data": images.reshape(per_batch, 3072),
            "filenames": [f"{name}_{i}.png" for i in range(per_batch)],
        }
        with open(folder / name, "wb") as f:
            pickle.dump(entry, f, protocol=2)
        if name == "test_batch":
            test_images = images
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump(
            {"label_names": CIFAR_CLASSES, "num_cases_per_batch": per_batch, "num_vis": 3072}, f
        )
    return test_images


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write an uint8 array in the IDX format MNIST uses (magic 0x08, big-endian dims)."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape
    )
    Path(path).write_bytes(header + array.astype(np.uint8).tobytes())
