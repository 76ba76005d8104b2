"""Checkpoints written atomically and read back with ``weights_only=True``."""

from __future__ import annotations

import os
import pickle
import shutil
import tempfile
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch

from reslab.errors import ReslabError


def atomic_write(path: Path, write: Any) -> None:
    """Call ``write(tmp_path)`` and rename over ``path``: a failed write leaves the old file intact."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_checkpoint(path: Path, state: dict) -> None:
    atomic_write(path, lambda tmp: torch.save(state, tmp))


class CheckpointWriter:
    """Writes checkpoints on one background thread, so that training goes on while one is
    serialised (as Lightning's AsyncCheckpointIO does). At most one write is in flight;
    ``wait`` blocks until it is on disk and raises its error, if any."""

    def __init__(self) -> None:
        self._pool: ThreadPoolExecutor | None = None
        self._pending: Future | None = None

    def submit(self, write: Callable[[], None]) -> None:
        self.wait()
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="reslab-checkpoint")
        self._pending = self._pool.submit(write)

    def wait(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()


def host_copy(state: Any) -> Any:
    """``state`` with every tensor copied to host memory: a snapshot that training may go on
    changing the original of while the copy is written."""
    if isinstance(state, torch.Tensor):
        return state.detach().to("cpu", copy=True)
    if isinstance(state, dict):
        return {key: host_copy(value) for key, value in state.items()}
    if isinstance(state, list):
        return [host_copy(value) for value in state]
    if isinstance(state, tuple):
        return tuple(host_copy(value) for value in state)
    return state


def duplicate_checkpoint(source: Path, path: Path) -> None:
    """``path`` becomes a copy of ``source`` without serialising again: a hard link where the
    file system allows (later atomic writes of ``source`` replace its name, not this file)."""

    def link(tmp: Path) -> None:
        tmp.unlink()
        try:
            os.link(source, tmp)
        except OSError:
            shutil.copyfile(source, tmp)

    atomic_write(path, link)


def find_checkpoint(where: str | os.PathLike, which: str = "last") -> Path:
    """The checkpoint ``where`` names: a run folder's ``checkpoints/<which>.pt``, or a file.
    A one-line error says which part is missing."""
    path = Path(where).expanduser()
    if not path.is_dir():
        if path.is_file():
            return path
        raise ReslabError(
            f"no checkpoint at {path} (the path does not exist); give a run folder or a .pt file"
        )
    found = path / "checkpoints" / f"{which}.pt"
    if found.is_file():
        return found
    if not (path / ".hydra").is_dir() and not (path / "results.json").is_file():
        raise ReslabError(
            f"no checkpoint at {path}: it is not a reslab run folder; point at "
            "outputs/runs/<date>/<run> or a .pt file"
        )
    raise ReslabError(
        f"no checkpoint at {found} (did the run finish an epoch?); train it again or name "
        "another checkpoint"
    )


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    path = Path(path)
    if not path.is_file():
        raise ReslabError(
            f"checkpoint {path} does not exist; point at a run's checkpoints/best.pt or last.pt"
        )
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        raise ReslabError(
            f"{path} is not a readable reslab checkpoint ({first[:120]}); it is corrupt or from another tool"
        ) from exc
    if not isinstance(state, dict) or "model" not in state:
        raise ReslabError(f"{path} is not a reslab checkpoint (no model weights in it)")
    return state
