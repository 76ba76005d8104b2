"""Statistics over seeds: mean, sample std and a Student t-interval, and a paired t-test.

Seeds are the study's repetitions: each one re-draws the initial weights and the order of the
batches. Their mean's 95% interval, mean ± t(0.975, n−1)·s/√n, says where the mean over seeds
would lie if the study were repeated with new seeds, assuming seed-to-seed variation is
roughly normal. With one seed there is no spread to estimate, so there is no interval.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from scipy.stats import t, ttest_rel

LEVEL = 0.95


@dataclass(frozen=True)
class SeedStats:
    """One number over seeds; std and the interval are None with fewer than two seeds."""

    n: int
    mean: float | None
    std: float | None  # sample std (ddof=1)
    low: float | None  # Student t-interval of the mean at LEVEL
    high: float | None

    @property
    def half_width(self) -> float | None:
        return None if self.low is None or self.high is None else (self.high - self.low) / 2


def seed_stats(values: Sequence[float], level: float = LEVEL) -> SeedStats:
    """Mean, sample std and t-interval of the mean of ``values`` (one per seed)."""
    values = [float(v) for v in values]
    n = len(values)
    if n == 0:
        return SeedStats(0, None, None, None, None)
    mean = statistics.fmean(values)
    if n == 1:  # no spread to estimate: an interval here would be made up
        return SeedStats(1, mean, None, None, None)
    std = statistics.stdev(values)
    half = float(t.ppf(0.5 + level / 2, df=n - 1)) * std / math.sqrt(n)
    return SeedStats(n, mean, std, mean - half, mean + half)


@dataclass(frozen=True)
class PairedStats:
    """Two models' values paired by seed, and their differences ``b − a``."""

    seeds: list[int | None]
    a: list[float]
    b: list[float]
    diff: SeedStats  # of b − a
    p_value: float | None  # paired t-test, two-sided; None with one pair or no spread

    @property
    def n(self) -> int:
        return self.diff.n


def paired_stats(
    seeds: Sequence[int | None], a: Sequence[float], b: Sequence[float], level: float = LEVEL
) -> PairedStats:
    """The mean difference ``b − a`` over seed pairs with its t-interval and the paired t-test."""
    a, b = [float(x) for x in a], [float(x) for x in b]
    diff = seed_stats([y - x for x, y in zip(a, b)], level)
    p_value = None
    # With identical differences t is infinite (or float noise): no honest p-value to give.
    if diff.n >= 2 and diff.std is not None and diff.std > 1e-12 * max(1.0, abs(diff.mean)):
        p_value = float(ttest_rel(b, a).pvalue)
    return PairedStats(list(seeds), a, b, diff, p_value)
