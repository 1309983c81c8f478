"""Several processes (GPUs) with torchrun and DistributedDataParallel.

torchrun sets RANK, LOCAL_RANK and WORLD_SIZE in each process; without them everything here
is a no-op and training runs as one plain process. Backend: nccl on CUDA, gloo on CPU (so the
multi-process path is testable on a laptop). `vaanet train --gpus N` calls `launch` which
re-runs the same command line under torchrun with N processes on this machine.
"""
from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class DistInfo:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def under_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def setup(device_kind: str) -> DistInfo:
    """Join the process group when started by torchrun; `device_kind` is "cuda" or "cpu"."""
    if not under_torchrun():
        return DistInfo()
    info = DistInfo(int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", 0)),
                    int(os.environ["WORLD_SIZE"]))
    if device_kind == "cuda":
        torch.cuda.set_device(info.local_rank)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device_kind == "cuda" else "gloo",
                                rank=info.rank, world_size=info.world_size)
    return info


def rank() -> int:
    """This process's rank (0 when running alone; torchrun's RANK before the group is joined)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return int(os.environ.get("RANK", 0))


def world_size() -> int:
    """How many processes train together (1 when running alone)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(values: list[float], device) -> list[float]:
    """Sum a few numbers over all processes (identity when running alone)."""
    if not (dist.is_available() and dist.is_initialized()):
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.tolist()


def all_gather_object(obj) -> list:
    """Every process's `obj`, in rank order ([obj] when running alone)."""
    if not (dist.is_available() and dist.is_initialized()):
        return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def sync_batchnorm(model: torch.nn.Module, device) -> torch.nn.Module:
    """`model` with every BatchNorm replaced by SyncBatchNorm (same parameters and buffers), so
    that with N processes the statistics cover the global batch rather than 1/N of it. NCCL only:
    PyTorch's SyncBatchNorm has no CPU (gloo) implementation, so elsewhere this is refused."""
    from trainer.errors import RunError
    if torch.device(device).type != "cuda":
        raise RunError("--sync-bn needs CUDA processes: SyncBatchNorm has no CPU implementation")
    return torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)


def wrap(model: torch.nn.Module, info: DistInfo, device, sync_bn: bool = False) -> torch.nn.Module:
    """DistributedDataParallel around `model` when several processes run, else `model`
    (`sync_bn`: SyncBatchNorm first, see `sync_batchnorm`; one process needs none).
    find_unused_parameters=False: every configuration uses all of its trainable parameters in
    every step (an ablation builds only the streams and attentions it uses; the frozen parts
    have no gradient), so DDP need not traverse the autograd graph after each forward to find
    unused ones. A parameter left out by a future change makes DDP fail loudly at its next step."""
    if not info.enabled:
        return model
    if sync_bn:  # in place for every BatchNorm below the root: `model` stays the same object
        model = sync_batchnorm(model, device)
    from torch.nn.parallel import DistributedDataParallel as DDP
    ids = [info.local_rank] if torch.device(device).type == "cuda" else None
    return DDP(model, device_ids=ids, find_unused_parameters=False)


def torchrun_command(nproc: int, argv: list[str]) -> list[str]:
    """The torchrun command line that runs `vaanet ARGV` in `nproc` processes on this machine
    (the `cli` module by name, so this file need not import the command line)."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone",
            f"--nproc_per_node={nproc}", "--module", "cli", *argv]


def launch(nproc: int, argv: list[str]) -> int:
    """Run `vaanet ARGV` under torchrun with `nproc` processes; returns its exit code."""
    env = dict(os.environ)
    # one process per core group: keep each from grabbing every core
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    return subprocess.call(torchrun_command(nproc, argv), env=env)
