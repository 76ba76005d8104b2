"""Validation split and normalisation statistics, both from the training set only."""

from __future__ import annotations

import torch

from reslab.data.image_data import ImageSet


def split_train_val(train: ImageSet, val_fraction: float, seed: int) -> tuple[ImageSet, ImageSet]:
    """Carve a stratified validation set off the training set, reproducibly from ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    train_idx, val_idx = [], []
    for label in torch.unique(train.labels):
        members = torch.nonzero(train.labels == label).flatten()
        members = members[torch.randperm(len(members), generator=generator)]
        n_val = max(1, round(len(members) * val_fraction))
        val_idx.append(members[:n_val])
        train_idx.append(members[n_val:])
    # Shuffle once so splits are not ordered by class (matters for limit_*_batches).
    train_index = torch.cat(train_idx)
    val_index = torch.cat(val_idx)
    train_index = train_index[torch.randperm(len(train_index), generator=generator)]
    val_index = val_index[torch.randperm(len(val_index), generator=generator)]
    return train.subset(train_index), train.subset(val_index)


def stratified_subset(data: ImageSet, size: int, seed: int) -> ImageSet:
    """``size`` images of ``data`` with each class in its share of the whole (largest
    remainders), drawn reproducibly from ``seed``; a larger size holds a smaller one's images."""
    labels, counts = torch.unique(data.labels, return_counts=True)
    shares = counts.double() * size / len(data)
    per_class = shares.floor().long()
    short = size - int(per_class.sum())
    per_class[torch.argsort(shares - per_class, descending=True, stable=True)[:short]] += 1
    generator = torch.Generator().manual_seed(seed)
    picked = []
    for label, n in zip(labels, per_class):
        members = torch.nonzero(data.labels == label).flatten()
        picked.append(members[torch.randperm(len(members), generator=generator)[: int(n)]])
    index = torch.cat(picked)
    return data.subset(index[torch.randperm(len(index), generator=generator)])


def channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and (sample) std of uint8 images, in [0, 1] units.

    Computed exactly from each channel's histogram of the 256 pixel values: the only
    temporary is one channel's pixels as uint8, where a float64 copy of the split would take
    eight times the whole set (about 1.1 GB for CIFAR-10's 45,000 training images).
    """
    values = torch.arange(256, dtype=torch.float64) / 255.0
    means, stds = [], []
    for channel in range(images.shape[1]):
        counts = torch.bincount(images[:, channel].reshape(-1), minlength=256).double()
        n = counts.sum()
        mean = (counts * values).sum() / n
        var = (counts * (values - mean) ** 2).sum() / (n - 1).clamp_min(1)
        means.append(float(mean))
        stds.append(max(float(var.sqrt()), 1e-6))
    return tuple(means), tuple(stds)
