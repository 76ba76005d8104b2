"""Checkpoints written in the background hold the state of the moment they were asked for,
and a failed write is reported, not lost; a run folder or a file names the one to load."""

import pytest
import torch

from reslab.errors import ReslabError
from reslab.training.checkpoint import (
    CheckpointWriter,
    duplicate_checkpoint,
    find_checkpoint,
    host_copy,
    load_checkpoint,
    save_checkpoint,
)


def test_a_background_checkpoint_holds_the_snapshot_not_later_updates(tmp_path):
    weights = torch.zeros(1000)
    state = host_copy({"model": {"w": weights}, "history": [{"epoch": 1}], "pair": (weights,)})
    weights += 1  # training goes on after the snapshot, while the checkpoint is written
    writer = CheckpointWriter()
    writer.submit(lambda: save_checkpoint(tmp_path / "last.pt", state))
    writer.wait()
    saved = load_checkpoint(tmp_path / "last.pt")
    assert torch.equal(saved["model"]["w"], torch.zeros(1000))
    assert saved["history"] == [{"epoch": 1}] and torch.equal(saved["pair"][0], torch.zeros(1000))


def test_a_failed_background_write_is_raised_by_the_next_wait(tmp_path):
    writer = CheckpointWriter()
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    writer.submit(lambda: save_checkpoint(blocker / "last.pt", {"w": torch.ones(2)}))
    with pytest.raises(OSError):
        writer.wait()
    writer.wait()  # reported once


def test_a_duplicated_checkpoint_keeps_its_content_when_the_source_is_rewritten(tmp_path):
    save_checkpoint(tmp_path / "last.pt", {"model": {}, "epoch": 2})
    duplicate_checkpoint(tmp_path / "last.pt", tmp_path / "best.pt")
    save_checkpoint(tmp_path / "last.pt", {"model": {}, "epoch": 3})
    assert load_checkpoint(tmp_path / "best.pt")["epoch"] == 2
    assert load_checkpoint(tmp_path / "last.pt")["epoch"] == 3


def test_a_checkpoint_is_found_from_its_run_folder_or_its_own_path(tmp_path):
    run = tmp_path / "run"
    save_checkpoint(run / "checkpoints" / "last.pt", {"model": {}})
    (run / "results.json").write_text("{}")
    assert find_checkpoint(run) == run / "checkpoints" / "last.pt"
    assert find_checkpoint(run / "checkpoints" / "last.pt") == run / "checkpoints" / "last.pt"
    with pytest.raises(
        ReslabError, match=r"no checkpoint at .*checkpoints/best.pt \(did the run finish"
    ):
        find_checkpoint(run, "best")
    with pytest.raises(ReslabError, match="is not a reslab run folder"):
        find_checkpoint(tmp_path, "last")
    with pytest.raises(ReslabError, match="no checkpoint at .*does not exist"):
        find_checkpoint(tmp_path / "nowhere.pt")
