"""The training step's two reads of device values, both free of a host sync per step on
CUDA (one would stall the GPU's queue every step): the progress bar's numbers and the check
that the loss is finite."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from typing import Any

import torch

from reslab.errors import TrainingError


class NonFiniteLossError(TrainingError):
    """The loss became NaN or inf."""


class HostReadback:
    """Copy small device tensors to the host without waiting for the GPU.

    On CUDA each pushed value goes to pinned memory asynchronously and is handed back by a
    later ``push`` once its copy has finished (polled, never waited for, unless too many are
    outstanding); ``drain`` waits for the rest. On CPU a value is handed back at once.
    """

    def __init__(self, device: torch.device, max_pending: int = 64) -> None:
        self.cuda = device.type == "cuda"
        self.max_pending = max_pending
        self.pending: deque[tuple[Any, torch.Tensor, torch.cuda.Event]] = deque()

    def push(self, value: torch.Tensor, tag: Any = None) -> list[tuple[Any, torch.Tensor]]:
        """Hand in ``value``; returns the (tag, host value) pairs whose copies have finished."""
        if not self.cuda:
            return [(tag, value)]
        host = torch.empty(value.shape, dtype=value.dtype, pin_memory=True)
        host.copy_(value.detach(), non_blocking=True)
        event = torch.cuda.Event()
        event.record()
        self.pending.append((tag, host, event))
        ready = []
        while self.pending and (self.pending[0][2].query() or len(self.pending) > self.max_pending):
            tag_, host_, event_ = self.pending.popleft()
            event_.synchronize()
            ready.append((tag_, host_))
        return ready

    def drain(self) -> list[tuple[Any, torch.Tensor]]:
        ready = []
        while self.pending:
            tag, host, event = self.pending.popleft()
            event.synchronize()
            ready.append((tag, host))
        return ready


class FiniteGuard:
    """Stop on a NaN/inf loss without a host sync per step on CUDA.

    On CPU the check is cheap and immediate. On CUDA the flag is read back asynchronously and
    checked a few steps later; ``flush`` (end of epoch, before a checkpoint) waits for all.
    """

    def __init__(self, device: torch.device, lr: Callable[[], float]) -> None:
        self.cuda = device.type == "cuda"
        self.lr = lr
        self.readback = HostReadback(device)

    def check(self, loss: torch.Tensor, step: int) -> None:
        if not self.cuda:
            if not math.isfinite(loss.item()):
                raise non_finite_loss(step, self.lr())
            return
        self._raise_if_bad(self.readback.push(~torch.isfinite(loss.detach()), step))

    def flush(self) -> None:
        self._raise_if_bad(self.readback.drain())

    def _raise_if_bad(self, flags: list[tuple[Any, torch.Tensor]]) -> None:
        for step, flag in flags:
            if bool(flag):
                self.readback.drain()
                raise non_finite_loss(step, self.lr())


def non_finite_loss(step: int, lr: float) -> NonFiniteLossError:
    return NonFiniteLossError(
        f"loss became NaN/inf at step {step} (lr {lr:.3g}); lower optimizer.lr, set trainer.grad_clip=1.0, "
        "or use trainer.precision=32 if mixed precision overflowed"
    )
