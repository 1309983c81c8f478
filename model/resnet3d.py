"""3D ResNets of Hara et al. (CVPR 2018), the visual backbone of VAANet.

Same architecture and parameter names as the authors' release (kenshohara/3D-ResNets-PyTorch,
models/resnet.py), so a Kinetics checkpoint loads strictly once its `module.` prefix is stripped
(see model/weights.py):

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

import torch
import torch.nn as nn
import torch.nn.functional as F


def conv3x3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv3d:
    return nn.Conv3d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = conv3x3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm3d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3x3(planes, planes)
        self.bn2 = nn.BatchNorm3d(planes)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv3d(inplanes, planes, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm3d(planes)
        self.conv2 = conv3x3x3(planes, planes, stride)  # the stride sits on the 3x3x3 conv
        self.bn2 = nn.BatchNorm3d(planes)
        self.conv3 = nn.Conv3d(planes, planes * 4, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm3d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ShortcutA(nn.Module):
    """Parameter-free shortcut: subsample by `stride`, then pad the new channels with zeros."""

    def __init__(self, planes: int, stride: int):
        super().__init__()
        self.planes, self.stride = planes, stride

    def forward(self, x):
        out = F.avg_pool3d(x, kernel_size=1, stride=self.stride)  # = x[:, :, ::s, ::s, ::s]
        return F.pad(out, (0, 0, 0, 0, 0, 0, 0, self.planes - out.shape[1]))

    def extra_repr(self):
        return f"planes={self.planes}, stride={self.stride}"


# depth -> (block, blocks per layer), as in the release
ARCHS = {
    10: (BasicBlock, [1, 1, 1, 1]),
    18: (BasicBlock, [2, 2, 2, 2]),
    34: (BasicBlock, [3, 4, 6, 3]),
    50: (Bottleneck, [3, 4, 6, 3]),
    101: (Bottleneck, [3, 4, 23, 3]),
    152: (Bottleneck, [3, 8, 36, 3]),
}


class ResNet3D(nn.Module):
    """Hara's 3D ResNet. Children are in the release's order, so `list(children())[:8]` is the
    conv1..layer4 stack that the official VAANet code keeps as its `resnet` Sequential."""

    def __init__(self, depth: int = 101, num_classes: int = 400, shortcut: str = "B"):
        super().__init__()
        if depth not in ARCHS:
            raise ValueError(f"3D ResNet depth must be one of {sorted(ARCHS)}, got {depth!r}")
        if shortcut not in ("A", "B"):
            raise ValueError(f"shortcut must be 'A' (zero-padded identity) or 'B' (1x1x1 conv + BN), "
                             f"got {shortcut!r}")
        block, layers = ARCHS[depth]
        self.depth, self.shortcut = depth, shortcut
        self.out_channels = 512 * block.expansion

        self.inplanes = 64
        self.conv1 = nn.Conv3d(3, 64, kernel_size=7, stride=(1, 2, 2), padding=3, bias=False)
        self.bn1 = nn.BatchNorm3d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool3d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 256, layers[2], stride=2)
        self.layer4 = self._make_layer(block, 512, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool3d(1)
        self.fc = nn.Linear(self.out_channels, num_classes)

        # the release's init: He normal (fan_out) for convs, BN to identity; fc keeps PyTorch's default
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm3d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _make_layer(self, block, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        # only block 0 of a layer changes the shape, so only it gets a downsample shortcut:
        # every layer of a bottleneck net (64 -> 256 already in layer1), layers 2-4 of a basic one
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            if self.shortcut == "A":
                downsample = ShortcutA(planes * block.expansion, stride)
            else:
                downsample = nn.Sequential(
                    nn.Conv3d(self.inplanes, planes * block.expansion, kernel_size=1, stride=stride, bias=False),
                    nn.BatchNorm3d(planes * block.expansion),
                )
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 3, T, H, W] -> layer4 map [B, out_channels, ceil(T/16), ceil(H/32), ceil(W/32)]."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        return self.layer4(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 3, T, H, W] -> class logits [B, num_classes]."""
        return self.fc(torch.flatten(self.avgpool(self.features(x)), 1))


def resnet3d(depth: int = 101, num_classes: int = 400, shortcut: str = "B") -> ResNet3D:
    """Hara's 3D ResNet of the given depth (10, 18, 34, 50, 101, 152).

    shortcut "B" (default; 1x1x1 conv + BN, named downsample.0/1) matches Hara's resnet-50/101/152
    Kinetics checkpoints. Their resnet-18/34 Kinetics checkpoints were trained with shortcut "A"
    (no downsample weights in the file): build those with shortcut="A".
    """
    return ResNet3D(depth, num_classes=num_classes, shortcut=shortcut)
