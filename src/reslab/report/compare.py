"""`reslab-compare SWEEP [SWEEP ...]`: the table, figures and significance tests of a depth study.

Reads every job's results.json and metrics.csv, prints a markdown table and writes
report.md, summary.csv (one line per model/depth: mean, std and 95% interval over seeds),
runs.csv (one line per job), curves.png and depth.png into the first sweep folder (or
--out). ``--metric`` picks the number the seed statistics and the depth plot centre on.
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
from pathlib import Path

from reslab.figures import save_figure
from reslab.report.cam import twin_cam_figures
from reslab.report.figures import curves_figure, depth_figure, settings_figure
from reslab.report.load import ReportError, Run, load_run, load_runs, run_config, sweep_command
from reslab.report.seeds import PairedStats
from reslab.report.significance import (
    McNemar,
    TwinSeeds,
    compare_runs,
    seed_twins,
    step_pairs,
    twin_pairs,
)
from reslab.report.table import (
    DEFAULT_METRIC,
    Row,
    check_metric,
    fmt_number,
    group_rows,
    markdown_table,
    metric_column,
    metric_name,
    stats_table,
    write_runs_csv,
    write_summary_csv,
)

# Config values that describe a sweep's data and budget, shown above the table.
SETUP = [
    ("dataset", "dataset.name"),
    ("width", "width"),
    ("optimizer", "optimizer._target_"),
    ("lr", "optimizer.lr"),
    ("weight decay", "optimizer.weight_decay"),
    ("batch size", "dataset.batch_size"),
    ("scheduler", "scheduler._target_"),
    ("max epochs", "trainer.max_epochs"),
    ("early stopping patience", "trainer.early_stopping.patience"),
    ("monitor", "monitor"),
]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="reslab-compare",
        description="Compare the jobs of one or more sweeps: table, figures, McNemar's test.",
    )
    parser.add_argument(
        "sweeps", nargs="+", type=Path, help="sweep folders (outputs/multirun/<date>/<time>)"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="where to write the report (default: the first sweep folder)",
    )
    parser.add_argument(
        "--pair",
        nargs=2,
        action="append",
        default=[],
        metavar=("RUN_A", "RUN_B"),
        help="McNemar's test for two runs: job folder names, job numbers or paths (repeatable)",
    )
    parser.add_argument("--title", default=None, help="report heading")
    parser.add_argument(
        "--metric",
        default=DEFAULT_METRIC,
        help="the results.json number the seed statistics, the paired test over seeds and the "
        "depth plot centre on: test/acc (default), val/acc, test/f1_macro, final_train_loss, ...",
    )
    parser.add_argument(
        "--no-cam",
        dest="cam",
        action="store_false",
        help="skip the class activation maps of the plain/residual twins (drawn by default "
        "for models that end in global average pooling)",
    )
    return parser.parse_args(argv)


def find_run(spec: str, runs: list[Run]) -> Run:
    """A run named by path, by job folder name or by job number (``3`` for ``3_depth=...``)."""
    path = Path(spec)
    if (path / "results.json").is_file():
        return next((r for r in runs if r.folder.resolve() == path.resolve()), None) or load_run(
            path
        )
    matches = [r for r in runs if r.name == spec] or [
        r for r in runs if r.name.split("_", 1)[0] == spec
    ]
    if len(matches) == 1:
        return matches[0]
    names = ", ".join(r.name for r in runs[:6]) + (", ..." if len(runs) > 6 else "")
    what = "matches several runs" if matches else "is no run of these sweeps"
    raise ReportError(f"--pair {spec} {what}; give a job folder name or path, e.g. one of: {names}")


def setup_lines(runs: list[Run]) -> list[str]:
    ok = [r for r in runs if r.ok] or runs
    lines = []
    sources = sorted({str(r.results.get("data_source") or r.results.get("dataset")) for r in ok})
    lines.append(f"- data: {', '.join(sources)}")
    for label, key in SETUP[1:]:
        values = sorted({str(v) for r in ok if (v := run_config(r.folder, key)) is not None})
        if values:
            values = [v.rsplit(".", 1)[-1] if key.endswith("_target_") else v for v in values]
            lines.append(f"- {label}: {', '.join(values)}")
    total = sum(float(r.results.get("duration_s") or 0) for r in runs)
    failed = sum(not r.ok for r in runs)
    lines.append(f"- jobs: {len(runs)} ({failed} failed), {total / 60:.1f} min of training in all")
    return lines


def mcnemar_table(pairs: list[tuple[Run, Run, McNemar]]) -> str:
    lines = [
        "| A | B | depth A / B | test acc A (%) | test acc B (%) | only A right | only B right | χ² | p (exact) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for a, b, m in pairs:
        lines.append(
            f"| {_who(a)} (seed {a.seed}) | {_who(b)} (seed {b.seed}) | {a.depth} / {b.depth} | "
            f"{100 * m.acc_a:.2f} | {100 * m.acc_b:.2f} | {m.only_a} | {m.only_b} | "
            f"{m.statistic:.2f} | {_p(m.p_value)} |"
        )
    return "\n".join(lines)


def _who(run: Run) -> str:
    """A run's name in the tests: its label (a course rung) or its model variant."""
    return str(run.results.get("label") or run.variant)


def _p(p: float) -> str:
    return f"{p:.2g}" if p >= 1e-4 else f"{p:.1e}"


def figures(runs: list[Run], rows: list[Row], out: Path, metric: str = DEFAULT_METRIC) -> list[str]:
    """Save the figures into ``out``; returns the report's lines that show them. A sweep over
    settings at one depth (the course's ladder) gets its curves per setting; a depth study,
    its curves per model beside each other and its metrics against depth."""
    if len({r.setting for r in rows}) > 1 and len({r.depth for r in rows}) == 1:
        save_figure(settings_figure(rows), out / "curves.png")
        return [
            "![training (solid) and validation (dashed) loss and accuracy per epoch, one column "
            "per setting; dotted: where overfitting began](curves.png)",
            "",
        ]
    save_figure(curves_figure(runs), out / "curves.png")
    save_figure(depth_figure(rows, metric), out / "depth.png")
    against = " and ".join(dict.fromkeys(["final training loss", _plain_name(metric)]))
    return [
        "![training loss and validation accuracy per epoch, plain left, residual right](curves.png)",
        "",
        f"![{against} against depth, mean ± sample std over seeds](depth.png)",
        "",
    ]


def _plain_name(metric: str) -> str:
    return metric_name(metric).removesuffix(" (%)")


def cam_section(drawn: list[tuple[Run, Run, Path]]) -> list[str]:
    if not drawn:
        return []
    lines = [
        "## Where the twins look: class activation maps",
        "",
        "For each depth, the first seed's residual net (upper rows) and its plain twin (lower "
        "rows) on the same test images: the map of the class each predicted, upsampled to the "
        "image (red: strongest evidence), titled with that net's answer (red when wrong). Made "
        "by `scripts/explain.py run=<residual run> method=cam compare=<plain run>`.",
        "",
    ]
    for plain, residual, path in drawn:
        lines += [
            f"![CAM at depth {plain.depth}: {_who(residual)} (seed {residual.seed}) above "
            f"{_who(plain)} (seed {plain.seed})]({path.name})",
            "",
        ]
    return lines


TABLE_NOTE = (
    "Accuracies in %; mean ± sample std over seeds where seeds were swept. *best epoch*: the "
    "epoch with the best monitored metric, whose checkpoint was tested; *val acc* and *test "
    "acc* are both of that checkpoint. *final train loss*: the last epoch's mean training "
    "loss. *overfitting from epoch*: the last epoch before validation loss rose for "
    "`trainer.overfitting_epochs` epochs in a row while training loss fell (– : it did not). "
    "summary.csv also has the highest validation accuracy of any epoch (max_val_acc)."
)
STATS_NOTE = (
    "Over the finished seeds of each row: mean ± sample std (ddof=1) and the 95% interval "
    "mean ± t(0.975, n−1)·s/√n, where the mean over seeds would lie if the study were "
    "repeated with new seeds, assuming seed-to-seed variation is roughly normal; with 2 seeds "
    "t(0.975, 1) = 12.7, so the interval is very wide. A row with one seed shows its value and "
    "no interval (n=1): one seed says nothing about the spread. summary.csv has the bounds as "
    "*_ci_low and *_ci_high."
)
PAIRED_NOTE = (
    "Each plain net against its residual twin (same depth and setting), paired by seed: the "
    "difference residual − plain per seed, its mean with a 95% t-interval, and the two-sided "
    "p-value of the paired t-test over seeds (scipy.stats.ttest_rel). McNemar's test below "
    "asks whether one trained pair differs on this test set; this asks whether the difference "
    "holds across seeds, that is across the randomness of training. With few seeds it has "
    "little power; with one seed pair there is no test over seeds."
)
MCNEMAR_NOTE = (
    "*only A right* / *only B right* count the test images one model gets right and the other "
    "wrong; *p* is the exact two-sided binomial p-value. p < 0.05: the accuracy difference is "
    "unlikely to be chance."
)


def build_report(
    sweeps: list[Path],
    runs: list[Run],
    out: Path,
    pairs: list[tuple[str, str]],
    title: str | None,
    command: str,
    cam: bool = True,
    metric: str = DEFAULT_METRIC,
) -> str:
    """report.md's text; writes the figures into ``out`` on the way."""
    rows = group_rows(runs)
    default_title = "Depth study: " + ", ".join(f"{p.parent.name}/{p.name}" for p in sweeps)
    parts = [f"# {title or default_title}", ""]
    commands = [c for s in sweeps if (c := sweep_command(s))]
    if commands:
        parts += ["Made by:", "", "```bash", *commands, "```", ""]
    parts += [f"Report: `{command}`", "", *setup_lines(runs), ""]
    parts += ["## Results", "", markdown_table(rows, metric), "", TABLE_NOTE, ""]
    parts += ["## Seed statistics: 95% intervals", "", stats_table(rows, metric), ""]
    parts += [STATS_NOTE, ""]
    if any(r.history for r in runs):
        parts += figures(runs, rows, out, metric)
    parts += paired_section(seed_twins(runs, metric), metric)
    twins = [(a, b, compare_runs(a, b)) for a, b in twin_pairs(runs)]
    parts += mcnemar_section(
        "Plain vs residual twin: McNemar's test",
        "Each plain run (A) against its residual twin (B): same depth, seed and setting.",
        twins,
    )
    if cam and twins:
        parts += cam_section(twin_cam_figures([(a, b) for a, b, _ in twins], out))
    steps = [(a, b, compare_runs(a, b)) for a, b in step_pairs(rows)]
    parts += mcnemar_section(
        "Each setting against the one before it: McNemar's test",
        "Each setting's run (B) against the previous row's run of the same seed (A): did that "
        "step change which test images the net gets right?",
        steps,
    )
    chosen = [(find_run(x, runs), find_run(y, runs)) for x, y in pairs]
    parts += mcnemar_section(
        "Chosen pairs: McNemar's test",
        "\n".join(f"- A = `{a.name}`, B = `{b.name}`" for a, b in chosen),
        [(a, b, compare_runs(a, b)) for a, b in chosen],
    )
    return "\n".join(parts + failed_section(runs))


def paired_section(twins: list[TwinSeeds], metric: str) -> list[str]:
    if not twins:
        return []
    name = metric_name(metric).replace("(%)", "(points)")
    header = ["plain", "residual", "depth", "seed pairs", "plain: mean", "residual: mean"]
    header += [f"{name}: residual − plain, mean", "95% interval", "p (paired t)"]
    settings = len({t.plain.setting for t in twins}) > 1
    lines = ["| " + " | ".join(["setting"] * settings + header) + " |"]
    lines.append("|" + "---|" * (len(header) + settings))
    for twin in twins:
        s = twin.stats
        cells = [_who(twin.plain), _who(twin.residual), str(twin.plain.depth), str(s.n)]
        cells += [_mean(s.a, metric), _mean(s.b, metric), _signed(s.diff.mean, metric)]
        cells += [_diff_interval(s, metric), _paired_p(s)]
        setting = [twin.plain.setting or "(base)"] * settings
        lines.append("| " + " | ".join(setting + cells) + " |")
    heading = f"## Plain vs residual twin over seeds: paired t-test of {_plain_name(metric)}"
    return [heading, "", PAIRED_NOTE, "", *lines, ""]


def _mean(values: list[float], metric: str) -> str:
    return fmt_number(statistics.fmean(values), metric_column(metric))


def _signed(x: float | None, metric: str) -> str:
    """A difference with its sign; of accuracies, in percentage points."""
    if x is None:
        return "–"
    return f"{100 * x:+.2f}" if metric_column(metric).endswith("acc") else f"{x:+.3g}"


def _diff_interval(s: PairedStats, metric: str) -> str:
    if s.diff.low is None:
        return "– (one seed pair)"
    return f"[{_signed(s.diff.low, metric)}, {_signed(s.diff.high, metric)}]"


def _paired_p(s: PairedStats) -> str:
    if s.n < 2:
        return "– (one seed pair: no test over seeds)"
    if s.p_value is None:
        return "– (the same difference for every seed: no spread to test against)"
    return _p(s.p_value)


def mcnemar_section(heading: str, text: str, tests: list[tuple[Run, Run, McNemar]]) -> list[str]:
    if not tests:
        return []
    return [f"## {heading}", "", text, "", mcnemar_table(tests), "", MCNEMAR_NOTE, ""]


def failed_section(runs: list[Run]) -> list[str]:
    failed = [r for r in runs if not r.ok]
    if not failed:
        return []
    lines = [f"- `{r.name}`: {r.results.get('status')}: {r.results.get('error')}" for r in failed]
    return ["## Failed jobs", "", *lines, ""]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    command = " ".join(["python scripts/compare.py", *(shlex.quote(a) for a in argv)])
    try:
        runs = load_runs(args.sweeps)
        check_metric(args.metric, runs)
        out = args.out or args.sweeps[0]
        out.mkdir(parents=True, exist_ok=True)
        report = build_report(
            args.sweeps, runs, out, args.pair, args.title, command, args.cam, args.metric
        )
        rows = group_rows(runs)
        write_summary_csv(rows, out / "summary.csv", args.metric)
        write_runs_csv(runs, out / "runs.csv", args.metric)
        (out / "report.md").write_text(report)
    except ReportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(markdown_table(rows, args.metric))
    print(f"\nreport: {out / 'report.md'} (summary.csv, runs.csv and figures beside it)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
