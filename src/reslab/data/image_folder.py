"""The user's own images in torchvision's ImageFolder layout, decoded once into uint8 tensors.

    <root>/train/<class>/<image>.png|jpg|...     (required)
    <root>/test/<class>/<image>...               (optional: else a stratified test split)

Every image is decoded with Pillow, converted to grayscale or RGB (decided from the data, or
``dataset.channels``) and resized to ``dataset.image_size`` squared, so the result is the same
kind of tensors as the built-in sets and the fast path, augmentation and CAM work unchanged.
The decoded tensors are cached (keyed by the files' names, sizes and times and the decoding
settings), so a second run starts at once.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError
from torchvision.datasets.folder import IMG_EXTENSIONS, has_file_allowed_extension
from torchvision.transforms.functional import pil_to_tensor
from tqdm.auto import tqdm

from reslab.data.image_data import ImageSet, Splits
from reslab.data.splits import split_train_val
from reslab.errors import ConfigError, DataError

log = logging.getLogger(__name__)

INTERPOLATIONS = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}
GRAY_BANDS = ("1", "L", "I", "F")  # a first band that makes an image grayscale
CACHE_VERSION = 1  # bump when the decoded form changes


def load_image_folder(cfg: Any, root: Path) -> Splits:
    """Train (and test) images of ``dataset.root``, decoded or read from the cache."""
    folder = _folder(cfg)
    train_files, classes = scan_split(folder / "train")
    test_dir = folder / "test"
    test_files = scan_split(test_dir, classes)[0] if test_dir.is_dir() else None
    check_class_sizes(train_files, classes, held_out=test_files is None)
    settings = _settings(cfg)
    cache = _cache_path(cfg, folder, train_files, test_files, settings)
    cached = _read_cache(cache)
    if cached is None:
        cached = _decode_all(folder, train_files, test_files, settings)
        _write_cache(cache, cached)
    train = ImageSet(cached["train_images"], cached["train_labels"])
    if test_files is not None:
        test = ImageSet(cached["test_images"], cached["test_labels"])
        how = "train/ and test/"
    else:  # no test/: a stratified share of train/ is held out, reproducibly
        train, test = split_train_val(train, settings["test_fraction"], settings["split_seed"])
        how = f"train/, {settings['test_fraction']:g} of it held out for testing"
    return Splits(train, test, classes, f"image folder {folder} ({how})")


def _folder(cfg: Any) -> Path:
    if not cfg.get("root"):
        raise ConfigError(
            "dataset=image_folder needs dataset.root=<folder> holding train/<class>/<images> "
            "(and optionally test/<class>/<images>)"
        )
    folder = Path(str(cfg.root)).expanduser()
    if not (folder / "train").is_dir():
        raise DataError(
            f"{folder} has no train/ folder; lay the images out as {folder}/train/<class>/"
            "<image> (and test/<class>/<image>), one folder per class"
        )
    return folder


def _settings(cfg: Any) -> dict[str, Any]:
    interpolation = str(cfg.get("interpolation", "bilinear"))
    if interpolation not in INTERPOLATIONS:
        raise ConfigError(
            f"dataset.interpolation={interpolation} is unknown; choose one of "
            f"{', '.join(INTERPOLATIONS)}"
        )
    channels = cfg.get("channels")
    if channels not in (None, 1, 3):
        raise ConfigError(f"dataset.channels={channels} must be 1 (grayscale), 3 (RGB) or null")
    size = cfg.get("image_size")
    return {
        "image_size": None if size is None else int(size),
        "channels": channels,
        "interpolation": interpolation,
        "test_fraction": float(cfg.get("test_fraction", 0.2)),
        "split_seed": int(cfg.get("split_seed", 0)),
    }


def scan_split(split_dir: Path, expected: Sequence[str] | None = None) -> tuple[list, list[str]]:
    """``(path, class index)`` of every image under ``split_dir/<class>/``, sorted, and the
    class names; ``expected``: the training split's classes, which this split must match."""
    # Hidden folders (.ipynb_checkpoints, .reslab_cache, ...) are not classes.
    classes = sorted(e.name for e in os.scandir(split_dir) if e.is_dir() and e.name[0] != ".")
    if not classes:
        raise DataError(
            f"{split_dir} has no class folders; put each class's images in {split_dir}/<class>/"
        )
    if expected is not None and classes != list(expected):
        missing, extra = sorted(set(expected) - set(classes)), sorted(set(classes) - set(expected))
        raise DataError(
            f"{split_dir} has other classes than train/ (missing: {', '.join(missing) or 'none'}; "
            f"not in train/: {', '.join(extra) or 'none'}); give both the same class folders"
        )
    files = []
    for index, name in enumerate(classes):
        found = sorted(
            Path(dirpath) / f
            for dirpath, _, names in os.walk(split_dir / name, followlinks=True)
            for f in names
            if has_file_allowed_extension(f, IMG_EXTENSIONS)
        )
        if not found:
            raise DataError(
                f"{split_dir / name} holds no images ({', '.join(IMG_EXTENSIONS[:4])}, ...); "
                "add images or remove the folder"
            )
        files += [(path, index) for path in found]
    return files, classes


def check_class_sizes(files: list, classes: list[str], held_out: bool) -> None:
    """Each class keeps an image for training after the validation split (and, when ``held_out``,
    the test split) take theirs."""
    counts = [0] * len(classes)
    for _, label in files:
        counts[label] += 1
    needed = 3 if held_out else 2
    small = [f"{classes[i]} ({n})" for i, n in enumerate(counts) if n < needed]
    if small:
        raise DataError(
            f"classes with too few training images: {', '.join(small)}; each needs at least "
            f"{needed} so that {'the test, ' if held_out else 'the '}validation and training "
            "splits all hold one; add images or remove the class"
        )


def _decode_all(folder: Path, train: list, test: list | None, settings: dict) -> dict:
    """Decode every image once: first the headers (modes and sizes, to choose the channels and
    check the sizes), then the pixels."""
    everything = train + (test or [])
    modes, sizes = _headers(everything)
    channels = settings["channels"] or (1 if all(_is_gray(m) for m in modes) else 3)
    size = settings["image_size"]
    if size is None and len(set(sizes)) > 1:
        (a, sa), (b, sb) = _two_sizes(everything, sizes)
        raise DataError(
            f"images differ in size ({a} is {sa[0]}x{sa[1]}, {b} is {sb[0]}x{sb[1]}); set "
            "dataset.image_size=<n> to resize them all to n x n"
        )
    out = {}
    for split, files in (("train", train), ("test", test)):
        if files is None:
            continue
        images = [
            _decode(path, channels, size, settings["interpolation"])
            # disable=None: a bar on a terminal, quiet in logs and batch jobs.
            for path, _ in tqdm(
                files, desc=f"decoding {folder.name}/{split}", unit="img", leave=False, disable=None
            )
        ]
        out[f"{split}_images"] = torch.stack(images)
        out[f"{split}_labels"] = torch.tensor([label for _, label in files], dtype=torch.long)
    return out


def _headers(files: list) -> tuple[list[str], list[tuple[int, int]]]:
    modes, sizes = [], []
    for path, _ in files:
        try:
            with Image.open(path) as img:  # reads the header only
                modes.append(img.mode)
                turned = img.getexif().get(ExifTags.Base.Orientation, 1) in (5, 6, 7, 8)
                sizes.append(img.size[::-1] if turned else img.size)
        except (UnidentifiedImageError, OSError) as exc:
            raise _unreadable(path, exc) from exc
    return modes, sizes


def _is_gray(mode: str) -> bool:
    return mode.split(";")[0] in GRAY_BANDS or mode == "LA"  # I;16B -> I


def _to_8bit(img: Image.Image) -> Image.Image:
    """16-bit and 32-bit integer images scaled to 0..255 (``convert`` would clip them at 255);
    float images clipped to 0..255."""
    if img.mode.startswith("I"):
        pixels = np.asarray(img, dtype=np.int64).clip(0, 65535) >> 8
    elif img.mode == "F":
        pixels = np.asarray(img, dtype=np.float64).clip(0, 255).round()
    else:
        return img
    return Image.fromarray(pixels.astype(np.uint8), mode="L")


def _two_sizes(files: list, sizes: list) -> tuple[tuple, tuple]:
    first = sizes[0]
    other = next(i for i, s in enumerate(sizes) if s != first)
    return (files[0][0], first), (files[other][0], sizes[other])


def _decode(path: Path, channels: int, size: int | None, interpolation: str) -> torch.Tensor:
    try:
        with Image.open(path) as img:
            img = _to_8bit(ImageOps.exif_transpose(img))  # phone photos: upright, 8 bits
            img = img.convert("L" if channels == 1 else "RGB")
            if size is not None and img.size != (size, size):
                img = img.resize((size, size), INTERPOLATIONS[interpolation])
            return pil_to_tensor(img)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise _unreadable(path, exc) from exc


def _unreadable(path: Path, exc: Exception) -> DataError:
    return DataError(
        f"{path} is not a readable image ({exc.__class__.__name__}); replace or remove it"
    )


def _cache_path(cfg: Any, folder: Path, train: list, test: list | None, settings: dict) -> Path:
    """Where the decoded tensors of exactly these files and decoding settings live:
    ``<key of the folder and settings>-<key of the files>.pt``."""
    listing = []
    for path, label in train + (test or []):
        try:
            stat = path.stat()
        except OSError as exc:  # a broken link, a file gone since the scan
            raise _unreadable(path, exc) from exc
        listing.append((str(path.relative_to(folder)), stat.st_size, stat.st_mtime_ns, label))
    decoding = {k: settings[k] for k in ("image_size", "channels", "interpolation")}
    where = json.dumps([CACHE_VERSION, str(folder.resolve()), decoding, test is not None])
    base = (
        Path(str(cfg.cache_dir)).expanduser() if cfg.get("cache_dir") else folder / ".reslab_cache"
    )
    return base / f"{_digest(where)}-{_digest(json.dumps(listing))}.pt"


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _read_cache(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        cached = torch.load(path, weights_only=True)
        log.info("image folder: decoded images read from the cache %s", path)
        return cached
    except Exception as exc:  # a damaged cache is decoded again, never fatal
        log.warning("image folder: ignoring the unreadable cache %s (%s)", path, exc)
        return None


def _write_cache(path: Path, decoded: dict) -> None:
    """Write atomically (a per-process temporary file: sweep jobs may decode at once) and drop
    the caches of earlier contents of the same folder and settings."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(decoded, tmp)
        tmp.replace(path)
        folder_key = path.name.split("-")[0]
        for old in path.parent.glob(f"{folder_key}-*.pt"):
            if old != path:
                old.unlink(missing_ok=True)
    except (OSError, RuntimeError) as exc:  # torch.save reports open failures as RuntimeError
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        log.warning(
            "image folder: cannot write the cache %s (%s); the next run decodes again "
            "(set dataset.cache_dir to a writable folder)",
            path,
            getattr(exc, "strerror", None) or str(exc).splitlines()[0],
        )
