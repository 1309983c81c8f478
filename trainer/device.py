"""The device a run uses and its mixed-precision context."""
from __future__ import annotations

import contextlib

import torch


def autocast(device, amp: str):
    """Mixed precision context: bf16 (CUDA or CPU) or fp16 (CUDA); "none" is full precision."""
    if amp == "none":
        return contextlib.nullcontext()
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[amp]
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for but CUDA is not available (use auto or cpu)")
    return torch.device(name)
