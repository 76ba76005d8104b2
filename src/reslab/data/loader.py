"""Batches sliced from tensors that already live on the training device.

Small image sets (MNIST family, CIFAR-10) fit in memory many times over, so the whole
split is moved to the device once as uint8 and each batch is indexed, converted,
normalised and augmented there in a few batched operations.

Under data-parallel training each rank takes a strided shard: rank r of W gets items
r, r+W, r+2W, ... of the split (for training, of the epoch's permutation, which every rank
draws from the same seed) in batches of ``batch_size / W``. The W shards of a batch are
exactly the batch a single process would have drawn.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from reslab.data.augment import random_crop, random_hflip
from reslab.data.image_data import ImageSet


@dataclass(frozen=True)
class Augmentation:
    crop_padding: int = 0
    hflip: bool = False

    @property
    def active(self) -> bool:
        return self.crop_padding > 0 or self.hflip


class TensorBatchLoader:
    """Iterate ``(inputs, labels)`` batches of a split held on ``device``.

    ``batch_size`` is the global batch; with ``world_size`` W each rank yields batch_size/W.
    """

    def __init__(
        self,
        data: ImageSet,
        batch_size: int,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        *,
        device: torch.device | str = "cpu",
        shuffle: bool = False,
        drop_last: bool = False,
        augmentation: Augmentation | None = None,
        seed: int = 0,
        limit_batches: int | None = None,
        channels_last: bool = False,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.device = torch.device(device)
        self.rank, self.world_size = rank, world_size
        if shuffle and batch_size % world_size:
            raise ValueError(
                f"batch size {batch_size} does not split evenly over {world_size} processes"
            )
        if not shuffle and world_size > 1:
            data = data.subset(torch.arange(rank, len(data), world_size))  # a fixed shard
        # non_blocking: the one host->device copy overlaps with the rest of the set-up.
        self.images = data.images.to(self.device, non_blocking=True)
        self.labels = data.labels.to(self.device, non_blocking=True)
        self.batch_size = -(-int(batch_size) // world_size)
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.augmentation = augmentation or Augmentation()
        self.limit_batches = limit_batches
        self.channels_last = channels_last
        c = self.images.shape[1]
        # Fold /255 and standardisation into one multiply-add.
        self._scale = (
            (1.0 / (255.0 * torch.tensor(std, dtype=torch.float32)))
            .view(1, c, 1, 1)
            .to(self.device)
        )
        self._shift = (
            (-torch.tensor(mean, dtype=torch.float32) / torch.tensor(std))
            .view(1, c, 1, 1)
            .to(self.device)
        )
        self._order_generator = torch.Generator().manual_seed(seed)
        self._augment_generator = torch.Generator(device=self.device).manual_seed(seed + 1 + rank)
        self._epoch_order_state = self._order_generator.get_state()
        self._position = 0  # batches handed out in the current epoch
        self._resume_at = 0

    def __len__(self) -> int:
        n = self.num_samples
        batches = n // self.batch_size if self.drop_last else -(-n // self.batch_size)
        return min(batches, self.limit_batches) if self.limit_batches else batches

    @property
    def num_samples(self) -> int:
        """Items this rank yields per epoch (all of them in a single process)."""
        if self.shuffle:
            # Every rank must take the same number of steps, so the remainder is dropped.
            return len(self.labels) // self.world_size
        return len(self.labels)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        start, self._resume_at = self._resume_at, 0
        if start == 0:
            # Remember where this epoch's permutation came from, so a mid-epoch checkpoint can replay it.
            self._epoch_order_state = self._order_generator.get_state()
        else:
            self._order_generator.set_state(self._epoch_order_state)
        order = None
        if self.shuffle:
            order = torch.randperm(len(self.labels), generator=self._order_generator)
            if self.world_size > 1:
                order = order[self.rank : self.num_samples * self.world_size : self.world_size]
            if self.device.type == "cuda":
                order = order.pin_memory()  # so that the copy below is truly asynchronous
            order = order.to(self.device, non_blocking=True)
        for b in range(start, len(self)):
            self._position = b + 1
            begin = b * self.batch_size
            if order is None:
                x_u8 = self.images[begin : begin + self.batch_size]
                y = self.labels[begin : begin + self.batch_size]
            else:
                idx = order[begin : begin + self.batch_size]
                x_u8, y = self.images[idx], self.labels[idx]
            yield self._prepare(x_u8), y

    def _prepare(self, x_u8: torch.Tensor) -> torch.Tensor:
        x = torch.addcmul(self._shift, x_u8.float(), self._scale)
        if self.augmentation.active:
            x = random_crop(x, self.augmentation.crop_padding, self._augment_generator)
            if self.augmentation.hflip:
                x = random_hflip(x, self._augment_generator)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def state_dict(self) -> dict:
        """Where the epoch stands: enough to replay the rest of it exactly after a restart."""
        return {
            "epoch_order": self._epoch_order_state,
            "order": self._order_generator.get_state(),
            "augment": self._augment_generator.get_state(),
            "position": self._position,
        }

    def load_state_dict(self, state: dict) -> None:
        self._epoch_order_state = state["epoch_order"]
        self._order_generator.set_state(state["order"])
        self._augment_generator.set_state(state["augment"])
        # A checkpoint taken mid-epoch resumes at the next batch of the same permutation.
        self._resume_at = state["position"] if 0 < state["position"] < len(self) else 0
