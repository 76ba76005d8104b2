"""The report's class activation maps: each depth's residual net above its plain twin.

For every depth with a plain/residual twin pair whose models end in global average pooling
(ResNet and its plain twin; not the lab's CNN with its fully connected head), the first
seed's pair is explained by ``scripts/explain.py``'s own code path (``method=cam
compare=<twin>``) and the figure is copied beside the report.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from reslab.errors import ReslabError
from reslab.report.load import Run

log = logging.getLogger(__name__)


def twin_cam_figures(
    pairs: list[tuple[Run, Run]], out: Path, n: int = 8
) -> list[tuple[Run, Run, Path]]:
    """Draw ``cam_d<depth>.png`` into ``out`` for each depth's first (plain, residual) pair
    that CAM can explain; returns the pairs drawn with their figure."""
    from reslab.explain.app import explain_run, parse_args

    drawn: list[tuple[Run, Run, Path]] = []
    depths_done: set = set()
    for plain, residual in sorted(pairs, key=lambda p: (p[0].depth or 0, p[0].seed or 0)):
        if plain.depth in depths_done:
            continue
        args = [f"run={residual.folder}", "method=cam", f"compare={plain.folder}", f"n={n}"]
        try:
            (written,) = explain_run(parse_args([*args, "log=false"]))
        except ReslabError as exc:  # a pair CAM cannot explain (no GAP head): no figure
            log.info("no CAM figure for %s / %s: %s", residual.name, plain.name, exc)
            continue
        target = out / f"cam_d{plain.depth}.png"
        shutil.copyfile(written, target)
        drawn.append((plain, residual, target))
        depths_done.add(plain.depth)
    return drawn
