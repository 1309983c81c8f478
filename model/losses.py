"""Classification losses: cross-entropy and polarity-consistent cross-entropy (PCCE).

PCCE (VAANet, AAAI 2020) punishes a prediction whose polarity (positive vs negative emotion)
differs from the label's more than one that only confuses two emotions of the same polarity:

    loss_i = CE_i * (1 + lambda)   if polarity[argmax logits_i] != polarity[label_i]
    loss_i = CE_i                  otherwise;          loss = mean_i loss_i

The polarity map comes from the dataset definition (1 = positive class, 0 = negative).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def _check_polarity(polarity) -> torch.Tensor:
    values = [int(p) for p in polarity]
    if not values or any(p not in (0, 1) for p in values):
        raise ValueError(f"polarity must be a non-empty list of 0 (negative) / 1 (positive) per "
                         f"class, got {list(polarity)}")
    return torch.tensor(values, dtype=torch.long)


class CrossEntropy(nn.Module):
    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, labels)


class PolarityConsistentCE(nn.Module):
    def __init__(self, polarity, lam: float = 0.5):
        super().__init__()
        if lam < 0:
            raise ValueError(f"PCCE lambda must be >= 0, got {lam}")
        self.lam = float(lam)
        self.register_buffer("polarity", _check_polarity(polarity), persistent=False)

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if logits.shape[1] != len(self.polarity):
            raise ValueError(f"logits have {logits.shape[1]} classes but the polarity map has "
                             f"{len(self.polarity)}")
        ce = F.cross_entropy(logits, labels, reduction="none")
        flipped = self.polarity[logits.argmax(dim=1)] != self.polarity[labels]
        return (ce * (1.0 + self.lam * flipped.to(ce.dtype))).mean()

    def extra_repr(self) -> str:
        return f"lam={self.lam}, polarity={self.polarity.tolist()}"


def build_loss(name: str, polarity=None, lam: float = 0.5) -> nn.Module:
    """'ce' or 'pcce'; PCCE needs the per-class polarity list of the dataset."""
    name = name.lower()
    if name == "ce":
        return CrossEntropy()
    if name == "pcce":
        if polarity is None:
            raise ValueError("PCCE needs the polarity of every class (from the dataset definition)")
        return PolarityConsistentCE(polarity, lam)
    raise ValueError(f"unknown loss {name!r}: choose 'ce' or 'pcce'")
