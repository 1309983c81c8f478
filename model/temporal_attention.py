"""Temporal attention over the segments of a video; one class serves both streams
(VT: visual, C = 512 over t segments; AT: audio, C = 256 over t_a segments).

    H = tanh(BN(Conv1d_{C->1}(X)))          X: [B, C, T], one score per segment
    A = ReLU(Linear_{T->T}(H))              non-negative weights, not normalised
    x = mean_T(X * A)                       one C-vector per video

ReLU rather than softmax follows the authors' code: segments are scored independently, and
the Linear bias starts at 1.0 (visual) so every segment begins with a positive weight.
"""
from __future__ import annotations

import torch
import torch.nn as nn


class TemporalAttention(nn.Module):
    def __init__(self, channels: int, steps: int, bias_init: float | None = 1.0):
        super().__init__()
        self.channels, self.steps = channels, steps
        self.conv = nn.Sequential(
            nn.Conv1d(channels, 1, kernel_size=1, bias=False),
            nn.BatchNorm1d(1),
            nn.Tanh(),
        )
        self.fc = nn.Linear(steps, steps, bias=True)
        if bias_init is not None:
            nn.init.constant_(self.fc.bias, bias_init)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x [B, C, T] -> (weighted mean over segments [B, C], weights [B, T])."""
        h = self.conv(x).squeeze(1)                              # [B, T]
        weights = torch.relu(self.fc(h))
        return (x * weights.unsqueeze(1)).mean(dim=2), weights
