"""The device a run uses, its mixed-precision context, and per-device choices: loader workers
per process, channels-last 3D convolutions, cuDNN's autotuner, pinned memory and the shared-memory check."""
from __future__ import annotations

import contextlib
import logging
import os

import torch

from trainer.errors import RunError

log = logging.getLogger(__name__)

AMP_CHOICES = ("auto", "none", "bf16", "fp16")
MAX_WORKERS = 16       # beyond this a rank's workers only add start-up time and shared memory
SMALL_SHM = 1 << 30    # /dev/shm smaller than this: a container's default (64 MB) or close to it


def autocast(device, amp: str):
    """Mixed precision context: bf16 (CUDA or CPU) or fp16 (CUDA); "none" is full precision;
    "auto" is `resolve_amp`'s choice for `device`."""
    amp = resolve_amp(amp, device)
    if amp == "none":
        return contextlib.nullcontext()
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[amp]
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)


@contextlib.contextmanager
def cudnn_autotune(enabled: bool):
    """cuDNN's autotuner (torch.backends.cudnn.benchmark) on or off inside the block, restored
    after. Training turns it on (CUDA: the fastest convolution algorithm for each input shape);
    evaluation turns it off, so that the algorithm, and with it the last bits of every
    probability, does not depend on timing: the same checkpoint gives the same files."""
    saved = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = enabled
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = saved


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RunError("--device cuda was asked for but CUDA is not available (use auto or cpu)")
    return torch.device(name)


def device_kind(device) -> str:
    """"cuda" or "cpu" for a device name ("auto" included) or torch.device, without failing."""
    if isinstance(device, str) and device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(device).type


def resolve_amp(amp: str, device) -> str:
    """The precision a run uses. "auto": bf16 on a CUDA device that supports it (Ampere and
    later: half the activation memory and the tensor cores' bf16 rate, without fp16's loss
    scaling), full precision otherwise (CPU autocast is slower than fp32 on most CPUs)."""
    if amp not in AMP_CHOICES:
        raise ValueError(f"amp must be one of {', '.join(AMP_CHOICES)}; got {amp!r}")
    if amp != "auto":
        return amp
    if device_kind(device) == "cuda" and torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return "bf16"
    return "none"


def default_workers(cores: int | None = None, ranks: int = 1, cap: int = MAX_WORKERS) -> int:
    """Loader workers per process: the cores left once every rank's main process has one,
    shared among the ranks, at least 1 and at most `cap`. 16 cores: 15 for one rank, 3 each for
    4 ranks, 1 each for 8; 2 cores: 1."""
    cores = cores if cores is not None else (os.cpu_count() or 1)
    ranks = max(1, int(ranks))
    return max(1, min(cap, (cores - ranks) // ranks))


def default_workers_here() -> int:
    """`default_workers` for this machine and this process's world size (torchrun's WORLD_SIZE)."""
    return default_workers(os.cpu_count() or 1, int(os.environ.get("WORLD_SIZE", "1") or 1))


def to_channels_last(model: torch.nn.Module, device, enabled: bool = True) -> torch.nn.Module:
    """`channels_last_3d(model)` when `enabled` and `device` is CUDA (cuDNN's tensor-core 3D
    kernels work in NDHWC); elsewhere `model` unchanged. Returns `model`."""
    if enabled and device_kind(device) == "cuda":
        channels_last_3d(model)
    return model


def channels_last_3d(model: torch.nn.Module) -> torch.nn.Module:
    """Store the weight of every 3D convolution channels-last (torch.channels_last_3d), in
    place: convolutions then produce channels-last activations, and the layers after them
    (BatchNorm, ReLU, pooling) keep that layout. 2D convolutions (the audio ResNet) are left."""
    for m in model.modules():
        if isinstance(m, torch.nn.Conv3d):
            m.to(memory_format=torch.channels_last_3d)
    return model


def is_channels_last(model: torch.nn.Module) -> bool:
    """Whether the model's first 3D convolution holds its weight channels-last."""
    for m in model.modules():
        if isinstance(m, torch.nn.Conv3d):
            return m.weight.is_contiguous(memory_format=torch.channels_last_3d) and \
                not m.weight.is_contiguous()
    return False


def should_pin(device=None) -> bool:
    """Pin loader batches only for a CUDA device: pinned memory makes the host->device copy
    asynchronous. `device` None: pin when this process already uses CUDA (the model was moved
    there), so a `--device cpu` run on a machine with a GPU does not pin."""
    if device is not None:
        return device_kind(device) == "cuda"
    return torch.cuda.is_available() and torch.cuda.is_initialized()


def shm_warning(total_bytes: int | None, needed_bytes: int = 0) -> str | None:
    """The warning for a /dev/shm of `total_bytes` (None: no /dev/shm), or None when it is
    large enough for `needed_bytes` and at least 1 GB."""
    if total_bytes is None or (total_bytes >= SMALL_SHM and total_bytes >= needed_bytes):
        return None
    need = f"; the loader's batches in flight need about {needed_bytes / 2**20:.0f} MB" if needed_bytes else ""
    return (f"/dev/shm holds only {total_bytes / 2**20:.0f} MB{need}: loader workers hand their "
            "batches over in shared memory and may die with a bus error. In Docker start the "
            "container with --shm-size=20g (or --ipc=host); or use --workers 0")


def check_shm(needed_bytes: int = 0, path: str = "/dev/shm") -> str | None:
    """Log (and return) `shm_warning` for this machine's /dev/shm."""
    try:
        st = os.statvfs(path)
        total = st.f_blocks * st.f_frsize
    except OSError:  # no /dev/shm (macOS, Windows): torch uses other shared memory there
        return None
    msg = shm_warning(total, needed_bytes)
    if msg:
        log.warning(msg)
    return msg
