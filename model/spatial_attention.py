"""Visual spatial attention (VS): which of the P positions of a segment's feature map matter.

    H = tanh(BN(Conv1d_{C->1}(F)))          F: [N, C, P], one score per position
    A = P * softmax(Linear_{P->P}(H))       weights over positions, mean 1
    F' = F * A                              every channel of position p scaled by A_p

The softmax is multiplied by P (as in the authors' code) so that uniform weights are all 1 and
the weighted map keeps the scale of the unweighted one.
"""
from __future__ import annotations

import torch
import torch.nn as nn


class SpatialAttention(nn.Module):
    def __init__(self, channels: int = 512, positions: int = 16):
        super().__init__()
        self.channels, self.positions = channels, positions
        self.conv = nn.Sequential(
            nn.Conv1d(channels, 1, kernel_size=1, bias=False),
            nn.BatchNorm1d(1),
            nn.Tanh(),
        )
        self.fc = nn.Linear(positions, positions, bias=False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x [N, C, P] -> (x weighted per position [N, C, P], weights [N, P])."""
        h = self.conv(x).squeeze(1)                              # [N, P]
        weights = torch.softmax(self.fc(h), dim=1) * self.positions
        return x * weights.unsqueeze(1), weights
