"""The comparison report: McNemar's test against known answers, mean ± std over seeds, and
what `scripts/compare.py` writes for a sweep folder (table, CSVs, figures, failed jobs)."""

from __future__ import annotations

import csv
import json
import statistics
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import binomtest

from reslab.report.compare import main as compare
from reslab.report.load import ReportError, load_runs
from reslab.report.significance import mcnemar
from reslab.report.table import group_rows, markdown_table

LABELS = np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 9])


def _predictions(only_a: int, only_b: int, both_right: int, both_wrong: int):
    """Prediction vectors with exactly these agreement counts on the first images of LABELS."""
    n = only_a + only_b + both_right + both_wrong
    labels = LABELS[:n]
    wrong = (labels + 1) % 10
    a = np.concatenate(
        [
            labels[:only_a],
            wrong[only_a : only_a + only_b],
            labels[only_a + only_b : only_a + only_b + both_right],
            wrong[only_a + only_b + both_right :],
        ]
    )
    b = np.concatenate(
        [
            wrong[:only_a],
            labels[only_a : only_a + only_b],
            labels[only_a + only_b : only_a + only_b + both_right],
            wrong[only_a + only_b + both_right :],
        ]
    )
    return labels, a, b


def test_mcnemar_gives_the_hand_computed_statistic_and_exact_p():
    labels, a, b = _predictions(only_a=1, only_b=6, both_right=2, both_wrong=1)
    result = mcnemar(labels, a, b)
    assert (result.only_a, result.only_b, result.both_right, result.both_wrong) == (1, 6, 2, 1)
    # 7 discordant images, 1 of them for A: P(X <= 1 | Bin(7, 1/2)) = 8/128, two-sided 2 * 8/128.
    assert result.p_value == pytest.approx(0.125)
    assert result.p_value == pytest.approx(binomtest(1, 7, 0.5).pvalue)
    # Continuity-corrected chi-square: (|1 - 6| - 1)^2 / 7.
    assert result.statistic == pytest.approx(16 / 7)
    assert result.acc_a == pytest.approx(0.3) and result.acc_b == pytest.approx(0.8)
    swapped = mcnemar(labels, b, a)
    assert (swapped.only_a, swapped.only_b) == (6, 1)
    assert swapped.p_value == pytest.approx(result.p_value)


def test_mcnemar_ignores_images_both_models_agree_on():
    labels, a, b = _predictions(only_a=0, only_b=0, both_right=7, both_wrong=3)
    result = mcnemar(labels, a, b)
    assert result.p_value == 1.0 and result.statistic == 0.0
    labels, a, b = _predictions(only_a=0, only_b=8, both_right=2, both_wrong=0)
    assert mcnemar(labels, a, b).p_value == pytest.approx(2 / 2**8)


def test_mcnemar_refuses_prediction_vectors_of_different_lengths():
    with pytest.raises(ReportError, match="same non-empty test set"):
        mcnemar(LABELS, LABELS, LABELS[:5])


def fake_run(
    folder: Path,
    *,
    model: str = "mlp",
    residual: bool = False,
    depth: int = 4,
    seed: int = 0,
    test_acc: float = 0.9,
    losses: tuple[float, ...] = (1.0, 0.5),
    predictions: np.ndarray | None = None,
    status: str = "completed",
    overrides: tuple[str, ...] = (),
) -> Path:
    """A job folder as train.py leaves it: results.json, metrics.csv, predictions, overrides."""
    folder.mkdir(parents=True)
    (folder / ".hydra").mkdir()
    (folder / ".hydra" / "overrides.yaml").write_text(
        "".join(
            f"- {o}\n" for o in (f"model={model}", f"depth={depth}", f"seed={seed}", *overrides)
        )
    )
    results: dict = {"status": status, "model": model, "residual": residual, "depth": depth}
    results.update(seed=seed, dataset="mnist", params=1000 * depth, duration_s=2.0)
    if status == "failed":
        results["error"] = "ConfigError: depth=3 cannot be built"
    else:
        results.update(
            {
                "epochs": len(losses),
                "best_epoch": len(losses),
                "final_train_loss": losses[-1],
                "test/acc": test_acc,
                "test/loss": 0.3,
            }
        )
        rows = ["epoch,train/loss,val/acc"]
        rows += [f"{i + 1},{loss},{0.5 + 0.1 * i}" for i, loss in enumerate(losses)]
        (folder / "metrics.csv").write_text("\n".join(rows) + "\n")
        preds = LABELS if predictions is None else predictions
        np.savez_compressed(folder / "test_predictions.npz", labels=LABELS, predictions=preds)
    (folder / "results.json").write_text(json.dumps(results))
    return folder


def test_seeds_are_averaged_with_sample_std(tmp_path):
    accs = [0.90, 0.92, 0.97]
    for seed, acc in enumerate(accs):
        fake_run(tmp_path / f"{seed}_seed={seed}", seed=seed, test_acc=acc, losses=(1, 0.1 * seed))
    other = fake_run(tmp_path / "3_other", depth=8, test_acc=0.5)
    (other / "metrics.csv").write_text("epoch,train/loss,val/acc\n1,0.9,0.5\n2,0.1,1\n")
    rows = group_rows(load_runs([tmp_path]))
    assert [(r.depth, len(r.runs)) for r in rows] == [(4, 3), (8, 1)]
    mean, std = rows[0].mean_std("test_acc")
    assert mean == pytest.approx(statistics.fmean(accs))
    assert std == pytest.approx(statistics.stdev(accs))
    assert rows[1].mean_std("test_acc") == (pytest.approx(0.5), None)
    table = markdown_table(rows)
    assert f"{100 * mean:.2f} ± {100 * std:.2f}" in table
    # val/acc of the best epoch from metrics.csv, also when it is a whole 1 (read back as an int)
    assert rows[0].mean_std("val_acc")[0] == pytest.approx(0.6)
    assert rows[1].mean_std("val_acc")[0] == 1.0


def test_val_and_test_accuracy_columns_are_of_the_same_checkpoint(tmp_path):
    """The best epoch by val/loss need not be the epoch of the highest val/acc: the table pairs
    the test accuracy with the val accuracy of the tested (best) epoch, and says so."""
    folder = fake_run(tmp_path / "0_run", losses=(1.0, 0.5, 0.4), test_acc=0.8)
    results = json.loads((folder / "results.json").read_text())
    results.update({"best_epoch": 2, "val/acc": 0.6})  # epoch 3 had val/acc 0.7
    (folder / "results.json").write_text(json.dumps(results))
    (row,) = group_rows(load_runs([tmp_path]))
    assert row.mean_std("val_acc")[0] == pytest.approx(0.6)
    assert row.mean_std("max_val_acc")[0] == pytest.approx(0.7)
    assert "val acc at best epoch (%) | test acc at best epoch (%)" in markdown_table([row])
    assert "| 60.00 | 80.00 |" in markdown_table([row])


def test_compare_writes_table_csvs_figures_twin_tests_and_failed_jobs(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    wrong = (LABELS + 1) % 10
    plain_preds = np.concatenate([LABELS[:4], wrong[4:]])
    fake_run(sweep / "0_mlp", depth=8, test_acc=0.4, losses=(2.3, 2.2), predictions=plain_preds)
    fake_run(sweep / "1_res", model="residual_mlp", residual=True, depth=8, test_acc=1.0)
    fake_run(sweep / "2_broken", model="residual_mlp", residual=True, depth=3, status="failed")

    assert compare([str(sweep), "--pair", "0", "1_res"]) == 0
    printed = capsys.readouterr().out
    assert "| mlp | plain | 8 |" in printed and "| residual_mlp | residual | 8 |" in printed
    for name in ("report.md", "summary.csv", "runs.csv", "curves.png", "depth.png"):
        assert (sweep / name).is_file(), name
    report = (sweep / "report.md").read_text()
    p_exact = binomtest(0, 6, 0.5).pvalue  # the residual net alone is right on 6 images
    assert "| 40.00 | 100.00 | 0 | 6 |" in report
    assert f"{p_exact:.2g}" in report
    assert "## Chosen pairs" in report and "A = `0_mlp`, B = `1_res`" in report
    assert "`2_broken`: failed: ConfigError: depth=3 cannot be built" in report
    with open(sweep / "runs.csv") as f:
        runs = {row["job"]: row for row in csv.DictReader(f)}
    assert runs["2_broken"]["status"] == "failed"
    assert float(runs["0_mlp"]["final_train_loss"]) == pytest.approx(2.2)


def test_compare_fails_with_one_line_on_bad_input(tmp_path, capsys):
    assert compare([str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert compare([str(tmp_path)]) == 2
    assert "no results.json" in capsys.readouterr().err
    fake_run(tmp_path / "0_a")
    assert compare([str(tmp_path), "--pair", "0", "7"]) == 2
    assert "--pair 7 is no run of these sweeps" in capsys.readouterr().err


def test_compare_refuses_runs_tested_on_different_images(tmp_path, capsys):
    fake_run(tmp_path / "0_a")
    other = fake_run(tmp_path / "1_b", model="residual_mlp", residual=True)
    np.savez_compressed(other / "test_predictions.npz", labels=LABELS[::-1], predictions=LABELS)
    assert compare([str(tmp_path)]) == 2
    assert "different test sets" in capsys.readouterr().err


def test_runs_are_read_in_job_order(tmp_path):
    for num in (10, 2, 1):
        fake_run(tmp_path / f"{num}_depth={num}", depth=num)
    assert [r.name for r in load_runs([tmp_path])] == ["1_depth=1", "2_depth=2", "10_depth=10"]
