"""The comparison table: one row per model variant, depth and setting, mean ± std over seeds,
and the seed statistics table (95% t-intervals) of the metric the report centres on."""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reslab.report.load import ReportError, Run
from reslab.report.seeds import SeedStats, seed_stats

# (column, header, value of one run); numbers are averaged over the seeds of a row. The two
# accuracies belong to one checkpoint: the best epoch by the monitored metric.
METRICS: list[tuple[str, str, Callable[[Run], float | None]]] = [
    ("epochs", "epochs", lambda r: r.results.get("epochs")),
    ("best_epoch", "best epoch", lambda r: r.results.get("best_epoch")),
    ("final_train_loss", "final train loss", lambda r: r.results.get("final_train_loss")),
    ("val_acc", "val acc at best epoch", lambda r: val_acc_at_best_epoch(r)),
    ("test_acc", "test acc at best epoch", lambda r: r.results.get("test/acc")),
    ("overfitting_epoch", "overfitting from epoch", lambda r: r.results.get("overfitting_epoch")),
]
# In summary.csv and runs.csv only: the peak of the validation curve, whichever epoch it was.
CSV_ONLY: list[tuple[str, str, Callable[[Run], float | None]]] = [
    ("max_val_acc", "max val acc (any epoch)", lambda r: max_val_acc(r)),
]


COLUMNS: dict[str, Callable[[Run], float | None]] = {c: f for c, _, f in METRICS + CSV_ONLY}
# Numbers in results.json that describe how a run was set up, not what it measured.
NOT_A_METRIC = ("seed", "depth", "params", "n_train", "n_val", "n_test", "resumed_from_epoch")
# The report's default metric and the two whose seed statistics it always gives.
DEFAULT_METRIC = "test/acc"
ALWAYS_STATS = ("test/acc", "final_train_loss")
METRIC_NAMES = {
    "test/acc": "test accuracy",
    "val/acc": "validation accuracy",
    "final_train_loss": "final training loss",
}
INTEGER_COLUMNS = ("epochs", "best_epoch", "overfitting_epoch")


def metric_column(key: str) -> str:
    """A metric's column name in the table and summary.csv: ``test/acc`` -> ``test_acc``."""
    return key.replace("/", "_")


def metric_getter(key: str) -> Callable[[Run], float | None]:
    """How to read a metric off one run: a table column's own rule (val/acc falls back on
    metrics.csv), else the number under that key in results.json."""
    if (column := metric_column(key)) in COLUMNS:
        return COLUMNS[column]
    return lambda r: v if _is_number(v := r.results.get(key)) else None


def metric_name(key: str) -> str:
    """A metric's name in headers and axis labels, with (%) for accuracies."""
    name = METRIC_NAMES.get(key, key)
    return name + (" (%)" if metric_column(key).endswith("acc") else "")


def available_metrics(runs: list[Run]) -> list[str]:
    """The metrics --metric accepts: numeric keys of the finished runs' results.json, and
    val/acc and max_val_acc where metrics.csv gives them."""
    ok = [r for r in runs if r.ok]
    keys = {k for r in ok for k, v in r.results.items() if _is_number(v)} - set(NOT_A_METRIC)
    keys |= {
        k for k in ("val/acc", "max_val_acc") if any(metric_getter(k)(r) is not None for r in ok)
    }
    return sorted(keys)


def check_metric(metric: str, runs: list[Run]) -> None:
    """Refuse a metric none of the finished runs has, naming the ones they have."""
    if not any(r.ok for r in runs):  # nothing finished: the report lists the failures only
        return
    available = available_metrics(runs)
    if metric not in available:
        raise ReportError(
            f"--metric {metric} is not a number in these runs' results.json; "
            f"available: {', '.join(available) or 'none (no finished runs)'}"
        )


def val_acc_at_best_epoch(run: Run) -> float | None:
    """val/acc of the monitored best epoch: the epoch whose checkpoint was tested."""
    if (value := run.results.get("val/acc")) is not None:
        return value
    best = run.results.get("best_epoch")
    row = next((row for row in run.history if row.get("epoch") == best), {})
    return row.get("val/acc") if _is_number(row.get("val/acc")) else None


def max_val_acc(run: Run) -> float | None:
    """The highest val/acc of any epoch (metrics.csv); None when there is no history."""
    values = [float(v) for row in run.history if _is_number(v := row.get("val/acc"))]
    return max(values) if values else None


def _is_number(value: Any) -> bool:
    # metrics.csv reads 1.0 back as the int 1: an accuracy of exactly 100% is still a number.
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass
class Row:
    """Runs that differ only in their seed."""

    variant: str
    residual: bool
    depth: int | None
    setting: str
    runs: list[Run]

    @property
    def ok_runs(self) -> list[Run]:
        return [r for r in self.runs if r.ok]

    @property
    def label(self) -> str:
        """The setting's name (a course rung's, say) when its runs give one, else its overrides."""
        labels = {r.results.get("label") for r in self.runs} - {None}
        if len(labels) == 1:
            return labels.pop()
        return self.setting or "(base)"

    @property
    def params(self) -> int | None:
        counts = [r.results.get("params") for r in self.runs if r.results.get("params")]
        return counts[0] if counts else None

    def values(self, name: str) -> list[float]:
        """One value per finished seed: ``name`` is a table column or a results.json key."""
        get = metric_getter(name)
        return [float(v) for r in self.ok_runs if (v := get(r)) is not None]

    def stats(self, name: str) -> SeedStats:
        """Mean, sample std and 95% t-interval over the finished seeds (no interval for one)."""
        return seed_stats(self.values(name))

    def mean_std(self, name: str) -> tuple[float | None, float | None]:
        stats = self.stats(name)
        return stats.mean, stats.std


def group_rows(runs: list[Run]) -> list[Row]:
    """Rows sorted by setting, plain before residual, then variant and depth."""
    groups: dict[tuple, Row] = {}
    for run in runs:
        key = (run.variant, run.depth, run.setting)
        if key not in groups:
            groups[key] = Row(
                run.variant, bool(run.results.get("residual")), run.depth, run.setting, []
            )
        groups[key].runs.append(run)
    return sorted(groups.values(), key=lambda r: (r.setting, r.residual, r.variant, r.depth or 0))


def fmt_number(value: float, column: str, spread: bool = False) -> str:
    """One number as the tables show it: accuracies in %, epochs to one decimal; a spread
    (a std) to fewer digits than a value."""
    if column in INTEGER_COLUMNS:
        return f"{value:.1f}"
    if column.endswith("acc"):
        return f"{100 * value:.2f}"
    return f"{value:.2g}" if spread else f"{value:.4g}"


def _fmt(mean: float | None, std: float | None, column: str) -> str:
    if mean is None:
        return "–"
    if std is None:  # one seed: the value itself
        return f"{mean:.0f}" if column in INTEGER_COLUMNS else fmt_number(mean, column)
    return f"{fmt_number(mean, column)} ± {fmt_number(std, column, spread=True)}"


def markdown_table(rows: list[Row], metric: str = DEFAULT_METRIC) -> str:
    """The table users read: accuracies in percent, mean ± std (sample std) when seeds were
    swept; a column for ``metric`` at the end when it is not one of the usual ones."""
    columns = [(c, h + (" (%)" if c.endswith("acc") else "")) for c, h, _ in METRICS]
    if metric_column(metric) not in COLUMNS:
        columns.append((metric, metric_name(metric)))
    header = ["model", "shortcuts", "depth", "params", "seeds", *(h for _, h in columns)]
    lines = []
    for row in rows:
        cells = [*_row_cells(row), f"{row.params:,}" if row.params else "–", _seeds_cell(row)]
        cells += [_fmt(*row.mean_std(c), metric_column(c)) for c, _ in columns]
        lines.append(_with_setting(rows, row, cells))
    return _markdown(_with_setting(rows, None, header), lines)


def stats_table(rows: list[Row], metric: str = DEFAULT_METRIC) -> str:
    """Each row's mean ± sample std and 95% t-interval over seeds, of ``metric`` and of the
    final training loss; a row with one seed gets its value and no interval."""
    keys = list(dict.fromkeys([metric, "final_train_loss"]))
    header = ["model", "shortcuts", "depth", "seeds"]
    for key in keys:
        header += [f"{metric_name(key)}: mean ± std", f"{metric_name(key)}: 95% interval"]
    lines = []
    for row in rows:
        cells = [*_row_cells(row), _seeds_cell(row)]
        for key in keys:
            stats = row.stats(key)
            cells += [_fmt(stats.mean, stats.std, metric_column(key)), _interval(stats, key)]
        lines.append(_with_setting(rows, row, cells))
    return _markdown(_with_setting(rows, None, header), lines)


def _interval(stats: SeedStats, key: str) -> str:
    if stats.low is None or stats.high is None:
        return "– (n=1)" if stats.n == 1 else "–"
    column = metric_column(key)
    return f"[{fmt_number(stats.low, column)}, {fmt_number(stats.high, column)}]"


def _row_cells(row: Row) -> list[str]:
    return [row.variant, "residual" if row.residual else "plain", str(row.depth)]


def _with_setting(rows: list[Row], row: Row | None, cells: list[str]) -> list[str]:
    """A setting column first when the rows differ in more than their model and depth."""
    if len({r.setting for r in rows}) <= 1:
        return cells
    return ["setting" if row is None else row.label, *cells]


def _markdown(header: list[str], lines: list[list[str]]) -> str:
    text = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(text + ["| " + " | ".join(cells) + " |" for cells in lines])


def _seeds_cell(row: Row) -> str:
    failed = len(row.runs) - len(row.ok_runs)
    return str(len(row.ok_runs)) + (f" ({failed} failed)" if failed else "")


def _summary_fields(metric: str) -> list[str]:
    """summary.csv's columns: the first ones never change (other tools read them); the
    95% intervals come after, then the chosen metric's columns when it is a new one."""
    fields = ["setting", "label", "model", "residual", "depth", "params", "seeds", "failed"]
    for column, _, _ in METRICS + CSV_ONLY:
        fields += [f"{column}_mean", f"{column}_std"]
    for key in dict.fromkeys([*ALWAYS_STATS, metric]):
        column = metric_column(key)
        if column not in COLUMNS:
            fields += [f"{column}_mean", f"{column}_std"]
        fields += [f"{column}_ci_low", f"{column}_ci_high"]
    return fields


def write_summary_csv(rows: list[Row], path: Path, metric: str = DEFAULT_METRIC) -> None:
    """One line per row with mean, std and 95% interval columns, for spreadsheets and plots."""
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=_summary_fields(metric))
        writer.writeheader()
        for row in rows:
            line: dict[str, Any] = {
                "setting": row.setting,
                "label": row.label,
                "model": row.variant,
                "residual": row.residual,
                "depth": row.depth,
                "params": row.params,
                "seeds": len(row.ok_runs),
                "failed": len(row.runs) - len(row.ok_runs),
            }
            for column, _, _ in METRICS + CSV_ONLY:
                line[f"{column}_mean"], line[f"{column}_std"] = row.mean_std(column)
            for key in dict.fromkeys([*ALWAYS_STATS, metric]):
                stats, column = row.stats(key), metric_column(key)
                line.update({f"{column}_mean": stats.mean, f"{column}_std": stats.std})
                line.update({f"{column}_ci_low": stats.low, f"{column}_ci_high": stats.high})
            writer.writerow(line)


def write_runs_csv(runs: list[Run], path: Path, metric: str = DEFAULT_METRIC) -> None:
    """One line per job, failed ones included, with the numbers straight from its results.json
    (and the chosen metric's, when it is not one of the usual columns)."""
    extra = [] if metric_column(metric) in COLUMNS else [metric_column(metric)]
    fields = ["job", "status", "model", "residual", "depth", "seed", "params", "setting", "label"]
    fields += [c for c, _, _ in METRICS + CSV_ONLY] + extra + ["duration_s", "error"]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        for run in runs:
            line = {
                "job": run.name,
                "status": run.results.get("status"),
                "model": run.variant,
                "residual": bool(run.results.get("residual")),
                "depth": run.depth,
                "seed": run.seed,
                "params": run.results.get("params"),
                "setting": run.setting,
                "label": run.results.get("label"),
                "duration_s": run.results.get("duration_s"),
                "error": run.results.get("error"),
            }
            line.update({c: get(run) for c, _, get in METRICS + CSV_ONLY})
            line.update({c: metric_getter(metric)(run) for c in extra})
            writer.writerow(line)
