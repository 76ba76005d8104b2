"""Small dataset files written in each dataset's own on-disk format, for tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from reslab.data.files import write_cifar10_files

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
    labels = [int(i % 10) for i in range(per_batch)]
    batches = [
        (rng.integers(0, 256, size=(per_batch, 3, 32, 32), dtype=np.uint8), labels)
        for _ in range(6)
    ]
    write_cifar10_files(root, batches[:5], batches[5], CIFAR_CLASSES)
    return batches[5][0]
