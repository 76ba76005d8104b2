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


def channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 images, in [0, 1] units."""
    x = images.to(torch.float64).div_(255.0)
    mean = x.mean(dim=(0, 2, 3))
    std = x.std(dim=(0, 2, 3)).clamp_min(1e-6)
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)
