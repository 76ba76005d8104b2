"""McNemar's test: do two models, tested on the same images, really differ in accuracy?

Only the images on which exactly one model is right carry information: ``b`` (only A right)
and ``c`` (only B right). Under "equally accurate" each such image is a fair coin, so the
exact two-sided p-value is a binomial test of b successes in b + c trials at p = 0.5. The
chi-square statistic with continuity correction, (|b - c| - 1)^2 / (b + c), is given too,
as most papers quote it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.stats import binomtest, chi2

from reslab.report.load import ReportError, Run
from reslab.report.seeds import PairedStats, paired_stats
from reslab.report.table import Row, metric_getter


@dataclass(frozen=True)
class McNemar:
    n: int
    both_right: int
    only_a: int  # b: A right, B wrong
    only_b: int  # c: A wrong, B right
    both_wrong: int
    statistic: float  # chi-square, continuity corrected
    chi2_p: float
    p_value: float  # exact binomial, two-sided

    @property
    def acc_a(self) -> float:
        return (self.both_right + self.only_a) / self.n

    @property
    def acc_b(self) -> float:
        return (self.both_right + self.only_b) / self.n


def mcnemar(labels: np.ndarray, pred_a: np.ndarray, pred_b: np.ndarray) -> McNemar:
    """McNemar's test of two prediction vectors on the same labelled test images."""
    labels, pred_a, pred_b = (np.asarray(x).ravel() for x in (labels, pred_a, pred_b))
    if not (len(labels) == len(pred_a) == len(pred_b)) or len(labels) == 0:
        raise ReportError(
            f"McNemar needs predictions for the same non-empty test set "
            f"(got {len(labels)} labels, {len(pred_a)} and {len(pred_b)} predictions)"
        )
    right_a, right_b = pred_a == labels, pred_b == labels
    b = int(np.sum(right_a & ~right_b))
    c = int(np.sum(~right_a & right_b))
    discordant = b + c
    if discordant == 0:
        statistic, chi2_p, p_value = 0.0, 1.0, 1.0
    else:
        statistic = (abs(b - c) - 1) ** 2 / discordant
        chi2_p = float(chi2.sf(statistic, df=1))
        p_value = float(binomtest(b, discordant, 0.5, alternative="two-sided").pvalue)
    return McNemar(
        n=len(labels),
        both_right=int(np.sum(right_a & right_b)),
        only_a=b,
        only_b=c,
        both_wrong=int(np.sum(~right_a & ~right_b)),
        statistic=float(statistic),
        chi2_p=chi2_p,
        p_value=p_value,
    )


def load_predictions(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    path = Path(folder) / "test_predictions.npz"
    if not path.is_file():
        raise ReportError(
            f"{path} is missing: the run did not finish its test; pick a completed run"
        )
    with np.load(path) as data:
        return data["labels"], data["predictions"]


def compare_runs(a: Run, b: Run) -> McNemar:
    """McNemar's test on two runs' saved test predictions; refuses runs tested on different images."""
    labels_a, pred_a = load_predictions(a.folder)
    labels_b, pred_b = load_predictions(b.folder)
    if labels_a.shape != labels_b.shape or not np.array_equal(labels_a, labels_b):
        raise ReportError(
            f"{a.name} and {b.name} were tested on different test sets; "
            "compare runs of the same dataset and split"
        )
    return mcnemar(labels_a, pred_a, pred_b)


def twin_pairs(runs: list[Run], need_predictions: bool = True) -> list[tuple[Run, Run]]:
    """Each plain run with its residual twin: same depth, seed and setting, both finished
    (and, for McNemar's test, with their test predictions saved)."""
    done = [r for r in runs if r.ok and (_has_predictions(r) or not need_predictions)]
    pairs = []
    for plain in (r for r in done if not r.results.get("residual")):
        for res in done:
            if res.results.get("residual") and (
                res.depth,
                res.seed,
                res.setting,
                res.results.get("dataset"),
            ) == (plain.depth, plain.seed, plain.setting, plain.results.get("dataset")):
                pairs.append((plain, res))
    return sorted(pairs, key=lambda p: (p[0].setting, p[0].depth or 0, p[0].seed or 0))


@dataclass(frozen=True)
class TwinSeeds:
    """A plain model and its residual twin at one depth and setting, paired by seed."""

    plain: Run  # the first seed's runs, for names, depth and setting
    residual: Run
    stats: PairedStats  # of residual − plain


def seed_twins(runs: list[Run], metric: str = "test/acc") -> list[TwinSeeds]:
    """The twin pairs of each depth and setting, their ``metric`` paired by seed: the mean
    difference residual − plain over seeds, its t-interval and the paired t-test."""
    get = metric_getter(metric)
    groups: dict[tuple, dict] = {}
    for plain, res in twin_pairs(runs, need_predictions=False):
        a, b = get(plain), get(res)
        if a is None or b is None:
            continue
        key = (plain.setting, plain.depth or 0, plain.variant, res.variant)
        # One pair per seed: the same seed twice (two sweeps given) would count one seed twice.
        groups.setdefault(key, {}).setdefault(plain.seed, (plain, res, a, b))
    twins = []
    for key in sorted(groups):
        plains, residuals, a, b = zip(*groups[key].values())
        stats = paired_stats([p.seed for p in plains], a, b)
        twins.append(TwinSeeds(plains[0], residuals[0], stats))
    return twins


def step_pairs(rows: list[Row]) -> list[tuple[Run, Run]]:
    """A sweep over settings at one depth and model (a course's ladder): each row's finished
    runs against the previous row's run of the same seed, in row order."""
    if len({r.setting for r in rows}) < 2 or len({(r.variant, r.depth) for r in rows}) != 1:
        return []
    pairs = []
    for before, after in zip(rows, rows[1:]):
        earlier = {r.seed: r for r in before.ok_runs if _has_predictions(r)}
        pairs += [
            (earlier[run.seed], run)
            for run in after.ok_runs
            if run.seed in earlier and _has_predictions(run)
        ]
    return pairs


def _has_predictions(run: Run) -> bool:
    return (run.folder / "test_predictions.npz").is_file()
