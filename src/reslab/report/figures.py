"""The report's figures: curves per depth, plain beside residual (He et al. Fig. 6), and metrics vs depth."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import FixedLocator, NullLocator, ScalarFormatter  # noqa: E402

from reslab.report.load import Run  # noqa: E402
from reslab.report.table import DEFAULT_METRIC, Row, metric_column, metric_name  # noqa: E402

CURVES = [("train/loss", "training loss", True), ("val/acc", "validation accuracy", False)]


def _variants(runs: list[Run]) -> list[str]:
    """Plain variants first, so the plain net sits left of its residual twin."""
    seen: dict[str, bool] = {}
    for run in runs:
        seen.setdefault(run.variant, bool(run.results.get("residual")))
    return sorted(seen, key=lambda v: (seen[v], v))


def curves_figure(runs: list[Run]) -> Figure:
    """Training loss (log scale) and validation accuracy per epoch; one colour per depth, one line per run."""
    runs = [r for r in runs if r.history]
    variants = _variants(runs)
    depths = sorted({r.depth for r in runs if r.depth is not None})
    cmap = plt.get_cmap("viridis")
    colour = {d: cmap(i / max(1, len(depths) - 1) * 0.9) for i, d in enumerate(depths)}
    fig, axes = plt.subplots(
        len(CURVES),
        max(1, len(variants)),
        figsize=(4.6 * max(1, len(variants)), 3.4 * len(CURVES)),
        sharex=True,
        sharey="row",
        squeeze=False,
    )
    for col, variant in enumerate(variants):
        mine = sorted((r for r in runs if r.variant == variant), key=lambda r: r.depth or 0)
        for row, (key, label, log_scale) in enumerate(CURVES):
            ax = axes[row][col]
            labelled: set = set()
            for run in mine:
                points = _curve(run, key)
                if not points:
                    continue
                xs, ys = zip(*points)
                ax.plot(
                    xs,
                    ys,
                    color=colour.get(run.depth, "grey"),
                    lw=1.6,
                    alpha=0.9,
                    label=None if run.depth in labelled else f"depth {run.depth}",
                )
                labelled.add(run.depth)
            if log_scale:
                ax.set_yscale("log")
            if row == 0:
                ax.set_title(variant)
            if col == 0:
                ax.set_ylabel(label)
            if row == len(CURVES) - 1:
                ax.set_xlabel("epoch")
            ax.grid(alpha=0.3, which="both")
    if variants:
        axes[0][-1].legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    return fig


def depth_figure(rows: list[Row], metric: str = DEFAULT_METRIC) -> Figure:
    """Final training loss and ``metric`` (test accuracy by default) against depth, mean ±
    sample std over seeds, a line per variant; one panel when the metric is the loss."""
    keys = list(dict.fromkeys(["final_train_loss", metric]))
    fig, axes = plt.subplots(1, len(keys), figsize=(5 * len(keys), 3.8), squeeze=False)
    lines: dict[tuple[str, str], list[Row]] = {}
    for row in rows:
        lines.setdefault((row.variant, row.setting), []).append(row)
    settings = {s for _, s in lines}
    for (variant, setting), group in sorted(
        lines.items(), key=lambda kv: (kv[1][0].residual, kv[0])
    ):
        group = sorted(
            (r for r in group if r.ok_runs and r.depth is not None), key=lambda r: r.depth
        )
        label = variant if len(settings) == 1 else f"{variant} {setting}".strip()
        for ax, key in zip(axes[0], keys):
            _depth_line(ax, group, key, label, "-" if group and group[0].residual else "--")
    depths = sorted({r.depth for r in rows if r.depth is not None})
    for ax, key in zip(axes[0], keys):
        _depth_axes(ax, key, depths)
    fig.tight_layout()
    return fig


def _depth_line(ax: Axes, group: list[Row], key: str, label: str, style: str) -> None:
    # A row whose runs lack the metric is left out rather than drawn at zero.
    points = [(r.depth, r.stats(key)) for r in group]
    points = [(d, s) for d, s in points if s.mean is not None]
    if not points:
        return
    scale = 100.0 if metric_column(key).endswith("acc") else 1.0
    ax.errorbar(
        [d for d, _ in points],
        [scale * s.mean for _, s in points],
        yerr=[scale * (s.std or 0.0) for _, s in points],
        fmt="o" + style,
        capsize=3,
        label=label,
    )


def _depth_axes(ax: Axes, key: str, depths: list[int]) -> None:
    if key.endswith("loss"):
        ax.set_yscale("log")
    ax.set_ylabel(metric_name(key))
    ax.set_xlabel("depth (weight layers)")
    if depths and min(depths) > 0:
        ax.set_xscale("log", base=2)
        ax.xaxis.set_major_locator(FixedLocator(depths))
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_locator(NullLocator())
    ax.grid(alpha=0.3, which="both")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)


LADDER_PANELS = [("loss", "loss (log)", True), ("acc", "accuracy", False)]


def settings_figure(rows: list[Row]) -> Figure:
    """One column per setting (a course rung, say): training (solid) and validation (dashed)
    loss and accuracy per epoch, every seed a line; a dotted line where overfitting began."""
    rows = [r for r in rows if any(run.history for run in r.runs)]
    fig, axes = plt.subplots(
        len(LADDER_PANELS),
        max(1, len(rows)),
        figsize=(3.4 * max(1, len(rows)), 3.0 * len(LADDER_PANELS)),
        sharex=True,
        sharey="row",
        squeeze=False,
    )
    for col, row in enumerate(rows):
        for line, (metric, label, log_scale) in enumerate(LADDER_PANELS):
            ax = axes[line][col]
            for run in row.runs:
                for split, style in (("train", "-"), ("val", "--")):
                    points = _curve(run, f"{split}/{metric}")
                    if points:
                        ax.plot(
                            *zip(*points),
                            style,
                            color=f"C{0 if split == 'train' else 1}",
                            lw=1.5,
                            label=split if run is row.runs[0] else None,
                        )
                onset = run.results.get("overfitting_epoch")
                if onset:
                    ax.axvline(onset, color="grey", ls=":", lw=1)
            if log_scale:
                ax.set_yscale("log")
            if line == 0:
                ax.set_title(row.label, fontsize=9)
            if col == 0:
                ax.set_ylabel(label)
            if line == len(LADDER_PANELS) - 1:
                ax.set_xlabel("epoch")
            ax.grid(alpha=0.3, which="both")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def _curve(run: Run, key: str) -> list[tuple[int, float]]:
    return [
        (h["epoch"], float(h[key]))
        for h in run.history
        if isinstance(h.get(key), (int, float)) and not isinstance(h.get(key), bool)
    ]
