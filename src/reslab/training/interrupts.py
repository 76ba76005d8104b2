"""Turn SIGINT/SIGTERM/SIGUSR1 into a clean stop at the next step boundary.

The first signal asks the trainer to save ``last.pt`` and stop; a second SIGINT quits at
once. SIGUSR1 is what SLURM sends before a time limit: a handler that was installed before
ours (submitit's requeue) is called after the checkpoint is safely on disk.
"""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType
from typing import Any

log = logging.getLogger(__name__)

SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGUSR1") if hasattr(signal, name)
)


class GracefulStop:
    """Context manager that installs the handlers around ``trainer.fit``."""

    def __init__(self, trainer: Any) -> None:
        self.trainer = trainer
        self.previous: dict[int, Any] = {}
        self.received: int | None = None

    def __enter__(self) -> GracefulStop:
        if threading.current_thread() is threading.main_thread():
            for sig in SIGNALS:
                self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.trainer.stop_requested:
            if signum == signal.SIGINT:
                raise KeyboardInterrupt  # second Ctrl-C: no more waiting
            return
        self.received = signum
        self.trainer.stop_requested = name
        log.warning(
            "%s received: saving last.pt at the next step, then stopping (Ctrl-C again quits now)",
            name,
        )

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        previous = self.previous.get(self.received) if self.received is not None else None
        if self.received == getattr(signal, "SIGUSR1", None) and callable(previous):
            previous(self.received, None)  # e.g. submitit requeues the job now that last.pt exists

    @property
    def exit_code(self) -> int:
        """Shell convention: 128 + signal number."""
        return 128 + (self.received or signal.SIGINT)
