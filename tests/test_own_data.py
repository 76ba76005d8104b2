"""The user's own data and the other small benchmarks: image folders, tensor files, CIFAR-100 and
SVHN, each read from small files in its own format through the loaders training uses."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from reslab.data import load_dataset
from reslab.data.files import write_cifar100_files, write_image_folder, write_svhn_file
from reslab.data.registry import declared_shape
from reslab.errors import ConfigError, DataError

from .conftest import compose_config

CLASSES = ["ash", "beech", "cedar"]


def _images(n: int, size=(8, 8), rgb: bool = False, seed: int = 0) -> np.ndarray:
    shape = (n, *size, 3) if rgb else (n, *size)
    return np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)


def _folder(root, n_train=12, n_test=6, size=(8, 8), rgb=False, test=True):
    """An ImageFolder tree of CLASSES: train/ (and test/); returns the train images and labels."""
    images, labels = _images(n_train, size, rgb), [i % 3 for i in range(n_train)]
    write_image_folder(root / "train", images, labels, CLASSES)
    if test:
        write_image_folder(
            root / "test", _images(n_test, size, rgb, 1), [i % 3 for i in range(n_test)], CLASSES
        )
    return images, labels


def _dataset(name: str, *overrides: str):
    return compose_config(f"dataset={name}", *overrides).dataset


# ----------------------------------------------------------------------------- image folders
def test_an_image_folder_reads_its_classes_and_pixels_exactly(tmp_path):
    images, labels = _folder(tmp_path)
    data = load_dataset(
        _dataset("image_folder", f"dataset.root={tmp_path}", "dataset.val_fraction=0.25")
    )
    assert data.classes == CLASSES and data.input_shape == (1, 8, 8)
    assert len(data.train) + len(data.val) == 12 and len(data.test) == 6
    assert "train/ and test/" in data.source
    # Every decoded training image is one of the written ones, with its own label.
    written = {torch.from_numpy(im).flatten().numpy().tobytes(): y for im, y in zip(images, labels)}
    for split in (data.train, data.val):
        for image, label in zip(split.images, split.labels):
            assert written[image[0].numpy().tobytes()] == int(label)


def test_colour_images_are_rgb_and_image_size_resizes_them(tmp_path):
    _folder(tmp_path, size=(10, 14), rgb=True)
    data = load_dataset(
        _dataset(
            "image_folder",
            f"dataset.root={tmp_path}",
            "dataset.image_size=6",
            "dataset.val_fraction=0.25",
        )
    )
    assert data.input_shape == (3, 6, 6) and data.train.images.dtype == torch.uint8
    gray = load_dataset(
        _dataset(
            "image_folder",
            f"dataset.root={tmp_path}",
            "dataset.channels=1",
            "dataset.val_fraction=0.25",
        )
    )
    assert gray.input_shape == (1, 10, 14)  # written as 10-high, 14-wide arrays


def test_without_test_folder_a_stratified_share_is_held_out(tmp_path):
    _folder(tmp_path, n_train=30, test=False)
    cfg = _dataset("image_folder", f"dataset.root={tmp_path}", "dataset.test_fraction=0.2")
    data = load_dataset(cfg)
    assert data.test.labels.bincount().tolist() == [2, 2, 2]  # 0.2 of each class's 10
    assert len(data.train) + len(data.val) + len(data.test) == 30
    again = load_dataset(cfg)
    assert torch.equal(again.test.images, data.test.images)  # the same split every run


def test_decoded_images_are_cached_and_a_changed_folder_is_decoded_again(tmp_path, caplog):
    _folder(tmp_path / "leaves")
    cfg = _dataset(
        "image_folder",
        f"dataset.root={tmp_path / 'leaves'}",
        f"dataset.cache_dir={tmp_path / 'cache'}",
        "dataset.val_fraction=0.25",
    )
    first = load_dataset(cfg)
    assert len(list((tmp_path / "cache").glob("*.pt"))) == 1
    with caplog.at_level(logging.INFO, logger="reslab"):
        second = load_dataset(cfg)
    assert "read from the cache" in caplog.text
    assert torch.equal(first.train.images, second.train.images)
    write_image_folder(tmp_path / "leaves" / "train", _images(1, seed=5), [0], CLASSES, ext="jpg")
    before = list((tmp_path / "cache").glob("*.pt"))
    third = load_dataset(cfg)
    assert len(third.train) + len(third.val) == 13
    after = list((tmp_path / "cache").glob("*.pt"))
    assert len(after) == 1 and after != before  # the stale cache is replaced, not kept


def test_an_image_folder_trains_and_explains_from_the_command_line(tmp_path, cli):
    _folder(tmp_path / "leaves", n_train=24, n_test=9, size=(12, 12), rgb=True)
    run_dir = tmp_path / "run"
    proc = cli(
        "dataset=image_folder",
        f"dataset.root={tmp_path / 'leaves'}",
        "dataset.image_size=16",
        "dataset.batch_size=8",
        "model=cnn",
        "model.head=gap",
        "depth=3",
        "width=4",
        "trainer=debug",
        "logger=none",
        f"hydra.run.dir={run_dir}",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads((run_dir / "results.json").read_text())
    assert results["dataset"] == "image_folder" and results["n_test"] == 9
    assert [row["class"] for row in results["class_report"]] == CLASSES
    proc = cli(f"run={run_dir}", "method=cam", "n=6", script="scripts/explain.py")
    assert proc.returncode == 0, proc.stderr[-2000:]
    with Image.open(run_dir / "figures" / "cam.png") as figure:
        assert figure.width > 100
    # results.json's input shape lets evaluate refuse data the model did not train on.
    proc = cli(f"run={run_dir}", "dataset=mnist", script="scripts/evaluate.py")
    assert proc.returncode != 0 and "trained on (3, 16, 16)" in proc.stderr, proc.stderr


# ------------------------------------------------------------------------------ tensor files
@pytest.mark.parametrize("suffix", [".npz", ".pt"])
def test_a_tensor_file_gives_its_images_labels_and_class_names(tmp_path, suffix):
    arrays = {
        "x_train": _images(20, (6, 6)),
        "y_train": np.arange(20) % 4,
        "x_test": _images(8, (6, 6), seed=1),
        "y_test": np.arange(8) % 4,
        "classes": np.array(["n", "e", "s", "w"]),
    }
    path = tmp_path / f"mine{suffix}"
    if suffix == ".npz":
        np.savez(path, **arrays)
    else:
        torch.save(
            {k: torch.from_numpy(v) for k, v in arrays.items() if k != "classes"}
            | {"classes": list("nesw")},
            path,
        )
    data = load_dataset(_dataset("tensors", f"dataset.path={path}", "dataset.val_fraction=0.25"))
    assert data.classes == ["n", "e", "s", "w"] and data.input_shape == (1, 6, 6)
    assert torch.equal(data.test.images[:, 0], torch.from_numpy(arrays["x_test"]))
    assert data.test.labels.tolist() == arrays["y_test"].tolist()


def test_a_tensor_file_without_class_names_numbers_them(tmp_path):
    x = np.random.default_rng(0).integers(0, 256, size=(12, 3, 5, 5), dtype=np.uint8)
    np.savez(
        tmp_path / "d.npz", x_train=x, y_train=np.arange(12) % 3, x_test=x[:3], y_test=[0, 1, 2]
    )
    data = load_dataset(
        _dataset("tensors", f"dataset.path={tmp_path / 'd.npz'}", "dataset.val_fraction=0.25")
    )
    assert data.classes == ["0", "1", "2"] and data.input_shape == (3, 5, 5)


# -------------------------------------------------------------------- CIFAR-100 and SVHN
def _write_cifar100(root) -> tuple[np.ndarray, list[int]]:
    rng = np.random.default_rng(0)
    fine = [f"f{i}" for i in range(100)]
    coarse = [f"c{i}" for i in range(20)]
    train_x = rng.integers(0, 256, size=(200, 3, 32, 32), dtype=np.uint8)
    test_x = rng.integers(0, 256, size=(100, 3, 32, 32), dtype=np.uint8)
    train_y, test_y = [i % 100 for i in range(200)], list(range(100))
    write_cifar100_files(
        root,
        (train_x, train_y, [y // 5 for y in train_y]),
        (test_x, test_y, [y // 5 for y in test_y]),
        fine,
        coarse,
    )
    return test_x, test_y


@pytest.mark.parametrize("labels, classes", [("fine", 100), ("coarse", 20)])
def test_cifar100_reads_fine_or_coarse_labels(tmp_path, labels, classes):
    test_x, test_y = _write_cifar100(tmp_path)
    cfg = _dataset(
        "cifar100", f"dataset.root={tmp_path}", "dataset.download=false", f"dataset.labels={labels}"
    )
    assert declared_shape(cfg) == ((3, 32, 32), classes)
    data = load_dataset(cfg)
    assert data.num_classes == classes and data.input_shape == (3, 32, 32)
    assert torch.equal(data.test.images, torch.from_numpy(test_x))
    expected = test_y if labels == "fine" else [y // 5 for y in test_y]
    assert data.test.labels.tolist() == expected
    assert data.classes[1] == ("f1" if labels == "fine" else "c1")


def test_svhn_reads_its_mat_files_with_ten_as_the_digit_zero(tmp_path):
    rng = np.random.default_rng(0)
    train_x = rng.integers(0, 256, size=(30, 3, 32, 32), dtype=np.uint8)
    test_x = rng.integers(0, 256, size=(10, 3, 32, 32), dtype=np.uint8)
    write_svhn_file(tmp_path / "SVHN" / "train_32x32.mat", train_x, [i % 10 for i in range(30)])
    write_svhn_file(tmp_path / "SVHN" / "test_32x32.mat", test_x, list(range(10)))
    write_svhn_file(tmp_path / "SVHN" / "extra_32x32.mat", test_x, list(range(10)))
    cfg = _dataset("svhn", f"dataset.root={tmp_path}", "dataset.download=false")
    data = load_dataset(cfg)
    assert data.classes[0] == "0" and data.test.labels.tolist() == list(range(10))
    assert torch.equal(data.test.images, torch.from_numpy(test_x))
    cfg.extra = True
    with_extra = load_dataset(cfg)
    assert len(with_extra.train) + len(with_extra.val) == 40


def test_svhn_absent_offline_says_which_file_to_put_where(tmp_path):
    with pytest.raises(DataError, match=r"train_32x32.mat not found in .*SVHN"):
        load_dataset(_dataset("svhn", f"dataset.root={tmp_path}", "dataset.download=false"))


def test_a_loader_named_by_its_dotted_path_is_used(tmp_path):
    cfg = OmegaConf.merge(
        _dataset("tensors"), {"name": "mine", "loader": "tests.test_own_data.tiny_loader"}
    )
    data = load_dataset(cfg)
    assert data.name == "mine" and data.classes == ["a", "b"] and data.source == "tiny"
    with pytest.raises(ConfigError, match="dataset.loader=nowhere is unknown"):
        load_dataset(OmegaConf.merge(cfg, {"loader": "nowhere"}))
    with pytest.raises(ConfigError, match="cannot be imported: .*No module named 'mypkg'"):
        load_dataset(OmegaConf.merge(cfg, {"loader": "mypkg.load"}))


def tiny_loader(cfg, root):
    from reslab.data.image_data import ImageSet, Splits

    images = torch.zeros(8, 1, 4, 4, dtype=torch.uint8)
    labels = torch.arange(8) % 2
    return Splits(ImageSet(images, labels), ImageSet(images[:2], labels[:2]), ["a", "b"], "tiny")


# -------------------------------------------------------------------------- bad data, one line
def _bad_folder(tmp_path, case: str) -> list[str]:
    root = tmp_path / "bad"
    if case == "empty class":
        _folder(root, test=False)
        (root / "train" / "dogwood").mkdir()
    elif case == "unreadable image":
        _folder(root, test=False)
        (root / "train" / "ash" / "broken.png").write_bytes(b"not a png at all")
    elif case == "mixed sizes":
        _folder(root, test=False)
        write_image_folder(root / "train", _images(1, (9, 7)), [1], CLASSES, ext="bmp")
    elif case == "test classes differ":
        _folder(root)
        (root / "test" / "cedar").rename(root / "test" / "cypress")
    elif case == "labels out of range":
        x = _images(6, (4, 4))
        np.savez(
            root.with_suffix(".npz"),
            x_train=x,
            y_train=[0, 1, 2, 0, 1, 2],
            x_test=x[:2],
            y_test=[0, 3],
            classes=np.array(CLASSES),
        )
        return ["dataset=tensors", f"dataset.path={root.with_suffix('.npz')}"]
    return ["dataset=image_folder", f"dataset.root={root}"]


@pytest.mark.parametrize(
    "case, says",
    [
        ("empty class", "dogwood holds no images"),
        ("unreadable image", "broken.png is not a readable image"),
        ("mixed sizes", "set dataset.image_size=<n>"),
        ("test classes differ", "missing: cedar; not in train/: cypress"),
        ("labels out of range", "y_test holds label 3, out of range for 3 names in classes"),
    ],
)
def test_bad_data_stops_with_one_line_from_the_command_line(tmp_path, cli, case, says):
    args = _bad_folder(tmp_path, case)
    proc = cli(
        *args,
        "model=mlp",
        "depth=2",
        "width=8",
        "trainer=debug",
        "logger=none",
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0], proc.stderr[-2000:]


def test_where_the_data_live_stays_out_of_run_names():
    from reslab.tracking.factory import run_name

    overrides = [
        "dataset=tensors",
        "dataset.path=/data/mine.npz",
        "dataset.cache_dir=/tmp/c",
        "depth=4",
    ]
    assert run_name("cnn", overrides, "x") == "cnn-dataset=tensors,depth=4"


def test_a_relative_tensor_file_path_is_also_looked_for_in_the_data_folder(tmp_path):
    x = _images(6, (4, 4))
    np.savez(tmp_path / "mine.npz", x_train=x, y_train=[0, 1] * 3, x_test=x[:2], y_test=[0, 1])
    cfg = _dataset("tensors", "dataset.path=mine.npz", f"dataset.root={tmp_path}")
    assert str(tmp_path) in load_dataset(cfg).source
    cfg.root = str(tmp_path / "elsewhere")
    with pytest.raises(DataError, match="dataset.path=mine.npz does not exist"):
        load_dataset(cfg)


# ------------------------------------------------------------ images and files found in the wild
def test_16_bit_grayscale_images_are_scaled_not_clipped(tmp_path):
    for name, value in (("a", 65535), ("b", 32768)):
        path = tmp_path / "train" / name / "x.png"
        path.parent.mkdir(parents=True)
        Image.fromarray(np.full((4, 4), value, dtype=np.uint16)).save(path)  # mode I;16
        Image.fromarray(np.full((4, 4), value, dtype=np.uint16)).save(path.with_name("y.png"))
        Image.fromarray(np.full((4, 4), value, dtype=np.uint16)).save(path.with_name("z.png"))
    data = load_dataset(
        _dataset("image_folder", f"dataset.root={tmp_path}", "dataset.test_fraction=0.34")
    )
    assert data.input_shape == (1, 4, 4)  # grayscale, though not mode L
    everything = torch.cat([data.train.images, data.val.images, data.test.images])
    labels = torch.cat([data.train.labels, data.val.labels, data.test.labels])
    assert set(everything[labels == 0].unique().tolist()) == {255}
    assert set(everything[labels == 1].unique().tolist()) == {128}


def test_photos_are_turned_upright_and_hidden_folders_are_not_classes(tmp_path):
    _folder(tmp_path, size=(4, 8), test=False)
    (tmp_path / "train" / ".ipynb_checkpoints").mkdir()
    exif = Image.Exif()
    exif[0x0112] = 6  # the camera was turned: show the 4-high, 8-wide image rotated
    for path in (tmp_path / "train").rglob("*.png"):
        Image.open(path).save(path, exif=exif)
    data = load_dataset(_dataset("image_folder", f"dataset.root={tmp_path}"))
    assert data.classes == CLASSES and data.input_shape == (1, 8, 4)


def test_a_cache_that_cannot_be_written_is_a_warning(tmp_path, caplog):
    _folder(tmp_path / "leaves")
    (tmp_path / "file").write_text("in the way")
    cfg = _dataset(
        "image_folder",
        f"dataset.root={tmp_path / 'leaves'}",
        f"dataset.cache_dir={tmp_path / 'file'}",
    )
    with caplog.at_level(logging.WARNING, logger="reslab"):
        data = load_dataset(cfg)
    assert len(data.test) == 6 and "cannot write the cache" in caplog.text


def test_svhn_files_that_are_there_are_used_without_the_network(tmp_path):
    x = np.zeros((10, 3, 32, 32), dtype=np.uint8)
    for split in ("train", "test"):
        write_svhn_file(tmp_path / "SVHN" / f"{split}_32x32.mat", x, list(range(10)))
    data = load_dataset(_dataset("svhn", f"dataset.root={tmp_path}", "dataset.download=true"))
    assert len(data.test) == 10  # no fetch, no checksum over the user's own files


def _save_npz(path, **arrays):
    x = _images(6, (4, 4))
    np.savez(
        path,
        **({"x_train": x, "y_train": [0, 1, 2] * 2, "x_test": x[:2], "y_test": [0, 1]} | arrays),
    )
    return path


@pytest.mark.parametrize(
    "make, says",
    [
        (
            lambda p: _save_npz(p / "d.npz", y_train=[0, 1, 2]),
            "x_train has 6 images but y_train 3 labels",
        ),
        (
            lambda p: _save_npz(p / "d.npz", y_train=np.array(list("abcabc"))),
            "whole-number class labels",
        ),
        (lambda p: _save_npz(p / "d.npz", x_train=_images(6, (4, 4, 3))), "channels last"),
        (
            lambda p: _save_npz(p / "d.npz", x_train=_images(6).astype(np.float32)),
            "store images as uint8",
        ),
        (
            lambda p: torch.save({"x_train": _images(2)}, p / "d.pt") or p / "d.pt",
            "holds something other than tensors",
        ),
        (lambda p: np.save(p / "d.npy", _images(2)) or p / "d.npy", "neither .npz nor .pt"),
        (
            lambda p: (p / "d.npz").write_bytes(b"PK\x03\x04 broken") and p / "d.npz",
            "not a readable .npz or .pt",
        ),
    ],
    ids=[
        "lengths",
        "string labels",
        "channels last",
        "float images",
        "numpy in .pt",
        "npy",
        "corrupt",
    ],
)
def test_a_malformed_tensor_file_is_one_clear_error(tmp_path, make, says):
    path = make(tmp_path)
    with pytest.raises(DataError, match=says):
        load_dataset(_dataset("tensors", f"dataset.path={path}"))


@pytest.mark.parametrize("case", ["broken link", "tiny class"])
def test_a_malformed_image_folder_is_one_clear_error(tmp_path, case):
    _folder(tmp_path, test=False)
    if case == "broken link":
        (tmp_path / "train" / "ash" / "gone.png").symlink_to(tmp_path / "nowhere.png")
        says = "gone.png is not a readable image"
    else:
        write_image_folder(tmp_path / "train", _images(2), [0, 0], ["dogwood", "dogwood"])
        says = r"too few training images: dogwood \(2\)"
    with pytest.raises(DataError, match=says):
        load_dataset(_dataset("image_folder", f"dataset.root={tmp_path}"))
