"""Data-parallel training on PyTorch's own engine: torchrun or SLURM tasks -> one process group.

A run is distributed when the launcher says so in the environment: torchrun sets
RANK/WORLD_SIZE/LOCAL_RANK/MASTER_ADDR/MASTER_PORT; a SLURM job with several tasks (srun,
or Hydra's submitit launcher with ``tasks_per_node``) sets SLURM_PROCID/SLURM_NTASKS/...,
which ``slurm_env`` maps onto the same names. Rank 0 alone writes the run folder, the
checkpoints and the dashboards; every rank trains on its own shard of each batch.
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from torch import nn

# torch is imported inside the functions that need it: train.py calls ``worker_overrides``
# before Hydra starts, and `train.py --help` should not pay for importing torch.


@dataclass(frozen=True)
class DistEnv:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


SINGLE = DistEnv()


def first_host(nodelist: str) -> str:
    """The first host of a SLURM node list: ``gpu[07-09,12],cpu1`` -> ``gpu07``."""
    head = re.match(r"([^,\[]+)(?:\[([^\]]+)\])?", nodelist.strip())
    if head is None:
        raise ValueError(f"cannot read the SLURM node list {nodelist!r}")
    prefix, ranges = head.group(1), head.group(2)
    if not ranges:
        return prefix
    return prefix + ranges.split(",")[0].split("-")[0]


def slurm_env(environ: Mapping[str, str]) -> dict[str, str]:
    """torch.distributed's variables derived from a SLURM job with several tasks.

    Empty when torchrun already set them (it wins) or when the job has a single task.
    MASTER_PORT is derived from the job id so that jobs sharing a node do not collide.
    """
    if "RANK" in environ or int(environ.get("SLURM_NTASKS", "1")) <= 1:
        return {}
    nodes = environ.get("SLURM_STEP_NODELIST") or environ.get("SLURM_JOB_NODELIST", "")
    return {
        "RANK": environ["SLURM_PROCID"],
        "WORLD_SIZE": environ["SLURM_NTASKS"],
        "LOCAL_RANK": environ.get("SLURM_LOCALID", "0"),
        "MASTER_ADDR": environ.get("MASTER_ADDR") or first_host(nodes or "localhost"),
        "MASTER_PORT": environ.get("MASTER_PORT")
        or str(15000 + int(environ.get("SLURM_JOB_ID", "0")) % 20000),
    }


def detect(environ: Mapping[str, str] | None = None) -> DistEnv:
    """Rank and world size from the launcher's environment, without touching any network."""
    environ = os.environ if environ is None else environ
    merged = {**environ, **slurm_env(environ)}
    return DistEnv(
        rank=int(merged.get("RANK", 0)),
        world_size=int(merged.get("WORLD_SIZE", 1)),
        local_rank=int(merged.get("LOCAL_RANK", 0)),
    )


def setup(device: torch.device) -> tuple[DistEnv, torch.device]:
    """Join the process group the launcher prepared; returns this rank's env and device.

    NCCL carries CUDA tensors and gloo CPU ones; a group that already exists is reused.
    """
    import torch
    import torch.distributed as dist

    env = detect()
    if not env.enabled:
        return SINGLE, device
    if device.type == "cuda":
        device = torch.device("cuda", env.local_rank % torch.cuda.device_count())
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        os.environ.update(slurm_env(os.environ))
        backend = "cpu:gloo,cuda:nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, device_id=device if device.type == "cuda" else None)
    return DistEnv(dist.get_rank(), dist.get_world_size(), env.local_rank), device


def teardown(env: DistEnv) -> None:
    import torch.distributed as dist

    if env.enabled and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(values: torch.Tensor) -> torch.Tensor:
    """Sum ``values`` over ranks in place (a no-op in a single process)."""
    import torch.distributed as dist

    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(values)
    return values


def all_gather_objects(value: Any) -> list[Any]:
    """Every rank's ``value``, in rank order (``[value]`` in a single process)."""
    import torch.distributed as dist

    if not (dist.is_initialized() and dist.get_world_size() > 1):
        return [value]
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, value)
    return gathered


def max_over_ranks(value: int) -> int:
    """The largest ``value`` of all ranks, through a CPU tensor (gloo): no GPU sync."""
    import torch
    import torch.distributed as dist

    if not (dist.is_initialized() and dist.get_world_size() > 1):
        return value
    flag = torch.tensor([value], dtype=torch.int64)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return int(flag.item())


def broadcast_module(module: nn.Module, src: int = 0) -> None:
    """Copy ``src``'s weights and buffers to every rank (e.g. after rank 0 read best.pt)."""
    import torch.distributed as dist

    if dist.is_initialized() and dist.get_world_size() > 1:
        for tensor in module.state_dict().values():
            dist.broadcast(tensor, src)


def gather_strided(values: torch.Tensor, world_size: int) -> torch.Tensor:
    """Undo a strided shard: rank r held items r, r+W, r+2W, ...; returns them in the original order."""
    import torch
    import torch.distributed as dist

    if world_size <= 1 or not dist.is_initialized():
        return values.cpu()
    parts: list[torch.Tensor | None] = [None] * world_size
    dist.all_gather_object(parts, values.cpu())
    out = torch.empty(sum(len(p) for p in parts), dtype=values.dtype)
    for r, part in enumerate(parts):
        out[r::world_size] = part
    return out


def wrap(model: nn.Module, env: DistEnv, device: torch.device, sync_batchnorm: bool) -> nn.Module:
    """DistributedDataParallel around ``model`` (already on ``device``); unchanged when not distributed."""
    if not env.enabled:
        return model
    from torch import nn

    if sync_batchnorm and device.type != "cuda":
        from reslab.errors import ConfigError

        raise ConfigError(
            "trainer.sync_batchnorm=true needs CUDA GPUs (PyTorch's SyncBatchNorm has no CPU "
            "kernel); set trainer.sync_batchnorm=false"
        )
    if sync_batchnorm:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def worker_overrides(environ: Mapping[str, str] | None = None) -> list[str]:
    """Hydra overrides for ranks other than 0: no run folder of their own, no .hydra copy.

    Each rank composes the config itself and ``${now:...}`` differs between processes, so the
    other ranks write nothing: their Hydra folder is a scratch directory removed at exit.
    """
    env = detect(environ)
    if env.is_main:
        return []
    scratch = tempfile.mkdtemp(prefix=f"reslab-rank{env.rank}-")
    atexit.register(shutil.rmtree, scratch, ignore_errors=True)
    return [f"hydra.run.dir={scratch}", f"hydra.sweep.dir={scratch}", "hydra.output_subdir=null"]
