"""TensorBoard and W&B: what a run writes can be read back by the tools' own readers and
matches metrics.csv and results.json; a multirun is one W&B group and one HParams table; a
resumed run continues its dashboards; a broken logger costs nothing but itself; the console
shows a live bar on a terminal and summary lines everywhere, train.log included."""

from __future__ import annotations

import json
import logging
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from tensorboard import context
from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins import base_plugin
from tensorboard.plugins.hparams import api_pb2, backend_context, list_session_groups, metadata

from reslab.cli import preflight
from reslab.config.validate import check_model_builds
from reslab.data.registry import declared_shape
from reslab.errors import ConfigError
from reslab.run import train
from reslab.tracking import MetricsCSV
from reslab.tracking.factory import build_loggers, run_name, sweep_group
from reslab.tracking.results import read_json
from reslab.tracking.tensorboard_logger import TensorBoardLogger
from reslab.tracking.wandb_logger import RUN_ID_FILE, WandbLogger
from reslab.training.callbacks import Callback

from .conftest import CONFIG_DIR, ROOT, compose_config

FAST = ("trainer=debug", "depth=2", "width=32", "dataset.download=false")


def _metrics_columns(rows: list[dict]) -> list[str]:
    return [k for k in rows[0] if k != "epoch"]


def _events(log_dir: Path) -> EventAccumulator:
    acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    acc.Reload()
    return acc


def _wandb_files(run_dir: Path) -> list[Path]:
    """The run's offline W&B files, oldest first (a resumed run has one per start)."""
    return sorted((run_dir / "wandb").glob("offline-run-*/run-*.wandb"))


def _wandb_file(run_dir: Path) -> Path:
    files = _wandb_files(run_dir)
    assert len(files) == 1, files
    return files[0]


def _wandb_run(path: Path) -> dict:
    return next(r["run"] for r in _wandb_records(path) if r["type"] == "run")


def _hparams_table(log_dir: Path, hparam: str, metric: str) -> dict[str, tuple]:
    """What TensorBoard's HParams view lists for ``--logdir log_dir``, computed by its own
    backend: {session (run folder): (hparam value, metric value, session status)}."""
    multiplexer = plugin_event_multiplexer.EventMultiplexer()
    multiplexer.AddRunsFromDirectory(str(log_dir))
    multiplexer.Reload()
    provider = data_provider.MultiplexerDataProvider(multiplexer, str(log_dir))
    backend = backend_context.Context(
        base_plugin.TBContext(logdir=str(log_dir), multiplexer=multiplexer, data_provider=provider)
    )
    request = api_pb2.ListSessionGroupsRequest(
        start_index=0,
        slice_size=100,
        allowed_statuses=list(api_pb2.Status.values()),
        col_params=[
            api_pb2.ColParams(hparam=hparam),
            api_pb2.ColParams(metric=api_pb2.MetricName(tag=metric)),
        ],
    )
    groups = list_session_groups.Handler(context.RequestContext(), backend, "", request).run()
    table = {}
    for group in groups.session_groups:
        value = group.hparams[hparam]
        metric_value = next(m.value for m in group.metric_values if m.name.tag == metric)
        table[group.name] = (
            value.number_value if value.HasField("number_value") else value.string_value,
            metric_value,
            group.sessions[0].status,
        )
    return table


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


def test_multirun_jobs_are_distinct_wandb_runs_in_one_group_and_one_hparams_table(cli, tmp_path):
    sweep = tmp_path / "multirun" / "2030-01-02" / "03-04-05"
    proc = cli(
        "-m",
        "trainer=debug",
        "trainer.max_epochs=1",
        "depth=2,3",
        "width=16",
        "logger=default",
        "logger.tensorboard.figures=false",
        "logger.wandb.figures=false",
        "dataset.download=false",
        f"hydra.sweep.dir={sweep}",
        env={"WANDB_MODE": "offline"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir())
    runs = []
    for job in jobs:
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
    # `tensorboard --logdir <sweep>`: one HParams row per job, each the job's own folder.
    table = _hparams_table(sweep, "depth", "test/acc")
    assert table == {
        f"{job.name}/tensorboard": (
            depth,
            pytest.approx(read_json(job / "results.json")["test/acc"], rel=1e-6),
            api_pb2.STATUS_SUCCESS,
        )
        for job, depth in zip(jobs, (2.0, 3.0))
    }


def test_unwritable_tensorboard_folder_warns_once_and_run_completes(tmp_path, caplog):
    (tmp_path / "tensorboard").write_text("a file where the event folder should go")
    cfg = compose_config(*FAST, "logger=tensorboard", run_dir=tmp_path)
    with caplog.at_level(logging.WARNING):
        results = train(cfg, tmp_path, extra_loggers=build_loggers(cfg, tmp_path))
    failed = [r for r in caplog.records if "logger tensorboard failed" in r.getMessage()]
    assert len(failed) == 1
    assert results["status"] == "completed"
    assert read_json(tmp_path / "results.json")["status"] == "completed"
    assert len(MetricsCSV.read(tmp_path / "metrics.csv")) == 2


class _Explode(Callback):
    def on_epoch_end(self, trainer, epoch, metrics):
        raise RuntimeError("boom")


def test_every_wandb_run_is_finished_also_when_training_fails(tmp_path):
    import wandb

    failed_dir, next_dir = tmp_path / "failed", tmp_path / "next"
    cfg = compose_config(*FAST, "logger=wandb", "logger.wandb.mode=offline", run_dir=failed_dir)
    with pytest.raises(RuntimeError, match="boom"):
        train(cfg, failed_dir, build_loggers(cfg, failed_dir), extra_callbacks=[_Explode()])
    assert wandb.run is None
    failed = _wandb_summary(_wandb_file(failed_dir))
    assert (failed["state"], failed["exit_code"]) == ("failed", 1)
    assert failed["summary"]["status"] == "failed"

    # The next job in the same process is a run of its own, not a continuation of the first.
    cfg = compose_config(*FAST, "logger=wandb", "logger.wandb.mode=offline", run_dir=next_dir)
    train(cfg, next_dir, extra_loggers=build_loggers(cfg, next_dir))
    path = _wandb_file(next_dir)
    assert _wandb_run(path)["run_id"] != failed["run_id"]
    history = [r["history"]["item"] for r in _wandb_records(path) if r["type"] == "history"]
    assert [h["epoch"] for h in history if "train/loss" in h] == [1, 2]
    assert _wandb_summary(path)["exit_code"] == 0


class _KeepCheckpoint(Callback):
    """Copies last.pt as it stands when epoch ``epoch`` ends, i.e. epoch ``epoch - 1``'s."""

    def __init__(self, epoch: int, dest: Path) -> None:
        self.epoch, self.dest = epoch, dest

    def on_epoch_end(self, trainer, epoch, metrics):
        if epoch == self.epoch:
            shutil.copy(trainer.checkpoint_dir / "last.pt", self.dest)


def test_resumed_run_continues_its_tensorboard_and_wandb_run(tmp_path):
    """A run that logged epoch 2 but resumes from epoch 1's checkpoint (as after a crash
    between logging and saving): each epoch appears once, in the same W&B run."""
    tracked = (*FAST, "logger=default", "logger.wandb.mode=offline")
    checkpoint = tmp_path / "checkpoints" / "epoch1.pt"
    cfg = compose_config(*tracked, run_dir=tmp_path)
    keep = _KeepCheckpoint(2, checkpoint)
    train(cfg, tmp_path, build_loggers(cfg, tmp_path), extra_callbacks=[keep])
    first_id = (tmp_path / "wandb" / RUN_ID_FILE).read_text().strip()

    cfg = compose_config(*tracked, "trainer.max_epochs=3", f"resume={checkpoint}", run_dir=tmp_path)
    results = train(cfg, tmp_path, extra_loggers=build_loggers(cfg, tmp_path))
    assert results["resumed_from_epoch"] == 1 and results["epochs"] == 3

    rows = MetricsCSV.read(tmp_path / "metrics.csv")
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    events = _events(tmp_path / "tensorboard")
    for column in _metrics_columns(rows):
        logged = [(e.step, e.value) for e in events.Scalars(column)]
        assert logged == [(r["epoch"], pytest.approx(float(r[column]), rel=1e-6)) for r in rows]
    assert [e.step for e in events.Scalars("test/acc")] == [3]  # the first run's is purged

    files = _wandb_files(tmp_path)
    assert len(files) == 2
    runs = [_wandb_run(path) for path in files]
    assert [r["run_id"] for r in runs] == [first_id, first_id]
    assert runs[1].get("resume")  # tells `wandb sync` to continue the run, not replace it
    history = [r["history"]["item"] for r in _wandb_records(files[1]) if r["type"] == "history"]
    assert [h["epoch"] for h in history if "train/loss" in h] == [2, 3]
    summary = _wandb_summary(files[1])["summary"]
    assert summary["epochs"] == 3 and summary["test/acc"] == pytest.approx(results["test/acc"])


def test_wandb_sweep_file_drives_train_py_with_hydra_overrides(tracked_run):
    """configs/wandb/sweep_depth.yaml: each agent command is valid train.py overrides."""
    from wandb.sdk.launch.sweeps.utils import create_sweep_command_args

    sweep = yaml.safe_load((CONFIG_DIR / "wandb" / "sweep_depth.yaml").read_text())
    assert (ROOT / sweep["program"]).is_file()
    assert sweep["metric"]["name"] in read_json(tracked_run / "results.json")
    params = sweep["parameters"]
    fixed = {k: v for k, v in params.items() if "value" in v}
    depths = params["depth"]["values"]
    assert len(depths) == 8
    for depth in depths:
        # What `wandb agent` puts in place of the ${...} macros of `command`.
        args = create_sweep_command_args({"args": {**fixed, "depth": {"value": depth}}})
        overrides = []
        for part in sweep["command"]:
            if part == "${args_no_hyphens}":
                overrides += args["args_no_hyphens"]
            elif not part.startswith("${"):
                overrides.append(part)
        preflight(overrides, CONFIG_DIR)  # exits with a message on an unknown key or option
        cfg = compose_config(*overrides)
        assert cfg.depth == depth and cfg.logger.wandb.mode == "online"
        shape, classes = declared_shape(cfg.dataset)
        check_model_builds(cfg.model, shape, classes)


def test_console_is_quiet_off_a_terminal_and_train_log_has_every_epoch(cli, tmp_path):
    run_dir = tmp_path / "run"
    proc = cli(*FAST, "logger=none", f"hydra.run.dir={run_dir}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "\r" not in proc.stderr and "it/s" not in proc.stderr, "no progress bar in a pipe"
    train_log = (run_dir / "train.log").read_text()
    rows = MetricsCSV.read(run_dir / "metrics.csv")
    for row in rows:
        expected = (
            f"epoch {row['epoch']}/2  train/loss {row['train/loss']:.4f}  "
            f"train/acc {row['train/acc']:.4f}  val/loss {row['val/loss']:.4f}  "
            f"val/acc {row['val/acc']:.4f}  lr {row['lr']:.3g}  {row['epoch_time_s']:.1f}s"
        )
        assert expected in proc.stderr.splitlines()
        assert any(line.endswith(expected) for line in train_log.splitlines())
    assert "test on best epoch" in train_log


def test_progress_bar_shows_live_loss_and_accuracy(tmp_path, capsys):
    cfg = compose_config(*FAST, "logger=none", "trainer.progress=true", run_dir=tmp_path)
    train(cfg, tmp_path)
    err = capsys.readouterr().err
    frames = err.split("\r")  # the bar redraws itself in place
    for epoch in (1, 2):
        live = [f for f in frames if f.startswith(f"epoch {epoch}/2:")]
        assert any(re.search(r"acc=\d\.\d{3}, loss=\d\.\d{4}", f) for f in live), live
    assert frames[-1].strip() == "", "the bar clears itself; the epoch summary line stays"


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
    code = f"""
import sys, tempfile
from pathlib import Path
from tests.conftest import compose_config
from reslab.run import train
from reslab.tracking.factory import build_loggers

def heavy():
    return sorted(m for m in ("wandb", "tensorboard", "torch.utils.tensorboard") if m in sys.modules)

tmp = Path(tempfile.mkdtemp())
for choice in ("none", "tensorboard"):
    cfg = compose_config(*{FAST!r}, "logger=" + choice, run_dir=tmp / choice)
    train(cfg, tmp / choice, extra_loggers=build_loggers(cfg, tmp / choice))
    print(heavy())
"""
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.strip().splitlines()[-2:] == [
        "[]",
        "['tensorboard', 'torch.utils.tensorboard']",
    ]


def test_run_names_and_sweep_groups():
    assert run_name("resnet", ["model=resnet", "depth=20"], "x") == "resnet-depth=20"
    assert run_name("mlp", ["logger=none", "trainer.device=cpu"], "mlp-d3") == "mlp-d3"
    # A resumed run keeps its name: where it resumes from is not what it is.
    assert run_name("resnet", ["depth=20", "resume=outputs/runs/x"], "x") == "resnet-depth=20"
    assert sweep_group("outputs/multirun/2024-05-01/12-00-00") == "2024-05-01_12-00-00"
    assert sweep_group("/data/studies/depth_sweep") == "depth_sweep"
