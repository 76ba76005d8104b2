"""The small interface every logger implements, and a group that survives a failing member."""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)


class RunLogger:
    """Subclasses override what they support; every method is optional."""

    name = "logger"

    def resume(self, step: int) -> None:
        """The run continues from a checkpoint taken after epoch ``step``; called before
        ``log_hparams``. Loggers continue their record instead of starting a second one."""

    def log_hparams(self, params: dict[str, Any]) -> None:
        """The run's hyperparameters, once, before training."""

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        """One epoch's scalars, named ``split/name``."""

    def log_figure(self, tag: str, figure: Any, step: int) -> None:
        """A matplotlib figure."""

    def log_summary(self, summary: dict[str, Any]) -> None:
        """The run's outcome (best and test metrics), once, at the end."""

    def finish(self, status: str) -> None:
        """Flush and close; called exactly once, also when the run failed."""


class LoggerGroup(RunLogger):
    """Fans calls out to several loggers; one that raises is reported once and dropped."""

    name = "group"

    def __init__(self, loggers: list[RunLogger] | None = None) -> None:
        self.loggers = list(loggers or [])

    def add(self, logger: RunLogger) -> None:
        self.loggers.append(logger)

    def _call(self, method: str, *args: Any) -> None:
        for logger in list(self.loggers):
            try:
                getattr(logger, method)(*args)
            except Exception as exc:  # a broken logger must never cost the run
                log.warning(
                    "logger %s failed in %s (%s: %s); it is turned off for the rest of this run",
                    logger.name,
                    method,
                    exc.__class__.__name__,
                    exc,
                )
                self.loggers.remove(logger)
                if method != "finish":
                    try:
                        logger.finish("failed")
                    except Exception:
                        pass

    def resume(self, step: int) -> None:
        self._call("resume", step)

    def log_hparams(self, params: dict[str, Any]) -> None:
        self._call("log_hparams", params)

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        self._call("log_metrics", metrics, step)

    def log_figure(self, tag: str, figure: Any, step: int) -> None:
        self._call("log_figure", tag, figure, step)

    def log_summary(self, summary: dict[str, Any]) -> None:
        self._call("log_summary", summary)

    def finish(self, status: str) -> None:
        self._call("finish", status)
        self.loggers.clear()
