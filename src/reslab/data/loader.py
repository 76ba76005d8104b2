"""Batches for the trainer: sliced from tensors on the training device, or from a DataLoader.

Small image sets (MNIST family, CIFAR-10) fit in memory many times over, so the whole
split is moved to the device once as uint8 and each batch is indexed, converted,
normalised and augmented there in a few batched operations (``TensorBatchLoader``).
Data that does not fit goes through torch's DataLoader with torchvision transforms, one
item at a time in worker processes, and each batch is copied to the device
(``DataLoaderBatches``). ``dataset.on_device`` picks between them.

Under data-parallel training each rank takes a strided shard: rank r of W gets items
r, r+W, r+2W, ... of the split (for training, of the epoch's permutation, which every rank
draws from the same seed) in batches of ``batch_size / W``. The W shards of a batch are
exactly the batch a single process would have drawn.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

from reslab.data.augment import random_crop, random_hflip
from reslab.data.image_data import ImageSet
from reslab.data.normalise import normalisation, normalise
from reslab.errors import ConfigError

# On CUDA, ``on_device=auto`` keeps the data on the GPU when it takes at most this share of
# the free memory; the rest is left to activations.
DEVICE_SHARE = 0.5


@dataclass(frozen=True)
class Augmentation:
    crop_padding: int = 0
    hflip: bool = False

    @property
    def active(self) -> bool:
        return self.crop_padding > 0 or self.hflip


class _ShardedBatches:
    """What both loaders share: the global batch split over ranks, this rank's shard, the
    epoch's permutation, and the place in it a mid-epoch checkpoint left off."""

    def _setup(
        self,
        data: ImageSet,
        batch_size: int,
        *,
        device: torch.device | str = "cpu",
        shuffle: bool = False,
        drop_last: bool = False,
        seed: int = 0,
        limit_batches: int | None = None,
        channels_last: bool = False,
        rank: int = 0,
        world_size: int = 1,
    ) -> ImageSet:
        """Set the shared state; returns the part of ``data`` this rank holds."""
        self.device = torch.device(device)
        self.rank, self.world_size = rank, world_size
        if shuffle and batch_size % world_size:
            raise ValueError(
                f"batch size {batch_size} does not split evenly over {world_size} processes"
            )
        if not shuffle and world_size > 1:
            data = data.subset(torch.arange(rank, len(data), world_size))  # a fixed shard
        self._items = len(data)
        self.batch_size = -(-int(batch_size) // world_size)
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.limit_batches = limit_batches
        self.channels_last = channels_last
        self._order_generator = torch.Generator().manual_seed(seed)
        self._epoch_order_state = self._order_generator.get_state()
        self._position = 0  # batches handed out in the current epoch
        self._resume_at = 0
        return data

    def __len__(self) -> int:
        n = self.num_samples
        batches = n // self.batch_size if self.drop_last else -(-n // self.batch_size)
        return min(batches, self.limit_batches) if self.limit_batches else batches

    @property
    def num_samples(self) -> int:
        """Items this rank yields per epoch (all of them in a single process)."""
        # Shuffled: every rank must take the same number of steps, so the remainder is dropped.
        return self._items // self.world_size if self.shuffle else self._items

    def _start_epoch(self) -> int:
        """The epoch's first batch: 0, or where a mid-epoch checkpoint left off."""
        start, self._resume_at = self._resume_at, 0
        if start == 0:
            # Remember where this epoch's permutation came from, so a checkpoint can replay it.
            self._epoch_order_state = self._order_generator.get_state()
        else:
            self._order_generator.set_state(self._epoch_order_state)
        return start

    def state_dict(self) -> dict:
        """Where the epoch stands: enough to replay the rest of it exactly after a restart."""
        return {
            "epoch_order": self._epoch_order_state,
            "order": self._order_generator.get_state(),
            "position": self._position,
        }

    def load_state_dict(self, state: dict) -> None:
        self._epoch_order_state = state["epoch_order"]
        self._order_generator.set_state(state["order"])
        # A checkpoint taken mid-epoch resumes at the next batch of the same permutation.
        self._resume_at = state["position"] if 0 < state["position"] < len(self) else 0


class TensorBatchLoader(_ShardedBatches):
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
        data = self._setup(
            data,
            batch_size,
            device=device,
            shuffle=shuffle,
            drop_last=drop_last,
            seed=seed,
            limit_batches=limit_batches,
            channels_last=channels_last,
            rank=rank,
            world_size=world_size,
        )
        # non_blocking: the one host->device copy overlaps with the rest of the set-up.
        self.images = data.images.to(self.device, non_blocking=True)
        self.labels = data.labels.to(self.device, non_blocking=True)
        self.augmentation = augmentation or Augmentation()
        self._scale, self._shift = normalisation(mean, std, self.device)
        self._augment_generator = torch.Generator(device=self.device).manual_seed(seed + 1 + rank)

    @property
    def resident_bytes(self) -> int:
        """Bytes of the tensors this loader keeps on its device (the split, as uint8, and labels)."""
        held = (self.images, self.labels, self._scale, self._shift)
        storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in held}
        return sum(storages.values())

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        start = self._start_epoch()
        order = None
        if self.shuffle:
            order = _epoch_order(
                len(self.labels), self._order_generator, self.rank, self.world_size
            )
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
        x = x_u8.float()
        if self.augmentation.active:
            # Augment the raw pixel values, so padding is black (0) as in torchvision's
            # RandomCrop on the image and in the paper, not the mean colour.
            x = random_crop(x, self.augmentation.crop_padding, self._augment_generator)
            if self.augmentation.hflip:
                x = random_hflip(x, self._augment_generator)
        x = normalise(x, self._scale, self._shift)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def state_dict(self) -> dict:
        return {**super().state_dict(), "augment": self._augment_generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self._augment_generator.set_state(state["augment"])


def _epoch_order(n: int, generator: torch.Generator, rank: int, world_size: int) -> torch.Tensor:
    """This rank's strided share of the epoch's permutation, drawn alike on every rank."""
    order = torch.randperm(n, generator=generator)
    if world_size > 1:
        order = order[rank : (n // world_size) * world_size : world_size]
    return order


def on_device(setting: Any, nbytes: int, device: torch.device) -> bool:
    """Whether the data (``nbytes`` of uint8 images and labels) should live on ``device``.

    ``auto``: always on CPU, where the decoded set already sits in memory; on CUDA when it
    takes at most half of the free GPU memory.
    """
    if setting is None or str(setting).lower() == "auto":
        if device.type != "cuda":
            return True
        free, _ = torch.cuda.mem_get_info(device)
        return nbytes <= DEVICE_SHARE * free
    if isinstance(setting, bool):
        return setting
    raise ConfigError(f"dataset.on_device={setting!r} is invalid; use auto, true or false")


class ImageItems(torch.utils.data.Dataset):
    """``(image, label)`` one item at a time, through a torchvision transform."""

    def __init__(self, data: ImageSet, transform: Any) -> None:
        self.images, self.transform = data.images, transform
        # Plain ints: the DataLoader collates them into one tensor in a single call, where
        # 0-d tensors would be indexed and stacked one by one (a measurable cost per batch).
        self.labels = data.labels.tolist()

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.transform(self.images[index]), self.labels[index]


def item_transform(
    mean: tuple[float, ...], std: tuple[float, ...], augmentation: Augmentation, size: int
) -> Any:
    """The per-item torchvision pipeline doing what ``TensorBatchLoader`` does per batch."""
    from torchvision.transforms import v2

    steps: list[Any] = []
    if augmentation.crop_padding > 0:
        steps.append(v2.RandomCrop(size, padding=augmentation.crop_padding))
    if augmentation.hflip:
        steps.append(v2.RandomHorizontalFlip())
    steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))]
    return v2.Compose(steps)


class _ShardSampler(torch.utils.data.Sampler[int]):
    """The indices ``TensorBatchLoader`` would visit: same permutation, same shard, same resume."""

    def __init__(self, loader: DataLoaderBatches) -> None:
        self.loader = loader

    def __len__(self) -> int:
        return self.loader.num_samples

    def __iter__(self) -> Iterator[int]:
        loader = self.loader
        n = len(loader.dataset)
        if not loader.shuffle:
            return iter(range(n))
        order = _epoch_order(n, loader._order_generator, loader.rank, loader.world_size)
        return iter(order[loader._start * loader.batch_size :].tolist())


class DataLoaderBatches(_ShardedBatches):
    """Batches from ``torch.utils.data.DataLoader`` (worker processes, per-item torchvision
    transforms), copied to ``device``: the path for data that does not fit there.

    Same interface, order, sharding and checkpoint state as ``TensorBatchLoader``; a resumed
    epoch continues at the same batch of the same permutation, though the augmentation's
    random draws are not replayed.
    """

    def __init__(
        self,
        data: ImageSet,
        batch_size: int,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        *,
        augmentation: Augmentation | None = None,
        num_workers: int = 2,
        seed: int = 0,
        **sharding: Any,
    ) -> None:
        """``sharding``: device, shuffle, drop_last, limit_batches, channels_last, rank and
        world_size, as for ``TensorBatchLoader``."""
        data = self._setup(data, batch_size, seed=seed, **sharding)
        size = int(data.images.shape[-1])
        self.dataset = ImageItems(
            data, item_transform(mean, std, augmentation or Augmentation(), size)
        )
        self._start = 0  # first batch of the epoch being iterated (read by the sampler)
        self.loader = torch.utils.data.DataLoader(
            self.dataset,
            batch_size=self.batch_size,
            sampler=_ShardSampler(self),
            num_workers=num_workers,
            pin_memory=self.device.type == "cuda",
            drop_last=self.drop_last,
            persistent_workers=num_workers > 0,
            generator=torch.Generator().manual_seed(seed + 1 + self.rank),  # workers' seeds
        )

    @property
    def resident_bytes(self) -> int:
        return 0  # the data stays in host memory; only the current batch is on the device

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        self._start = start = self._start_epoch()
        non_blocking = self.device.type == "cuda"  # pinned batches: the copy overlaps compute
        memory_format = torch.channels_last if self.channels_last else torch.contiguous_format
        for b, (x, y) in enumerate(self.loader, start):
            if b >= len(self):
                break
            self._position = b + 1
            x = x.to(self.device, non_blocking=non_blocking, memory_format=memory_format)
            yield x, y.to(self.device, non_blocking=non_blocking)
