"""3D ResNets of Hara et al. (CVPR 2018), the visual backbone of VAANet.

Same architecture and parameter names as the authors' release (kenshohara/3D-ResNets-PyTorch,
models/resnet.py; docs/reference.md, "Pretrained weight layouts"), built on the ResNet that the
2D backbones share (model/residual.py), so a Kinetics checkpoint loads strictly once its
`module.` prefix is stripped (see model/weights.py):

    conv1 (3D 7x7x7, stride (1,2,2), pad 3, no bias) - bn1 - relu - maxpool (3, stride 2, pad 1)
    layer1..layer4 (widths 64/128/256/512; stride 2 from layer2 on, on the 3x3x3 conv)
    avgpool - fc

Input is [B, 3, T, H, W] (channels first, then time). For a 16 x 112 x 112 clip, layer4 gives
[B, 2048, 1, 4, 4] for depths >= 50 and [B, 512, 1, 4, 4] for depths <= 34.

Differences from the release, none of which changes a parameter name or a computed value:
- avgpool is adaptive, so any clip size works (the release fixed the kernel from the sample size);
- shortcut "A" keeps the gradient through the zero-padded identity (the release built it from
  `.data`, a PyTorch 0.3 idiom that cut the gradient there).
"""
from __future__ import annotations

import torch.nn as nn

from model.residual import BasicBlock, Bottleneck, ResNet, ShortcutA  # noqa: F401 (re-exported)


# depth -> (block, blocks per layer), as in the release
ARCHS = {
    10: (BasicBlock, [1, 1, 1, 1]),
    18: (BasicBlock, [2, 2, 2, 2]),
    34: (BasicBlock, [3, 4, 6, 3]),
    50: (Bottleneck, [3, 4, 6, 3]),
    101: (Bottleneck, [3, 4, 23, 3]),
    152: (Bottleneck, [3, 8, 36, 3]),
}


class ResNet3D(ResNet):
    """Hara's 3D ResNet. Children are in the release's order, so `list(children())[:8]` is the
    conv1..layer4 stack that the official VAANet code keeps as its `resnet` Sequential.
    features(): [B, 3, T, H, W] -> layer4 map [B, out_channels, ceil(T/16), ceil(H/32), ceil(W/32)].
    """

    def __init__(self, depth: int = 101, num_classes: int = 400, shortcut: str = "B"):
        if depth not in ARCHS:
            raise ValueError(f"3D ResNet depth must be one of {sorted(ARCHS)}, got {depth!r}")
        if shortcut not in ("A", "B"):
            raise ValueError(f"shortcut must be 'A' (zero-padded identity) or 'B' (1x1x1 conv + BN), "
                             f"got {shortcut!r}")
        block, layers = ARCHS[depth]
        conv1 = nn.Conv3d(3, 64, kernel_size=7, stride=(1, 2, 2), padding=3, bias=False)
        super().__init__(3, block, layers, conv1, num_classes, shortcut)
        self.depth = depth


def resnet3d(depth: int = 101, num_classes: int = 400, shortcut: str = "B") -> ResNet3D:
    """Hara's 3D ResNet of the given depth (10, 18, 34, 50, 101, 152).

    shortcut "B" (default; 1x1x1 conv + BN, named downsample.0/1) matches Hara's resnet-50/101/152
    Kinetics checkpoints. Their resnet-18/34 Kinetics checkpoints were trained with shortcut "A"
    (no downsample weights in the file): build those with shortcut="A".
    """
    return ResNet3D(depth, num_classes=num_classes, shortcut=shortcut)
