"""The fast path: data held once as uint8 on the device, the DataLoader fallback, eval mode,
precision and memory-format choices."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from reslab.data.image_data import ImageData, ImageSet
from reslab.data.loader import (
    Augmentation,
    DataLoaderBatches,
    TensorBatchLoader,
    on_device,
)
from reslab.errors import ConfigError
from reslab.run import build_loaders
from reslab.training import precision as precision_module
from reslab.training.distributed import DistEnv, wrap
from reslab.training.fastpath import use_channels_last
from reslab.training.precision import resolve_precision

from .conftest import compose_config

MEAN, STD = (0.5, 0.4, 0.3), (0.25, 0.2, 0.15)


def _images(n: int = 40, seed: int = 0) -> ImageSet:
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, 8, 8), dtype=torch.uint8, generator=g)
    return ImageSet(images, torch.arange(n) % 10)


def _data() -> ImageData:
    return ImageData(
        "tiny",
        _images(40),
        _images(12, 1),
        _images(16, 2),
        [str(i) for i in range(10)],
        MEAN,
        STD,
        "test",
    )


def test_on_device_loader_holds_the_split_once_as_uint8_and_keeps_no_copies():
    data = _images()
    loader = TensorBatchLoader(
        data, 8, MEAN, STD, shuffle=True, augmentation=Augmentation(2, True), channels_last=True
    )
    split_bytes = data.images.nbytes + data.labels.nbytes
    # Already on the device (CPU here): the loader aliases the split instead of copying it.
    assert loader.images.data_ptr() == data.images.data_ptr()
    assert loader.images.dtype == torch.uint8
    assert split_bytes <= loader.resident_bytes <= split_bytes + 64  # + mean/std constants
    held = {k for k, v in vars(loader).items() if isinstance(v, torch.Tensor)}
    batches = list(loader)
    assert len(batches) == 5 and all(x.dtype == torch.float32 for x, _ in batches)
    # Iterating keeps no float or augmented copy of the split around.
    assert {k for k, v in vars(loader).items() if isinstance(v, torch.Tensor)} == held
    assert loader.images.data_ptr() == data.images.data_ptr()


def test_run_loaders_hold_at_most_one_copy_of_the_dataset(tmp_path):
    data = _data()
    cfg = compose_config("dataset=cifar10", "dataset.batch_size=8", "trainer.device=cpu")
    loaders = build_loaders(cfg, data, torch.device("cpu"), seed=0)
    total = sum(s.images.nbytes + s.labels.nbytes for s in (data.train, data.val, data.test))
    held = sum(loader.resident_bytes for loader in loaders)
    assert all(isinstance(loader, TensorBatchLoader) for loader in loaders)
    assert total <= held <= total + 3 * 64
    # Evaluation runs with its own, larger batch.
    assert loaders[1].batch_size == cfg.dataset.eval_batch_size > loaders[0].batch_size


def test_on_device_false_falls_back_to_a_dataloader_with_torchvision_transforms():
    data = _data()
    cfg = compose_config(
        "dataset=cifar10",
        "dataset.batch_size=8",
        "dataset.on_device=false",
        "dataset.num_workers=0",
        "trainer.device=cpu",
    )
    train, val, test = build_loaders(cfg, data, torch.device("cpu"), seed=0)
    assert all(isinstance(loader, DataLoaderBatches) for loader in (train, val, test))
    assert isinstance(train.loader, torch.utils.data.DataLoader)
    assert train.resident_bytes == 0
    x, y = next(iter(train))
    assert x.shape == (8, 3, 8, 8)
    assert x.dtype == torch.float32 and y.dtype == torch.int64


def test_dataloader_path_yields_the_same_batches_as_the_tensor_path():
    data = _images()
    for rank in (0, 1):
        shard = {"rank": rank, "world_size": 2, "seed": 5}
        fast = TensorBatchLoader(data, 8, MEAN, STD, shuffle=True, **shard)
        slow = DataLoaderBatches(data, 8, MEAN, STD, shuffle=True, num_workers=0, **shard)
        assert len(fast) == len(slow) == 5
        for _ in range(2):  # two epochs: the permutation advances alike
            for (xf, yf), (xs, ys) in zip(fast, slow, strict=True):
                assert torch.equal(yf, ys)
                torch.testing.assert_close(xf, xs)


def test_dataloader_path_resumes_mid_epoch_at_the_next_batch():
    data = _images()
    loader = DataLoaderBatches(data, 8, MEAN, STD, shuffle=True, num_workers=0, seed=3)
    epoch = iter(loader)
    seen = [next(epoch)[1] for _ in range(2)]
    state = loader.state_dict()
    rest = [y for _, y in epoch]
    resumed = DataLoaderBatches(data, 8, MEAN, STD, shuffle=True, num_workers=0, seed=99)
    resumed.load_state_dict(state)
    replayed = [y for _, y in resumed]
    assert len(seen) + len(replayed) == len(loader)
    assert all(torch.equal(a, b) for a, b in zip(rest, replayed, strict=True))


def test_on_device_setting():
    cpu = torch.device("cpu")
    assert on_device("auto", 10**12, cpu) is True  # on CPU the decoded set is in memory already
    assert on_device(False, 10, cpu) is False
    with pytest.raises(ConfigError, match="dataset.on_device"):
        on_device("sometimes", 10, cpu)


def test_channels_last_auto_only_for_conv_nets_on_cuda():
    conv = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten())
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    assert use_channels_last("auto", conv, torch.device("cuda")) is True
    assert use_channels_last("auto", mlp, torch.device("cuda")) is False
    assert use_channels_last("auto", conv, torch.device("cpu")) is False
    assert use_channels_last(True, mlp, torch.device("cpu")) is True
    with pytest.raises(ConfigError, match="trainer.channels_last"):
        use_channels_last("fast", conv, torch.device("cpu"))
    loader = TensorBatchLoader(_images(), 8, MEAN, STD, channels_last=True)
    x, _ = next(iter(loader))
    assert x.is_contiguous(memory_format=torch.channels_last)


def test_precision_auto_is_bf16_on_cuda_where_supported_and_fp32_on_cpu(monkeypatch):
    cuda = torch.device("cuda")
    assert resolve_precision("auto", torch.device("cpu")).dtype is None
    monkeypatch.setattr(precision_module.torch.cuda, "is_bf16_supported", lambda: True)
    bf16 = resolve_precision("auto", cuda)
    assert bf16.dtype == torch.bfloat16 and not bf16.needs_scaler
    monkeypatch.setattr(precision_module.torch.cuda, "is_bf16_supported", lambda: False)
    fp16 = resolve_precision("auto", cuda)
    assert fp16.dtype == torch.float16 and fp16.needs_scaler
    assert resolve_precision("32", cuda).dtype is None


def test_evaluation_runs_under_inference_mode(tmp_path):
    from reslab.training.early_stopping import EarlyStopping
    from reslab.training.options import Stopping
    from reslab.training.schedule import LRSchedule
    from reslab.training.trainer import Trainer

    class Recorder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 10))
            self.modes: list[bool] = []

        def forward(self, x):
            self.modes.append(torch.is_inference_mode_enabled())
            return self.net(x)

    model = Recorder()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    trainer = Trainer(
        model,
        optimizer,
        LRSchedule(optimizer, None, "epoch", 0),
        stopping=Stopping(1, EarlyStopping("val/loss", "min", None, 0.0)),
        classes=10,
        checkpoint_dir=tmp_path,
        progress=False,
    )
    trainer.fit(
        TensorBatchLoader(_images(), 8, MEAN, STD), TensorBatchLoader(_images(), 20, MEAN, STD)
    )
    assert model.modes == [False] * 5 + [True] * 2  # 5 training steps, then 2 eval batches


def test_sync_batchnorm_without_cuda_is_a_config_error():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    with pytest.raises(ConfigError, match="trainer.sync_batchnorm"):
        wrap(model, DistEnv(0, 2, 0), torch.device("cpu"), sync_batchnorm=True)


@pytest.mark.parametrize("path", [TensorBatchLoader, DataLoaderBatches])
def test_random_crop_pads_with_black_on_both_data_paths(path):
    # A white image cropped from a 4-pixel padding: every pixel is white or padding, and the
    # padding is black (0 before normalisation), as torchvision's RandomCrop and the paper do.
    white = ImageSet(torch.full((40, 3, 8, 8), 255, dtype=torch.uint8), torch.zeros(40).long())
    extra = {"num_workers": 0} if path is DataLoaderBatches else {}
    loader = path(white, 40, MEAN, STD, shuffle=True, augmentation=Augmentation(4, False), **extra)
    ((x, _),) = list(loader)
    mean, std = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)
    black, bright = (0 - mean) / std, (1 - mean) / std
    is_black = torch.isclose(x, black.expand_as(x), atol=1e-5)
    is_white = torch.isclose(x, bright.expand_as(x), atol=1e-5)
    assert bool((is_black | is_white).all())
    assert bool(is_black.any()) and bool(is_white.any())


def test_explain_figures_normalise_images_exactly_as_the_loader_does():
    from reslab.data.normalise import normalise_images

    images = _images()
    (x, _), *_ = TensorBatchLoader(images, 40, MEAN, STD)
    assert torch.equal(normalise_images(images.images, MEAN, STD), x)
    mean, std = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)
    expected = (images.images.float() / 255 - mean) / std
    torch.testing.assert_close(x, expected)
