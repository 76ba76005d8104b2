"""Statistics over seeds in the comparison report: t-intervals against hand-computed numbers,
no interval from one seed, the paired t-test of plain/residual twins against scipy, and
``--metric`` choosing what the tables, the paired test and the depth plot centre on."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
from scipy.stats import ttest_rel

from reslab.report.compare import main as compare
from reslab.report.figures import depth_figure
from reslab.report.load import load_runs
from reslab.report.seeds import paired_stats, seed_stats
from reslab.report.significance import seed_twins
from reslab.report.table import group_rows, stats_table

from .test_report import fake_run

T_975_2 = 4.302652729911275  # t(0.975, 2), from a t table
PLAIN = [0.80, 0.84, 0.82]  # test accuracy of seeds 0, 1, 2
RESIDUAL = [0.90, 0.91, 0.95]


def _with_results(folder: Path, **extra: float) -> Path:
    results = json.loads((folder / "results.json").read_text())
    results.update(extra)
    (folder / "results.json").write_text(json.dumps(results))
    return folder


def twins_sweep(root: Path) -> Path:
    """Depth 4: three seeds of a plain MLP and its residual twin, the residual jobs numbered in
    reverse seed order (pairing by position would pair the wrong runs); depth 8: one seed each."""
    for seed, acc in enumerate(PLAIN):
        folder = fake_run(root / f"{seed}_plain_s{seed}", seed=seed, test_acc=acc)
        _with_results(folder, **{"test/f1_macro": acc - 0.05})
    for num, seed in zip((3, 4, 5), (2, 1, 0)):
        folder = fake_run(
            root / f"{num}_res_s{seed}",
            model="residual_mlp",
            residual=True,
            seed=seed,
            test_acc=RESIDUAL[seed],
            losses=(1.0, 0.1 * (seed + 1)),
        )
        _with_results(folder, **{"test/f1_macro": RESIDUAL[seed] - 0.05})
    fake_run(root / "6_plain_d8", depth=8, test_acc=0.5)
    fake_run(root / "7_res_d8", model="residual_mlp", residual=True, depth=8, test_acc=0.7)
    return root


def _summary(path: Path) -> dict[tuple[str, str], dict[str, str]]:
    with open(path) as f:
        return {(row["model"], row["depth"]): row for row in csv.DictReader(f)}


def test_t_interval_is_the_hand_computed_one():
    stats = seed_stats([0.80, 0.84, 0.82])
    assert (stats.n, stats.mean, stats.std) == (3, pytest.approx(0.82), pytest.approx(0.02))
    half = T_975_2 * 0.02 / math.sqrt(3)
    assert half == pytest.approx(0.0497, abs=1e-4)
    assert stats.half_width == pytest.approx(half)
    assert (stats.low, stats.high) == (pytest.approx(0.82 - half), pytest.approx(0.82 + half))


def test_one_seed_gives_its_value_and_no_interval():
    stats = seed_stats([0.9])
    assert (stats.n, stats.mean, stats.std, stats.low, stats.high) == (1, 0.9, None, None, None)
    assert stats.half_width is None
    assert seed_stats([]).mean is None


def test_report_and_summary_csv_give_the_intervals_and_none_for_one_seed(tmp_path):
    sweep = twins_sweep(tmp_path / "sweep")
    assert compare([str(sweep), "--no-cam"]) == 0
    rows = _summary(sweep / "summary.csv")
    plain, single = rows[("mlp", "4")], rows[("mlp", "8")]
    half = T_975_2 * 0.02 / math.sqrt(3)
    assert float(plain["test_acc_ci_low"]) == pytest.approx(0.82 - half)
    assert float(plain["test_acc_ci_high"]) == pytest.approx(0.82 + half)
    assert float(plain["test_acc_std"]) == pytest.approx(0.02)
    assert plain["final_train_loss_ci_low"] == "0.5" == plain["final_train_loss_ci_high"]
    residual = rows[("residual_mlp", "4")]  # losses 0.1, 0.2, 0.3: mean 0.2, s = 0.1
    assert float(residual["final_train_loss_ci_high"]) == pytest.approx(
        0.2 + T_975_2 * 0.1 / 3**0.5
    )
    assert single["seeds"] == "1" and float(single["test_acc_mean"]) == 0.5
    for column in ("test_acc", "final_train_loss"):
        assert single[f"{column}_std"] == single[f"{column}_ci_low"] == ""
        assert single[f"{column}_ci_high"] == ""
    report = (sweep / "report.md").read_text()
    assert "## Seed statistics: 95% intervals" in report
    assert f"| mlp | plain | 4 | 3 | 82.00 ± 2.00 | [{100 * (0.82 - half):.2f}, " in report
    assert "| mlp | plain | 8 | 1 | 50.00 | – (n=1) | 0.5 | – (n=1) |" in report
    assert "t(0.975, n−1)·s/√n" in report


def test_paired_comparison_over_seeds_matches_scipy(tmp_path):
    runs = load_runs([twins_sweep(tmp_path / "sweep")])
    deep, shallow = sorted(seed_twins(runs), key=lambda t: -(t.plain.depth or 0))
    assert (shallow.plain.depth, shallow.stats.seeds) == (4, [0, 1, 2])
    assert shallow.stats.a == PLAIN and shallow.stats.b == RESIDUAL  # paired by seed
    diffs = [b - a for a, b in zip(PLAIN, RESIDUAL)]
    assert shallow.stats.diff.mean == pytest.approx(0.10)
    assert shallow.stats.diff == seed_stats(diffs)
    expected_p = ttest_rel(RESIDUAL, PLAIN).pvalue
    assert shallow.stats.p_value == pytest.approx(expected_p)
    assert (deep.stats.n, deep.stats.p_value, deep.stats.diff.low) == (1, None, None)
    assert deep.stats.diff.mean == pytest.approx(0.2)

    assert compare([str(tmp_path / "sweep"), "--no-cam"]) == 0
    report = (tmp_path / "sweep" / "report.md").read_text()
    assert "## Plain vs residual twin over seeds: paired t-test of test accuracy" in report
    diff = shallow.stats.diff
    interval = f"[{100 * diff.low:+.2f}, {100 * diff.high:+.2f}]"
    assert f"| mlp | residual_mlp | 4 | 3 | 82.00 | 92.00 | +10.00 | {interval} | " in report
    assert f"{expected_p:.2g} |" in report
    assert (
        "| 8 | 1 | 50.00 | 70.00 | +20.00 | – (one seed pair) | – (one seed pair: no test" in report
    )


def test_identical_differences_over_seeds_give_no_p_value():
    stats = paired_stats([0, 1], [0.1, 0.1], [0.9, 0.9])
    assert stats.diff.mean == pytest.approx(0.8) and stats.p_value is None


def test_metric_option_moves_tables_csvs_and_paired_test(tmp_path, capsys):
    sweep = twins_sweep(tmp_path / "sweep")
    assert compare([str(sweep), "--no-cam", "--metric", "test/f1_macro"]) == 0
    assert "| test/f1_macro |" in capsys.readouterr().out.splitlines()[0]  # printed table
    report = (sweep / "report.md").read_text()
    assert "test/f1_macro: mean ± std | test/f1_macro: 95% interval" in report
    assert "paired t-test of test/f1_macro" in report
    assert "![final training loss and test/f1_macro against depth" in report
    rows = _summary(sweep / "summary.csv")
    f1 = seed_stats([a - 0.05 for a in PLAIN])
    plain = rows[("mlp", "4")]
    assert float(plain["test_f1_macro_mean"]) == pytest.approx(f1.mean)
    assert float(plain["test_f1_macro_ci_low"]) == pytest.approx(f1.low)
    assert float(plain["test_acc_ci_low"]) == pytest.approx(seed_stats(PLAIN).low)  # still there
    with open(sweep / "runs.csv") as f:
        assert "test_f1_macro" in next(csv.reader(f))
    # The usual columns keep their names and their places: other tools read them.
    with open(sweep / "summary.csv") as f:
        header = next(csv.reader(f))
    assert header[: len(SUMMARY_COLUMNS)] == SUMMARY_COLUMNS


# summary.csv's columns before the intervals came, in their order.
SUMMARY_COLUMNS = ["setting", "label", "model", "residual", "depth", "params", "seeds", "failed"]
SUMMARY_COLUMNS += [
    f"{c}_{s}"
    for c in ("epochs", "best_epoch", "final_train_loss", "val_acc", "test_acc")
    + ("overfitting_epoch", "max_val_acc")
    for s in ("mean", "std")
]


def test_metric_option_sets_the_depth_plot_axis(tmp_path):
    rows = group_rows(load_runs([twins_sweep(tmp_path / "sweep")]))
    axes = depth_figure(rows, "test/f1_macro").axes
    assert [ax.get_ylabel() for ax in axes] == ["final training loss", "test/f1_macro"]
    (only,) = depth_figure(rows, "final_train_loss").axes
    assert only.get_ylabel() == "final training loss"
    assert "validation accuracy (%): 95% interval" in stats_table(rows, "val/acc")


def test_unknown_metric_is_refused_naming_the_available_ones(tmp_path, capsys):
    sweep = twins_sweep(tmp_path / "sweep")
    assert compare([str(sweep), "--no-cam", "--metric", "test/f1"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: --metric test/f1 is not a number in these runs' results.json")
    assert "available: " in line and "test/acc" in line and "test/f1_macro" in line
    assert "seed" not in line.split("available: ")[1].split(", ")  # set-up, not a metric
    assert not (sweep / "report.md").exists()
