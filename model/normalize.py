"""Input normalisation, tied to the weights in use and applied on the device.

Shards and the loader keep frames as uint8 0..255; the model turns them into what its backbone
was trained on with the two steps of the original transforms (ToTensor(norm_value), Normalize):

    y = (x / norm_value - mean) / std        per RGB channel

    kind       norm_value  mean                            std                    source
    hara       1           ActivityNet (114.7748,          1                      Hara's Kinetics
                           107.7354, 99.4750)                                     3D ResNets
    official   255         100/255                         1                      authors' VAANet code
    imagenet   255         (0.485, 0.456, 0.406)           (0.229, 0.224, 0.225)  torchvision

The steps run in this order (not folded into one multiply-add) so that the values are the ones
the original transforms give, to the last bit; steps with norm_value 1 or std 1 are skipped,
which changes nothing since dividing by 1 is exact.
"""
from __future__ import annotations

import torch
import torch.nn as nn

KINDS = {
    "hara": (1.0, (114.7748, 107.7354, 99.4750), (1.0, 1.0, 1.0)),
    "official": (255.0, (100 / 255,) * 3, (1.0, 1.0, 1.0)),
    "imagenet": (255.0, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}


class InputNorm(nn.Module):
    """Normalise 0..255 RGB input (uint8 or float) along `channel_dim`.

    The default channel_dim -4 is the RGB axis of both a clip batch [N, 3, k, H, W] and the
    model's visual input [B, t, 3, k, H, W]; use -3 for images [N, 3, H, W]. Integer input becomes
    float32; float input keeps its dtype. The constants are float32 buffers, not saved in the
    state dict (they are not weights), and follow the input to its device.
    """

    def __init__(self, kind: str = "hara", channel_dim: int = -4):
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"unknown normalisation {kind!r}; expected one of {sorted(KINDS)}")
        norm_value, mean, std = KINDS[kind]
        self.kind, self.channel_dim, self.norm_value = kind, channel_dim, norm_value
        self.divide_std = any(s != 1.0 for s in std)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() < abs(self.channel_dim) or x.shape[self.channel_dim] != 3:
            raise ValueError(f"InputNorm({self.kind!r}) expects 3 RGB channels at dim {self.channel_dim}, "
                             f"got a tensor of shape {tuple(x.shape)}")
        if not x.is_floating_point():
            x = x.float()
        shape = [1] * x.dim()
        shape[self.channel_dim] = 3
        mean = self.mean.to(device=x.device, dtype=x.dtype).view(shape)
        if self.norm_value != 1.0:
            x = x / self.norm_value
        x = x - mean
        if self.divide_std:
            x = x / self.std.to(device=x.device, dtype=x.dtype).view(shape)
        return x

    def extra_repr(self):
        return f"kind={self.kind!r}, channel_dim={self.channel_dim}"
