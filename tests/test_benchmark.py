"""scripts/benchmark.py runs end to end and reports every variant, ratio and case."""

from __future__ import annotations

import json

import torch

from .conftest import run_cli

VARIANTS = ("bare_loop", "fast_loop", "reslab", "reslab_no_loggers", "reslab_dataloader")


def test_benchmark_reports_every_variant_ratio_and_case(tmp_path):
    out = tmp_path / "bench.json"
    epochs = 2
    proc = run_cli(
        "--cases=mlp,resnet20,startup,loader_memory",
        "--train-size=300",
        f"--epochs={epochs}",
        "--repeats=1",
        "--workers=0",
        "--startup-repeats=1",
        "--no-loggers",
        f"--out={out}",
        script="scripts/benchmark.py",
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["machine"]["cpu_count"] and "torch" in report["machine"]

    mlp = report["cases"]["mlp"]
    assert mlp["device"] == "cpu"
    assert mlp["train_images_per_epoch"] == 270  # 300 minus the 10% validation split
    for variant in VARIANTS:
        result = mlp["variants"][variant]
        assert result["median_epoch_s"] > 0 and result["samples_per_s"] > 0
        (run,) = result["runs"]
        assert len(run["epoch_s"]) == epochs
        assert run["process_peak_rss_mb"] > 0
    ratios = mlp["ratios"]
    bare, hand, fast, quiet, same_path = (mlp["variants"][v]["median_epoch_s"] for v in VARIANTS)
    assert ratios["overhead_same_data_path"] == same_path / bare
    assert ratios["speedup_reslab_vs_bare_loop"] == bare / fast
    # Against the fastest hand-written loop, with the loggers off (the target) and on.
    assert ratios["reslab_no_loggers_vs_fast_loop"] == quiet / hand
    assert ratios["reslab_vs_fast_loop"] == fast / hand
    assert "against the fast hand-written loop" in proc.stdout

    resnet = report["cases"]["resnet20"]
    if torch.cuda.is_available():
        assert "cuda_max_allocated_mb" in resnet["variants"]["reslab"]["runs"][0]
    else:
        assert resnet == {"skipped": "no CUDA GPU on this machine"}
    startup = report["cases"]["startup"]
    assert startup["command"] == "python train.py --cfg job" and startup["median_s"] > 0
    assert "overhead" in proc.stdout and "startup" in proc.stdout
    memory = report["cases"]["loader_memory"]
    assert memory["images"].startswith("300 train + 60 test")
    peaks = {
        v: memory["variants"][v]["peak_above_imports_mb"]
        for v in ("read_files", "float64_statistics", "reslab")
    }
    assert all(peak >= 0 for peak in peaks.values()), peaks
    assert (
        memory["ratios"]["reslab_vs_float64_statistics"]
        == peaks["reslab"] / peaks["float64_statistics"]
    )
    assert "loader_memory" in proc.stdout


def test_sweep_benchmark_times_both_launchers_on_the_same_study(tmp_path):
    out = tmp_path / "sweep_bench.json"
    study = ["model=mlp", "depth=2,3", "width=16", "trainer=debug", "logger=none"]
    study += ["dataset.download=false", f"dataset.root={tmp_path / 'data'}"]
    proc = run_cli(
        *study,
        "--rounds=1",
        "--n-jobs=2",
        f"--out={out}",
        script="scripts/benchmark_sweep.py",
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["study"] == study and report["n_jobs"] == 2
    for name in ("sequential", "joblib"):
        (run,) = report["variants"][name]["runs"]
        assert run["jobs"] == run["succeeded"] == 2 and run["wall_s"] > 0
    expected = (
        report["variants"]["sequential"]["median_wall_s"]
        / (report["variants"]["joblib"]["median_wall_s"])
    )
    assert report["speedup"] == round(expected, 3)
    assert f"{report['speedup']:.2f}x faster" in proc.stdout
