"""Fetch datasets ahead of time into the folder reslab reads them from.

    python scripts/download_data.py                          # all of them into data/ (or $RESLAB_DATA)
    python scripts/download_data.py cifar10 cifar100 svhn --root /scratch/data

Goes through the same loaders as training: files already present are checked and kept,
Debian's Fashion-MNIST is used when installed, absent files are downloaded. MNIST never
falls back to the offline subset here: the point is to get the full set.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from omegaconf import OmegaConf

from reslab.data.datasets import data_root
from reslab.data.registry import DATASETS
from reslab.errors import ReslabError

DOWNLOADABLE = [name for name, spec in DATASETS.items() if spec.downloadable]


def fetch(name: str, root: Path) -> str:
    """Make ``name`` readable offline under ``root``; returns where its images came from."""
    cfg = OmegaConf.create({"name": name, "download": True, "offline_fallback": False})
    return DATASETS[name].load(cfg, root).source


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "datasets", nargs="*", help=f"any of {', '.join(DOWNLOADABLE)} (default: all)"
    )
    parser.add_argument("--root", default=None, help="default: $RESLAB_DATA or data/")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    unknown = sorted(set(args.datasets) - set(DOWNLOADABLE))
    if unknown:
        parser.error(f"unknown dataset {', '.join(unknown)}; choose from {', '.join(DOWNLOADABLE)}")
    root = data_root(args.root)
    failed = 0
    for name in args.datasets or DOWNLOADABLE:
        try:
            print(f"{name}: {fetch(name, root)}")
        except ReslabError as exc:
            print(f"error: {name}: {exc}", file=sys.stderr)
            failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
