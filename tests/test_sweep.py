"""Sweeps end to end: job folders, the report over them, failed jobs, Hydra's launcher
plugins (joblib, submitit) and the lab's experiments as sweep configs."""

from __future__ import annotations

import csv
import json
import os
import signal
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from reslab.config.validate import check_model_builds, validate_config
from reslab.data.registry import declared_shape
from reslab.errors import ConfigError
from reslab.report.compare import main as compare
from reslab.run import run_length_epochs, train
from reslab.sweep import job_dirs
from reslab.tracking.results import read_json

from .conftest import CONFIG_DIR, compose_config, signal_after_first_epoch

TINY = ("trainer=debug", "trainer.max_epochs=1", "width=16", "dataset.download=false")


def test_multirun_runs_every_job_reports_them_and_fails_on_a_failed_job(cli, tmp_path, capsys):
    sweep = tmp_path / "sweep"
    # The residual MLP cannot be built at an odd depth: job 2 fails, job 3 must still run.
    proc = cli(
        "-m",
        "model=mlp,residual_mlp",
        "depth=3,2",
        *TINY,
        "logger=none",
        f"hydra.sweep.dir={sweep}",
    )
    assert proc.returncode == 1, proc.stderr[-3000:]
    jobs = job_dirs(sweep)
    assert [j.name.split("_", 1)[0] for j in jobs] == ["0", "1", "2", "3"]
    assert all("depth=" in j.name and "model=" in j.name for j in jobs)
    results = {j.name: read_json(j / "results.json") for j in jobs}
    failed = jobs[2]
    assert "model=residual_mlp" in failed.name and "depth=3" in failed.name
    assert results[failed.name]["status"] == "failed"
    assert "even depth" in results[failed.name]["error"]
    assert [results[j.name]["status"] for j in jobs] == ["completed"] * 2 + ["failed", "completed"]
    assert "3 of 4 jobs succeeded, 1 failed" in proc.stderr
    assert f"FAILED  {failed.name}: ConfigError" in proc.stderr
    summary = json.loads((sweep / "summary.json").read_text())
    assert (summary["succeeded"], summary["failed"]) == (3, 1)

    assert compare([str(sweep)]) == 0
    printed = capsys.readouterr().out
    with open(sweep / "summary.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4
    for row in rows:
        (result,) = [
            r
            for r in results.values()
            if (r["model"], r["depth"]) == (row["model"], int(row["depth"]))
        ]
        assert row["residual"] == str(result["residual"])
        if result["status"] == "failed":
            assert (row["seeds"], row["failed"], row["test_acc_mean"]) == ("0", "1", "")
            continue
        assert int(row["params"]) == result["params"]
        assert float(row["test_acc_mean"]) == pytest.approx(result["test/acc"])
        assert float(row["final_train_loss_mean"]) == pytest.approx(result["final_train_loss"])
        assert int(float(row["epochs_mean"])) == result["epochs"]
        shortcuts = "residual" if result["residual"] else "plain"
        cells = f"| {row['model']} | {shortcuts} | {row['depth']} | {result['params']:,} | 1 |"
        assert cells in printed
        assert f"{100 * result['test/acc']:.2f} |" in printed
    report = (sweep / "report.md").read_text()
    assert "python train.py -m model=mlp,residual_mlp depth=3,2" in report
    assert "Plain vs residual twin: McNemar" in report  # mlp and residual_mlp at depth 2
    assert f"`{failed.name}`: failed: ConfigError" in report


def _wandb_run(job: Path) -> dict:
    from .test_tracking import _wandb_file, _wandb_records

    records = _wandb_records(_wandb_file(job))
    assert any(r["type"] == "exit" for r in records), f"{job.name}: W&B run not finished"
    return next(r["run"] for r in records if r["type"] == "run")


@pytest.mark.slow
@pytest.mark.parametrize(
    "launcher",
    [
        ("hydra/launcher=joblib", "hydra.launcher.n_jobs=2"),
        ("hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10"),
    ],
    ids=["joblib", "submitit_local"],
)
def test_launcher_plugins_run_each_job_in_its_own_folder_and_wandb_run(cli, tmp_path, launcher):
    sweep = tmp_path / "multirun" / "2030-01-02" / "03-04-05"
    proc = cli(
        "-m",
        *launcher,
        "depth=2,3",
        *TINY,
        "logger=wandb",
        f"hydra.sweep.dir={sweep}",
        env={"WANDB_MODE": "offline"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "2 of 2 jobs succeeded" in proc.stdout
    jobs = job_dirs(sweep)
    assert len(jobs) == 2
    for job, depth in zip(jobs, (2, 3)):
        assert read_json(job / "results.json")["depth"] == depth
        assert (job / "metrics.csv").is_file() and (job / "train.log").is_file()
    runs = [_wandb_run(job) for job in jobs]
    assert runs[0]["run_id"] != runs[1]["run_id"]
    assert {r["run_group"] for r in runs} == {"2030-01-02_03-04-05"}


def _sweep_config(experiment: str):
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        return compose(
            config_name="train", overrides=[f"experiment={experiment}"], return_hydra_config=True
        )


@pytest.mark.parametrize("experiment", ["mlp_depth", "cnn_depth", "resnet_cifar_paper"])
def test_every_job_of_an_experiment_sweep_builds(experiment):
    """A depth a model cannot build would fail its job hours into a study: refuse it here."""
    params = _sweep_config(experiment).hydra.sweeper.params
    models = str(params.get("model", "")).split(",") if "model" in params else [None]
    residuals = (
        str(params.get("model.residual", "")).split(",") if "model.residual" in params else []
    )
    jobs = 0
    for model in models:
        for depth in str(params.depth).split(","):
            for residual in residuals or [None]:
                overrides = [f"experiment={experiment}", f"depth={depth}"]
                overrides += [f"model={model}"] if model else []
                overrides += [f"model.residual={residual}"] if residual else []
                cfg = compose_config(*overrides)
                check_model_builds(cfg.model, *declared_shape(cfg.dataset))
                jobs += 1
    assert jobs >= 8


def test_resnet_paper_recipe_is_the_papers():
    cfg = compose_config("experiment=resnet_cifar_paper")
    assert cfg.dataset.name == "cifar10" and cfg.dataset.val_fraction == 0.1
    assert cfg.dataset.batch_size == 128
    assert (cfg.dataset.augment.crop_padding, cfg.dataset.augment.hflip) == (4, True)
    opt = cfg.optimizer
    assert (opt._target_, opt.lr, opt.momentum, opt.weight_decay) == (
        "torch.optim.SGD",
        0.1,
        0.9,
        1e-4,
    )
    assert list(cfg.scheduler.milestones) == [32000, 48000] and cfg.scheduler.interval == "step"
    assert cfg.trainer.max_steps == 64000 and not cfg.trainer.early_stopping.patience
    # 45k images in batches of 128: 352 iterations an epoch, 64k iterations in 182 epochs.
    assert run_length_epochs(cfg.trainer, 352) == 182


def test_max_steps_sets_the_run_length_and_step_milestones_count_iterations(tmp_path):
    cfg = compose_config(
        *TINY,
        "trainer.max_steps=12",  # 5 batches an epoch: 3 epochs
        "scheduler=multistep",
        "scheduler.milestones=[5,10]",
        "scheduler.interval=step",
        "trainer.early_stopping.patience=null",
        run_dir=tmp_path,
    )
    results = train(cfg, tmp_path)
    assert results["epochs"] == 3
    with open(tmp_path / "metrics.csv") as f:
        lrs = [float(r["lr"]) for r in csv.DictReader(f)]
    assert lrs == pytest.approx([1e-4, 1e-5, 1e-5])  # after 5, 10 and 15 iterations
    with pytest.raises(ConfigError, match="trainer.max_steps=0"):
        validate_config(compose_config("trainer.max_steps=0"))


def test_slurm_preset_becomes_a_job_array_with_partition_gpus_and_time_limit(tmp_path, monkeypatch):
    """What submitit would hand to sbatch for `hydra/launcher=slurm` (no cluster needed)."""
    submitit = pytest.importorskip("submitit")
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
    from omegaconf import OmegaConf
    from submitit.slurm.slurm import _make_sbatch_string

    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    (fake_bin / "srun").write_text("#!/bin/sh\n")
    (fake_bin / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake_bin}:{os.environ['PATH']}")  # submitit looks for srun

    GlobalHydra.instance().clear()
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(
            config_name="train",
            overrides=["hydra/launcher=slurm", "hydra.launcher.partition=gpu"],
            return_hydra_config=True,
        )
    params = OmegaConf.to_container(cfg.hydra.launcher, resolve=False)
    assert params.pop("_target_").endswith("SlurmLauncher")
    del params["submitit_folder"]
    params["name"] = "reslab"
    # The mapping hydra-submitit-launcher applies before it submits.
    executor = submitit.AutoExecutor(
        folder=tmp_path, cluster="slurm", slurm_max_num_timeout=params.pop("max_num_timeout")
    )
    base = set(OmegaConf.structured(BaseQueueConf).keys())
    executor.update_parameters(**{k if k in base else f"slurm_{k}": v for k, v in params.items()})
    sbatch = _make_sbatch_string(
        command="python train.py", folder=tmp_path, map_count=20, **executor._executor.parameters
    )
    for line in ("--partition=gpu", "--gpus-per-node=1", "--time=240", "--array=0-19%16"):
        assert f"#SBATCH {line}\n" in sbatch, line


def test_sigterm_stops_the_whole_sweep_not_just_the_running_job(tmp_path):
    sweep = tmp_path / "sweep"
    proc, rest = signal_after_first_epoch(
        "-m",
        "seed=0,1",
        "trainer.max_epochs=200",
        "trainer.early_stopping.patience=0",
        "trainer.progress=false",
        "width=16",
        "dataset.download=false",
        "logger=none",
        f"hydra.sweep.dir={sweep}",
    )
    assert proc.returncode == 128 + signal.SIGTERM, rest[-3000:]
    (job,) = job_dirs(sweep)  # the second job never started
    assert read_json(job / "results.json")["status"] == "interrupted"
