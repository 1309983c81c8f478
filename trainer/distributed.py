"""Several processes (GPUs) with torchrun and DistributedDataParallel.

torchrun sets RANK, LOCAL_RANK and WORLD_SIZE in each process; without them everything here
is a no-op and training runs as one plain process. Backend: nccl on CUDA, gloo on CPU (so the
multi-process path is testable on a laptop). `vaanet train --gpus N` calls `launch` which
re-runs the same command line under torchrun with N processes on this machine.

Only rank 0 writes files. A write that fails there (a full disk, any exception) must not leave
the other processes waiting at their next collective: each rank-0-only section runs inside
`agreement`, which ends with one small all_reduce of every process's outcome, so that all of
them stop together (rank 0 with its own error, the others with `PeerFailed` and the same exit
status). The process group's timeout (`TIMEOUT_ENV`, default 30 minutes) is the last resort for
what no agreement covers: a collective that waits longer ends the run with an error.
"""
from __future__ import annotations

import atexit
import contextlib
import datetime
import os
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


TIMEOUT_ENV = "VAANET_DIST_TIMEOUT_MIN"   # minutes a collective may wait for the other processes
DEFAULT_TIMEOUT_MIN = 30.0


class PeerFailed(Exception):
    """Another process failed in a section covered by `agreement`; this one stops too, with
    `status` (the failed process's exit status: 3 disk full, 2 usage error, 1 anything else)."""

    def __init__(self, ranks: list[int], status: int):
        self.ranks, self.status = ranks, status
        super().__init__(f"process{'es' if len(ranks) > 1 else ''} {', '.join(map(str, ranks))} "
                         f"of the run failed (its message is above); this one stopped with it")


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
                                rank=info.rank, world_size=info.world_size, timeout=timeout())
    return info


def timeout() -> datetime.timedelta:
    """How long a collective waits for the other processes before the run ends with an error
    ($VAANET_DIST_TIMEOUT_MIN minutes, default 30): longer than any rank-0-only section (a
    checkpoint, the report), short enough that a process lost outside an `agreement` does not
    hold the others (and their GPUs) for long."""
    raw = os.environ.get(TIMEOUT_ENV, "")
    try:
        minutes = float(raw) if raw else DEFAULT_TIMEOUT_MIN
    except ValueError:
        minutes = -1.0
    if not minutes > 0:
        from trainer.errors import RunError
        raise RunError(f"{TIMEOUT_ENV}={raw!r}: give the minutes a collective may wait, a number > 0")
    return datetime.timedelta(minutes=minutes)


def rank() -> int:
    """This process's rank (0 when running alone; torchrun's RANK before the group is joined)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return int(os.environ.get("RANK", 0))


def world_size() -> int:
    """How many processes train together (1 when running alone)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


_agreed_status = 0  # once `agreement` has stopped every process: the status they exit with


def exit_status(e: BaseException) -> int:
    """The exit status the command line gives for `e` (cli.py: 3 disk full, 2 usage error)."""
    from trainer.errors import DiskFullError, RunError
    if isinstance(e, PeerFailed):
        return e.status
    return DiskFullError.EXIT_STATUS if isinstance(e, DiskFullError) else 2 if isinstance(e, RunError) else 1


@contextlib.contextmanager
def agreement(device=None):
    """Run a section that only rank 0 acts in (its files), then agree on how it went: one
    all_reduce of every process's exit status (0: fine). A failure anywhere stops every process:
    the failed one re-raises its own exception, the others raise PeerFailed with its status.
    Without it a failure on rank 0 would leave the others waiting at their next collective.
    Running alone, the section runs as it is. `device`: where the backend's tensors live
    (default: this process's CUDA device with nccl, else the CPU)."""
    global _agreed_status
    if world_size() == 1:
        yield
        return
    me, n = dist.get_rank(), dist.get_world_size()
    if device is None:
        device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"
    outcome = torch.zeros(n, dtype=torch.int32, device=device)
    try:
        yield
    except Exception as e:
        outcome[me] = _agreed_status = exit_status(e)
        dist.all_reduce(outcome)   # tell the others before leaving
        raise
    dist.all_reduce(outcome)
    failed = [r for r, status in enumerate(outcome.tolist()) if status]
    if failed:
        _agreed_status = int(outcome[failed[0]])
        raise PeerFailed(failed, _agreed_status)


def cleanup() -> None:
    """Leave the process group; after an agreed failure, leave together (`_leave_together`)."""
    global _agreed_status
    if dist.is_available() and dist.is_initialized():
        status, _agreed_status = _agreed_status, 0
        if status:
            _leave_together(status)
        dist.destroy_process_group()


LEAVE_WAIT = datetime.timedelta(seconds=60)  # at most, for a process that does not come


def _leave_together(status: int) -> None:
    """After an agreed failure every process exits with `status`, at the same moment, once rank 0
    has said what happened (its message, usage error or traceback: all printed before Python's
    exit handlers run). torchrun stops the remaining processes as soon as one has exited: were
    the others first, rank 0 would be stopped before it printed; were rank 0 much earlier, the
    others would end by SIGTERM rather than with the status. A handshake in the process group's
    key-value store: rank 0, at its exit, marks "said"; the others wait for it, mark that they
    leave and exit; rank 0 waits for their marks and exits too. A store gone with a process
    ends a wait at once (then torchrun stops whoever is left)."""
    with contextlib.suppress(Exception):  # a private name in torch: without it, no handshake
        store = dist.distributed_c10d._get_default_store()
        me, n = dist.get_rank(), dist.get_world_size()
        if me == 0:
            atexit.register(_rank0_leaves, store, n, status)
            return
        with contextlib.suppress(Exception):
            store.wait(["vaanet/said"], LEAVE_WAIT)
        store.set(f"vaanet/leaves-{me}", "1")
        _exit_now(status)


def _rank0_leaves(store, n: int, status: int) -> None:
    with contextlib.suppress(Exception):
        _flush()
        store.set("vaanet/said", "1")
        store.wait([f"vaanet/leaves-{r}" for r in range(1, n)], LEAVE_WAIT)
    _exit_now(status)


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()


def _exit_now(status: int) -> None:
    """Exit at once (no interpreter teardown, whose length differs between processes)."""
    _flush()
    os._exit(status)


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
    (the `cli` module by name, so this file need not import the command line). torchrun looks
    at its processes every second (not 0.1 s): processes that stop together (`_leave_together`)
    are then seen with their own exit status rather than some stopped by torchrun."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone",
            f"--nproc_per_node={nproc}", "--monitor-interval=1", "--module", "cli", *argv]


def launch(nproc: int, argv: list[str]) -> int:
    """Run `vaanet ARGV` under torchrun with `nproc` processes; returns the run's exit status.

    torchrun runs in this process (its `run`, as `python -m torch.distributed.run` would), so
    that the status of the processes reaches the caller: torchrun itself exits 1 with its own
    traceback whenever a process fails, which would turn a full disk (3) or a usage error (2)
    into 1. The status is rank 0's, or else the first failed process's (1 for a signal)."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run
    # one process per core group: keep each from grabbing every core
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    try:
        run(parse_args(torchrun_command(nproc, argv)[3:]))
    except ChildFailedError as e:
        return failed_status({rank: f.exitcode for rank, f in e.failures.items()},
                             e.get_first_failure()[0])
    except SignalException as e:  # Ctrl-C or a kill of the launcher: torchrun stopped the processes
        return 128 + int(e.sigval)
    return 0


def failed_status(exitcodes: dict[int, int], first: int) -> int:
    """The exit status of a run whose processes ended with `exitcodes` (rank: code; negative: a
    signal, usually torchrun stopping the rest after the `first` failure): rank 0's own, else the
    first failure's, else 1."""
    for rank in (0, first):
        if exitcodes.get(rank, 0) > 0:
            return exitcodes[rank]
    return 1
