"""Visual channel-wise attention (VCW): which of the C feature channels of a segment matter.

Acts on the spatially weighted map, looking at it channel by channel:

    G = F^T                                 [N, P, C]: positions become the conv's channels
    H = tanh(BN(Conv1d_{P->1}(G)))          one score per channel
    B = C * softmax(Linear_{C->C}(H))       weights over channels, mean 1
    F' = F * B                              every position of channel c scaled by B_c

The caller then averages over positions to get one C-vector per segment.

The paper's Eq. 4-6 has no BN + tanh and no x C (the authors' code): `scorer_kind="linear"`,
`scale=False` (model config fields attention_scorer and attention_scale).
"""
from __future__ import annotations

import torch
import torch.nn as nn

from model.spatial_attention import scorer


class ChannelAttention(nn.Module):
    def __init__(self, channels: int = 512, positions: int = 16, scorer_kind: str = "bn_tanh",
                 scale: bool = True):
        super().__init__()
        self.channels, self.positions = channels, positions
        self.scale = float(channels) if scale else 1.0
        self.conv = scorer(positions, scorer_kind)
        self.fc = nn.Linear(channels, channels, bias=False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x [N, C, P] -> (x weighted per channel [N, C, P], weights [N, C])."""
        h = self.conv(x.transpose(1, 2)).squeeze(1)              # [N, C]
        weights = torch.softmax(self.fc(h), dim=1) * self.scale
        return x * weights.unsqueeze(2), weights
