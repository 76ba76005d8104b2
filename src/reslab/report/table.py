"""The comparison table: one row per model variant, depth and setting, mean ± std over seeds."""

from __future__ import annotations

import csv
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reslab.report.load import Run

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

    def values(self, column: str) -> list[float]:
        get = next(f for c, _, f in METRICS + CSV_ONLY if c == column)
        return [float(v) for r in self.ok_runs if (v := get(r)) is not None]

    def mean_std(self, column: str) -> tuple[float | None, float | None]:
        values = self.values(column)
        if not values:
            return None, None
        std = statistics.stdev(values) if len(values) > 1 else None
        return statistics.fmean(values), std


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


def _fmt(mean: float | None, std: float | None, column: str) -> str:
    if mean is None:
        return "–"
    if column in ("epochs", "best_epoch", "overfitting_epoch"):
        text = f"{mean:.1f}" if std is not None else f"{mean:.0f}"
        return text + (f" ± {std:.1f}" if std is not None else "")
    if column.endswith("acc"):
        return f"{100 * mean:.2f}" + (f" ± {100 * std:.2f}" if std is not None else "")
    return f"{mean:.4g}" + (f" ± {std:.2g}" if std is not None else "")


def markdown_table(rows: list[Row]) -> str:
    """The table users read: accuracies in percent, mean ± std (sample std) when seeds were swept."""
    show_setting = len({r.setting for r in rows}) > 1
    header = ["model", "shortcuts", "depth", "params", "seeds"]
    header += [h + (" (%)" if c.endswith("acc") else "") for c, h, _ in METRICS]
    if show_setting:
        header.insert(0, "setting")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [
            row.variant,
            "residual" if row.residual else "plain",
            str(row.depth),
            f"{row.params:,}" if row.params else "–",
            _seeds_cell(row),
        ]
        cells += [_fmt(*row.mean_std(c), c) for c, _, _ in METRICS]
        if show_setting:
            cells.insert(0, row.label)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _seeds_cell(row: Row) -> str:
    failed = len(row.runs) - len(row.ok_runs)
    return str(len(row.ok_runs)) + (f" ({failed} failed)" if failed else "")


def write_summary_csv(rows: list[Row], path: Path) -> None:
    """One line per row with mean and std columns, for spreadsheets and further plots."""
    fields = ["setting", "label", "model", "residual", "depth", "params", "seeds", "failed"]
    for column, _, _ in METRICS + CSV_ONLY:
        fields += [f"{column}_mean", f"{column}_std"]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
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
            writer.writerow(line)


def write_runs_csv(runs: list[Run], path: Path) -> None:
    """One line per job, failed ones included, with the numbers straight from its results.json."""
    fields = ["job", "status", "model", "residual", "depth", "seed", "params", "setting", "label"]
    fields += [c for c, _, _ in METRICS + CSV_ONLY] + ["duration_s", "error"]
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
            writer.writerow(line)
