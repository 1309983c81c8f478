"""Visual spatial attention (VS): which of the P positions of a segment's feature map matter.

    H = tanh(BN(Conv1d_{C->1}(F)))          F: [N, C, P], one score per position
    A = P * softmax(Linear_{P->P}(H))       weights over positions, mean 1
    F' = F * A                              every channel of position p scaled by A_p

The softmax is multiplied by P (as in the authors' code) so that uniform weights are all 1 and
the weighted map keeps the scale of the unweighted one.

The paper's Eq. 2-3 is the plain bilinear score H = W_S1 (W_S2 F^T)^T and A = softmax(H): the
BN + tanh and the x P are the authors' code. `scorer="linear"` drops BN + tanh, `scale=False`
the x P (model config fields attention_scorer and attention_scale).
"""
from __future__ import annotations

import torch
import torch.nn as nn


def scorer(in_channels: int, kind: str = "bn_tanh") -> nn.Sequential:
    """The 1-score-per-item projection of every attention: Conv1d(k=1, no bias), then BN + tanh
    ("bn_tanh", the authors' code) or nothing more ("linear", the paper's equations)."""
    if kind not in ("bn_tanh", "linear"):
        raise ValueError(f"attention scorer must be 'bn_tanh' or 'linear', got {kind!r}")
    layers = [nn.Conv1d(in_channels, 1, kernel_size=1, bias=False)]
    if kind == "bn_tanh":
        layers += [nn.BatchNorm1d(1), nn.Tanh()]
    return nn.Sequential(*layers)


class SpatialAttention(nn.Module):
    def __init__(self, channels: int = 512, positions: int = 16, scorer_kind: str = "bn_tanh",
                 scale: bool = True):
        super().__init__()
        self.channels, self.positions = channels, positions
        self.scale = float(positions) if scale else 1.0
        self.conv = scorer(channels, scorer_kind)
        self.fc = nn.Linear(positions, positions, bias=False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x [N, C, P] -> (x weighted per position [N, C, P], weights [N, P])."""
        h = self.conv(x).squeeze(1)                              # [N, P]
        weights = torch.softmax(self.fc(h), dim=1) * self.scale
        return x * weights.unsqueeze(1), weights
