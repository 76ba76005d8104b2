"""Turn SIGINT/SIGTERM/SIGUSR1/SIGUSR2 into a clean stop at the next step boundary.

The first signal asks the trainer to save ``last.pt`` and stop; a second SIGINT quits at
once. SIGUSR1/SIGUSR2 are what SLURM sends before a time limit or preemption (submitit asks
for USR2): a handler that was installed before ours (submitit's checkpoint-and-requeue) is
handed the signal by ``hand_over`` once ``last.pt`` and results.json are safely on disk.
"""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType
from typing import Any

log = logging.getLogger(__name__)

SIGNALS = tuple(
    getattr(signal, name)
    for name in ("SIGINT", "SIGTERM", "SIGUSR1", "SIGUSR2")
    if hasattr(signal, name)
)
# Signals a cluster scheduler sends; whoever listened before us (submitit) hears them after us.
CLUSTER_SIGNALS = tuple(getattr(signal, n) for n in ("SIGUSR1", "SIGUSR2") if hasattr(signal, n))


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

    def hand_over(self) -> None:
        """Pass a cluster signal on to the handler that was there before ours (submitit
        requeues the job, which then resumes from its own folder). Call it last: it may exit."""
        previous = self.previous.get(self.received) if self.received is not None else None
        if self.received in CLUSTER_SIGNALS and callable(previous):
            previous(self.received, None)

    @property
    def exit_code(self) -> int:
        """Shell convention: 128 + signal number."""
        return 128 + (self.received or signal.SIGINT)
