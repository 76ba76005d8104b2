"""metrics.csv: one row per epoch, columns in first-seen order, rewritten atomically each epoch."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from reslab.tracking.base import RunLogger
from reslab.training.checkpoint import atomic_write


class MetricsCSV(RunLogger):
    name = "csv"

    def __init__(self, path: Path, rows: list[dict] | None = None) -> None:
        self.path = Path(path)
        self.rows: list[dict] = list(rows or [])

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        self.rows = [
            r for r in self.rows if int(r["epoch"]) < step
        ]  # a resumed run rewrites later epochs
        self.rows.append({"epoch": step, **metrics})
        self._write()

    def _write(self) -> None:
        columns: list[str] = []
        for row in self.rows:
            columns += [k for k in row if k not in columns]
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns)
        writer.writeheader()
        for row in self.rows:
            writer.writerow({k: _fmt(v) for k, v in row.items()})
        atomic_write(self.path, lambda tmp: tmp.write_text(buffer.getvalue()))

    @staticmethod
    def read(path: Path) -> list[dict]:
        with open(path, newline="") as f:
            return [{k: _parse(v) for k, v in row.items()} for row in csv.DictReader(f)]


def _fmt(value: object) -> object:
    return f"{value:.10g}" if isinstance(value, float) else value


def _parse(text: str) -> float | int | str:
    try:
        number = float(text)
    except ValueError:
        return text
    return int(number) if number.is_integer() and "." not in text and "e" not in text else number
