"""The device a run uses, its mixed-precision context and cuDNN's autotuner."""
from __future__ import annotations

import contextlib

import torch

from trainer.run_config import RunError


def autocast(device, amp: str):
    """Mixed precision context: bf16 (CUDA or CPU) or fp16 (CUDA); "none" is full precision."""
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
