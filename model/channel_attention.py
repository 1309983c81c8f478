"""Visual channel-wise attention (VCW): which of the C feature channels of a segment matter.

Acts on the spatially weighted map, looking at it channel by channel:

    G = F^T                                 [N, P, C]: positions become the conv's channels
    H = tanh(BN(Conv1d_{P->1}(G)))          one score per channel
    B = C * softmax(Linear_{C->C}(H))       weights over channels, mean 1
    F' = F * B                              every position of channel c scaled by B_c

The caller then averages over positions to get one C-vector per segment.
"""
from __future__ import annotations

import torch
import torch.nn as nn


class ChannelAttention(nn.Module):
    def __init__(self, channels: int = 512, positions: int = 16):
        super().__init__()
        self.channels, self.positions = channels, positions
        self.conv = nn.Sequential(
            nn.Conv1d(positions, 1, kernel_size=1, bias=False),
            nn.BatchNorm1d(1),
            nn.Tanh(),
        )
        self.fc = nn.Linear(channels, channels, bias=False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x [N, C, P] -> (x weighted per channel [N, C, P], weights [N, C])."""
        h = self.conv(x.transpose(1, 2)).squeeze(1)              # [N, C]
        weights = torch.softmax(self.fc(h), dim=1) * self.channels
        return x * weights.unsqueeze(2), weights
