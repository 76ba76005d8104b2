"""Datasets as in-memory uint8 tensors, split and batched without per-item Python work."""

from reslab.data.datasets import ImageData, load_dataset
from reslab.data.loader import TensorBatchLoader

__all__ = ["ImageData", "TensorBatchLoader", "load_dataset"]
