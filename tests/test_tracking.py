"""TensorBoard and W&B: what a run writes can be read back by the tools' own readers and
matches metrics.csv and results.json; a multirun is one W&B group; a broken logger costs
nothing but itself."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import api_pb2, metadata

from reslab.errors import ConfigError
from reslab.run import train
from reslab.tracking import MetricsCSV
from reslab.tracking.factory import build_loggers, run_name, sweep_group
from reslab.tracking.results import read_json
from reslab.tracking.tensorboard_logger import TensorBoardLogger
from reslab.tracking.wandb_logger import WandbLogger

from .conftest import compose_config

FAST = ("trainer=debug", "depth=2", "width=32", "dataset.download=false")


def _metrics_columns(rows: list[dict]) -> list[str]:
    return [k for k in rows[0] if k != "epoch"]


def _events(log_dir: Path) -> EventAccumulator:
    acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    acc.Reload()
    return acc


def _wandb_file(run_dir: Path) -> Path:
    files = list((run_dir / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(files) == 1, files
    return files[0]


def _wandb_records(path: Path) -> list[dict]:
    """Every record of an offline run, as wandb's own reader prints them."""
    out = subprocess.run(
        [sys.executable, "-m", "wandb", "leet", "inspect", "--json", str(path)],
        capture_output=True,
        text=True,
        check=True,
        stdin=subprocess.DEVNULL,
    ).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def _wandb_summary(path: Path) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "wandb", "leet", "inspect", "--summary", "--json", str(path)],
        capture_output=True,
        text=True,
        check=True,
        stdin=subprocess.DEVNULL,
    ).stdout
    return json.loads(out)


@pytest.fixture(scope="module")
def tracked_run(tmp_path_factory) -> Path:
    """One short run with TensorBoard and W&B (offline) on, shared by the checks below."""
    run_dir = tmp_path_factory.mktemp("tracked")
    cfg = compose_config(
        *FAST, "logger=default", "logger.wandb.mode=offline", "tags=[study]", run_dir=run_dir
    )
    train(cfg, run_dir, extra_loggers=build_loggers(cfg, run_dir))
    return run_dir


def test_tensorboard_scalars_equal_metrics_csv(tracked_run):
    rows = MetricsCSV.read(tracked_run / "metrics.csv")
    events = _events(tracked_run / "tensorboard")
    scalars = events.Tags()["scalars"]
    for column in _metrics_columns(rows):
        assert column in scalars, f"{column} missing from TensorBoard"
        logged = {e.step: e.value for e in events.Scalars(column)}
        assert logged == {
            r["epoch"]: pytest.approx(float(r[column]), rel=1e-6, abs=1e-9) for r in rows
        }
    assert {"train/loss", "train/acc", "val/loss", "val/acc", "lr", "epoch_time_s"} <= set(scalars)


def test_tensorboard_hparams_and_figures_live_in_the_run_folder(tracked_run):
    results = read_json(tracked_run / "results.json")
    log_dir = tracked_run / "tensorboard"
    assert [p for p in log_dir.iterdir() if p.is_dir()] == [], "no stray sub-run"
    events = _events(log_dir)
    content = events.PluginTagToContent("hparams")
    start = metadata.parse_session_start_info_plugin_data(content[metadata.SESSION_START_INFO_TAG])
    assert start.hparams["model"].string_value == "mlp"
    assert start.hparams["depth"].number_value == 2
    assert start.hparams["width"].number_value == 32
    assert start.hparams["params"].number_value == results["params"]
    end = metadata.parse_session_end_info_plugin_data(content[metadata.SESSION_END_INFO_TAG])
    assert end.status == api_pb2.STATUS_SUCCESS
    # The HParams table's metrics: the final test metrics and the best epoch's val metrics.
    final = {tag: events.Scalars(tag)[-1].value for tag in ("test/acc", "best/val/loss")}
    assert final == {
        "test/acc": pytest.approx(results["test/acc"], rel=1e-6),
        "best/val/loss": pytest.approx(results["val/loss"], rel=1e-6),
    }
    assert {"test/confusion_matrix", "test/sample_predictions"} <= set(events.Tags()["images"])
    assert (tracked_run / "figures" / "sample_predictions.png").stat().st_size > 0


def test_wandb_offline_history_summary_and_run_facts(tracked_run):
    rows = MetricsCSV.read(tracked_run / "metrics.csv")
    results = read_json(tracked_run / "results.json")
    path = _wandb_file(tracked_run)
    records = _wandb_records(path)
    run = next(r["run"] for r in records if r["type"] == "run")
    assert run["display_name"] == "mlp-d2"
    assert run["tags"] == ["mlp", "depth=2", "mnist", "study"]
    config = run["config"]["update"]
    assert config["depth"] == 2 and config["model"]["width"] == 32  # resolved, not ${width}
    assert config["run"]["params"] == results["params"]

    history = [r["history"]["item"] for r in records if r["type"] == "history"]
    epochs = [h for h in history if "train/loss" in h]
    assert [h["epoch"] for h in epochs] == [r["epoch"] for r in rows]
    for logged, row in zip(epochs, rows):
        for column in _metrics_columns(rows):
            assert logged[column] == pytest.approx(float(row[column]), rel=1e-8, abs=1e-12)
    images = {k.removesuffix("._type") for h in history for k, v in h.items() if v == "image-file"}
    assert images == {"test/confusion_matrix", "test/sample_predictions"}

    summary = _wandb_summary(path)
    assert summary["state"] == "finished" and summary["exit_code"] == 0
    for key in ("test/acc", "test/loss", "val/loss", "val/acc", "best_epoch", "params"):
        assert summary["summary"][key] == pytest.approx(results[key]), key
    assert summary["summary"]["status"] == results["status"]


def test_multirun_jobs_are_distinct_wandb_runs_in_one_group(cli, tmp_path):
    sweep = tmp_path / "multirun" / "2030-01-02" / "03-04-05"
    proc = cli(
        "-m",
        "trainer=debug",
        "trainer.max_epochs=1",
        "depth=2,3",
        "width=16",
        "logger=wandb",
        "dataset.download=false",
        f"hydra.sweep.dir={sweep}",
        env={"WANDB_MODE": "offline"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = []
    for job in sorted(p for p in sweep.iterdir() if p.is_dir()):
        records = _wandb_records(_wandb_file(job))
        runs.append(next(r["run"] for r in records if r["type"] == "run"))
        assert any(r["type"] == "exit" for r in records), f"{job.name}: run not finished"
    assert len(runs) == 2
    assert runs[0]["run_id"] != runs[1]["run_id"]
    assert {r["run_group"] for r in runs} == {"2030-01-02_03-04-05"}
    assert [r["display_name"] for r in runs] == [
        "mlp-trainer=debug,trainer.max_epochs=1,depth=2,width=16",
        "mlp-trainer=debug,trainer.max_epochs=1,depth=3,width=16",
    ]


def test_unwritable_tensorboard_folder_warns_once_and_run_completes(cli, tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "tensorboard").write_text("a file where the event folder should go")
    proc = cli(*FAST, "logger=tensorboard", f"hydra.run.dir={run_dir}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    warnings = [line for line in proc.stderr.splitlines() if "logger tensorboard failed" in line]
    assert len(warnings) == 1, proc.stderr
    assert read_json(run_dir / "results.json")["status"] == "completed"
    assert len(MetricsCSV.read(run_dir / "metrics.csv")) == 2


def test_wandb_that_cannot_start_is_dropped(tmp_path, monkeypatch, caplog):
    import wandb

    def refuse(*args, **kwargs):
        raise wandb.errors.CommError("no network")

    monkeypatch.setattr(wandb, "init", refuse)
    cfg = compose_config(*FAST, "logger=default", "logger.wandb.mode=online", run_dir=tmp_path)
    loggers = build_loggers(cfg, tmp_path)
    with caplog.at_level(logging.WARNING):
        results = train(cfg, tmp_path, extra_loggers=loggers)
    failed = [r for r in caplog.records if "logger wandb failed" in r.getMessage()]
    assert len(failed) == 1
    assert results["status"] == "completed"
    assert read_json(tmp_path / "results.json")["test/acc"] == results["test/acc"]
    assert "train/loss" in _events(tmp_path / "tensorboard").Tags()["scalars"]  # TB unaffected


@pytest.mark.parametrize(
    "choice,kinds",
    [
        ("default", [TensorBoardLogger, WandbLogger]),
        ("tensorboard", [TensorBoardLogger]),
        ("wandb", [WandbLogger]),
        ("none", []),
    ],
)
def test_logger_choices(choice, kinds, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    cfg = compose_config(f"logger={choice}")
    assert [type(x) for x in build_loggers(cfg, tmp_path)] == kinds


def test_wandb_mode_offline_unless_opted_in(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    assert compose_config("logger=wandb").logger.wandb.mode == "offline"
    monkeypatch.setenv("WANDB_MODE", "online")
    assert compose_config("logger=wandb").logger.wandb.mode == "online"
    cfg = compose_config("logger=wandb", "logger.wandb.mode=disabled")
    assert build_loggers(cfg, tmp_path) == []  # disabled: W&B is not even imported
    with pytest.raises(ConfigError, match="use online, offline or disabled"):
        build_loggers(compose_config("logger=wandb", "logger.wandb.mode=onlin"), tmp_path)


def test_heavy_imports_only_when_a_logger_is_on():
    code = (
        "import sys; from tests.conftest import compose_config;"
        "from reslab.tracking.factory import build_loggers;"
        "from reslab.run import train;"
        "build_loggers(compose_config('logger=none'), '.');"
        "print(sorted(m for m in ('wandb', 'torch.utils.tensorboard') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=Path(__file__).resolve().parents[1],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.strip().splitlines()[-1] == "[]"


def test_run_names_and_sweep_groups():
    assert run_name("resnet", ["model=resnet", "depth=20"], "x") == "resnet-depth=20"
    assert run_name("mlp", ["logger=none", "trainer.device=cpu"], "mlp-d3") == "mlp-d3"
    assert sweep_group("outputs/multirun/2024-05-01/12-00-00") == "2024-05-01_12-00-00"
    assert sweep_group("/data/studies/depth_sweep") == "depth_sweep"
