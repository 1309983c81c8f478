"""One entry point for every architecture: build_model(cfg) -> VAANet or DFAN by cfg.arch.

    model = build_model(preset("dfan-demo"))
    model = build_model(saved_run["model_config"])      # a dict, as saved beside a checkpoint

Both networks take (visual, audio) and return model.vaanet.VAANetOutput, so the trainer,
evaluation and ablation code need not know which one they hold.
"""
from __future__ import annotations

import torch.nn as nn

from model.config import ARCHS, ModelConfig


def build_model(cfg: ModelConfig | dict) -> nn.Module:
    """The network of a ModelConfig (or of its to_dict() form): arch "vaanet" or "dfan"."""
    if isinstance(cfg, dict):
        cfg = ModelConfig.from_dict(cfg)
    if not isinstance(cfg, ModelConfig):
        raise TypeError(f"build_model expects a ModelConfig or its dict, got {type(cfg).__name__}")
    if cfg.arch == "vaanet":
        from model.vaanet import VAANet
        return VAANet(cfg)
    if cfg.arch == "dfan":
        from model.dfan import DFAN
        return DFAN(cfg)
    raise ValueError(f"unknown arch {cfg.arch!r}: expected one of {', '.join(ARCHS)}")
