"""Mixed precision on CUDA (bf16 where supported, else fp16 with a grad scaler); fp32 on CPU."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from reslab.errors import ConfigError

PRECISIONS = ("auto", "bf16", "fp16", "32")


@dataclass
class Precision:
    dtype: torch.dtype | None  # None: full fp32
    device_type: str

    @property
    def needs_scaler(self) -> bool:
        return self.dtype == torch.float16

    @property
    def name(self) -> str:
        return {None: "32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.dtype]

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)


def resolve_precision(precision: str | int, device: torch.device) -> Precision:
    precision = str(precision)
    if precision not in PRECISIONS:
        raise ConfigError(
            f"trainer.precision={precision!r} is invalid; choose one of {', '.join(PRECISIONS)}"
        )
    if device.type != "cuda" or precision == "32":
        return Precision(None, device.type)
    if precision == "fp16":
        return Precision(torch.float16, "cuda")
    if precision == "bf16" or torch.cuda.is_bf16_supported():
        return Precision(torch.bfloat16, "cuda")
    return Precision(torch.float16, "cuda")


def resolve_device(device: str) -> torch.device:
    """``auto`` picks CUDA when present; asking for CUDA without one is a config error."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and torch.cuda.is_available():
        # Named with its index, so results.json says which GPU a job ran on.
        return torch.device("cuda", torch.cuda.current_device())
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(
            f"trainer.device={device} but this machine has no CUDA GPU; use trainer.device=auto or cpu"
        )
    if device not in ("cpu",) and not device.startswith("cuda"):
        raise ConfigError(f"trainer.device={device!r} is invalid; choose auto, cpu or cuda")
    return torch.device(device)
