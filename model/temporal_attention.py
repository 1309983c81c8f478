"""Temporal attention over the segments of a video; one class serves both streams
(VT: visual, C = 512 over t segments; AT: audio, C = 256 over t_a segments).

    H = tanh(BN(Conv1d_{C->1}(X)))          X: [B, C, T], one score per segment
    A = ReLU(Linear_{T->T}(H))              non-negative weights, not normalised
    x = mean_T(X * A)                       one C-vector per video

ReLU rather than softmax is the paper's Eq. 8 (and the authors' code): segments are scored
independently. The Linear bias starting at 1.0 (so every segment begins with a positive weight),
the BN + tanh and the mean are the authors' code; the paper's Eq. 7-9 is a plain bilinear score
and a sum, E = sum_j p_j A_j: `scorer_kind="linear"`, `pool="sum"` (model config fields
attention_scorer and temporal_pool).
"""
from __future__ import annotations

import torch
import torch.nn as nn

from model.spatial_attention import scorer


class TemporalAttention(nn.Module):
    def __init__(self, channels: int, steps: int, bias_init: float | None = 1.0,
                 scorer_kind: str = "bn_tanh", pool: str = "mean"):
        super().__init__()
        if pool not in ("mean", "sum"):
            raise ValueError(f"temporal pool must be 'mean' or 'sum', got {pool!r}")
        self.channels, self.steps, self.pool = channels, steps, pool
        self.conv = scorer(channels, scorer_kind)
        self.fc = nn.Linear(steps, steps, bias=True)
        if bias_init is not None:
            nn.init.constant_(self.fc.bias, bias_init)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x [B, C, T] -> (weighted mean over segments [B, C], weights [B, T])."""
        h = self.conv(x).squeeze(1)                              # [B, T]
        weights = torch.relu(self.fc(h))
        weighted = x * weights.unsqueeze(1)
        return (weighted.sum(dim=2) if self.pool == "sum" else weighted.mean(dim=2)), weights
