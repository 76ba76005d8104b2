"""TensorBoard: per-epoch scalars, figures and an HParams entry, all in ``<run>/tensorboard/``.

The HParams entry is written by hand into the run's own event file rather than through
``SummaryWriter.add_hparams``, which opens a second, timestamped sub-run. Only the session
start and end records are written, not an experiment record: TensorBoard then builds the
HParams table from every run under ``--logdir`` (the union of their hyperparameters), where
one experiment record per run would make it pick one run's columns arbitrarily.

A resumed run appends a new event file to the same folder, opened with ``purge_step``:
TensorBoard then drops what the stopped run logged after its checkpoint, so every epoch
appears once.
"""

from __future__ import annotations

import math
import numbers
from pathlib import Path
from typing import Any

from reslab.statuses import FINISHED
from reslab.tracking.base import RunLogger


def summary_scalars(summary: dict[str, Any]) -> dict[str, float]:
    """The run's outcome as HParams metrics: ``test/*`` as named, the best epoch's ``val/*``
    under ``best/val/*`` so they do not overwrite the per-epoch ``val/*`` curves."""
    scalars: dict[str, float] = {}
    for key, value in summary.items():
        if not _is_number(value):
            continue
        if key.startswith("test/"):
            scalars[key] = float(value)
        elif key.startswith("val/"):
            scalars[f"best/{key}"] = float(value)
        elif key in ("best_epoch", "epochs"):
            scalars[key] = float(value)
    return scalars


class TensorBoardLogger(RunLogger):
    name = "tensorboard"

    def __init__(self, log_dir: Path, *, figures: bool = True) -> None:
        self.log_dir = Path(log_dir)
        self.figures = figures
        self.writer = None
        self.last_step = 0
        self.purge_step: int | None = None

    def resume(self, step: int) -> None:
        if self.writer is not None:
            raise RuntimeError("resume() must come before anything is logged")
        self.purge_step = step + 1  # epochs after the checkpoint are written again
        self.last_step = step

    def _writer(self):
        if self.writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self.log_dir.mkdir(parents=True, exist_ok=True)
            self.writer = SummaryWriter(log_dir=str(self.log_dir), purge_step=self.purge_step)
        return self.writer

    def log_hparams(self, params: dict[str, Any]) -> None:
        from torch.utils.tensorboard.summary import hparams

        values = {k: _hparam_value(v) for k, v in params.items()}
        _, session_start, _ = hparams(values, {})
        writer = self._writer()
        writer.file_writer.add_summary(session_start)
        writer.flush()

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        writer = self._writer()
        for key, value in metrics.items():
            if _is_number(value):
                writer.add_scalar(key, float(value), step)
        writer.flush()  # once per epoch: the dashboard is live and a crash loses nothing
        self.last_step = step

    def log_figure(self, tag: str, figure: Any, step: int) -> None:
        if self.figures:
            self._writer().add_figure(tag, figure, step, close=False)

    def log_summary(self, summary: dict[str, Any]) -> None:
        writer = self._writer()
        step = int(summary.get("epochs") or self.last_step)
        for key, value in summary_scalars(summary).items():
            writer.add_scalar(key, value, step)

    def finish(self, status: str) -> None:
        if self.writer is None:
            return
        self.writer.file_writer.add_summary(_session_end(status in FINISHED))
        self.writer.close()
        self.writer = None


def _is_number(value: Any) -> bool:
    return (
        isinstance(value, numbers.Real)
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    )


def _hparam_value(value: Any) -> float | str:
    """HParams takes numbers and strings; booleans and None read better as text."""
    if isinstance(value, bool) or value is None:
        return str(value).lower()
    if isinstance(value, numbers.Real):
        return float(value)
    return str(value)


def _session_end(success: bool):
    """The session-end record with the run's status (torch's helper always says success)."""
    from tensorboard.compat.proto.summary_pb2 import Summary, SummaryMetadata
    from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2

    status = api_pb2.Status.Value("STATUS_SUCCESS" if success else "STATUS_FAILURE")
    content = plugin_data_pb2.HParamsPluginData(
        session_end_info=plugin_data_pb2.SessionEndInfo(status=status),
        version=metadata.PLUGIN_DATA_VERSION,
    )
    meta = SummaryMetadata(
        plugin_data=SummaryMetadata.PluginData(
            plugin_name=metadata.PLUGIN_NAME, content=content.SerializeToString()
        )
    )
    return Summary(value=[Summary.Value(tag=metadata.SESSION_END_INFO_TAG, metadata=meta)])
