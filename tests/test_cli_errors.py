"""Every bad-input case documented in docs/errors.md, run through the real command line."""

import re
import shlex

import pytest
import torch

from .conftest import ROOT
from .data_files import write_cifar10


def documented_cases() -> list[tuple[str, str, int]]:
    text = (ROOT / "docs" / "errors.md").read_text()
    table = text.split("<!-- error-table:start -->")[1].split("<!-- error-table:end -->")[0]
    cases = []
    for line in table.strip().splitlines()[2:]:
        typed, message, code = [cell.strip() for cell in line.strip().strip("|").split("|")]
        args = re.findall(r"`([^`]*)`", typed)[0]
        expected = re.findall(r"`([^`]*)`", message)[0].split(" ...")[0]
        cases.append((args, expected, int(code)))
    return cases


CASES = documented_cases()


def test_table_covers_the_issue_cases():
    typed = " ".join(args for args, _, _ in CASES)
    for needle in (
        "depth=21",
        "lr=-0.1",
        "val_fraction",
        "batch_size=0",
        "max_epoch=",
        "lr=abc",
        "cuda",
        "width=0",
        "milestones=[a,b]",
        "/proc/",
        "resume={cosine_run}",
        "train_size",
    ):
        assert needle in typed


@pytest.mark.parametrize("args,expected,code", CASES, ids=[c[0] for c in CASES])
def test_documented_error(args, expected, code, cli, tmp_path):
    if "trainer.device=cuda" in args and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    empty = tmp_path / "empty"
    empty.mkdir()
    corrupt = tmp_path / "corrupt"
    write_cifar10(corrupt, per_batch=4)
    (corrupt / "cifar-10-batches-py" / "data_batch_2").write_bytes(b"\x80\x02truncated")
    fill = {"empty": str(empty), "corrupt_cifar10": str(corrupt)}
    if "{cosine_run}" in args:  # a finished run to resume
        fill["cosine_run"] = str(tmp_path / "cosine")
        made = cli(
            "trainer=debug",
            "scheduler=cosine",
            "logger=none",
            "dataset.download=false",
            f"dataset.root={tmp_path / 'data'}",
            f"hydra.run.dir={fill['cosine_run']}",
        )
        assert made.returncode == 0, made.stderr
    argv = [part.format(**fill) for part in shlex.split(args)]
    expected = expected.format(**fill)
    extra = ["trainer=debug", "dataset.download=false", f"dataset.root={tmp_path / 'data'}"]
    if not any(a.startswith("hydra.run.dir=") for a in argv):
        extra.append(f"hydra.run.dir={tmp_path / 'run'}")
    extra = [e for e in extra if e.split("=")[0] not in {a.split("=")[0] for a in argv}]
    proc = (cli)(*extra, *argv)
    assert proc.returncode == code, proc.stderr
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr
    assert errors[0].startswith(expected), (errors[0], expected)


def test_help_lists_groups_and_options(cli):
    proc = cli("--help")
    assert proc.returncode == 0
    assert "model: cnn, mlp, plain_resnet, residual_mlp, resnet" in proc.stdout
    assert "course: 1_plain_sgd, 2_standardize, 3_augment" in proc.stdout
    assert "scheduler: cosine, multistep, none, onecycle, plateau, step" in proc.stdout


def test_full_error_gives_the_traceback(cli, tmp_path):
    proc = cli("optimizer.lr=-1", f"hydra.run.dir={tmp_path}", env={"HYDRA_FULL_ERROR": "1"})
    assert proc.returncode != 0 and "Traceback" in proc.stderr


@pytest.mark.parametrize("value", ["0", "", "false"])
def test_full_error_is_on_only_for_1_as_in_hydra(cli, tmp_path, value):
    proc = cli("optimizer.lr=-1", f"hydra.run.dir={tmp_path}", env={"HYDRA_FULL_ERROR": value})
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert [line for line in proc.stderr.splitlines() if line.startswith("error:")] == [
        "error: optimizer.lr=-1 must be a number > 0 (e.g. optimizer.lr=0.001)"
    ]
