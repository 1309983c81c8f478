"""The residual network both backbones share: torchvision's ResNet, in 2 or 3 dimensions.

Hara's 3D ResNets (model/resnet3d.py) are torchvision's ResNet (model/resnet2d.py) with 3D
layers, down to the parameter names and the order of the children (docs/reference.md,
"Pretrained weight layouts"), so one definition serves both: the blocks, the layers with their
downsample shortcut on block 0, the stem order, the initialisation, features() and forward().
A backbone passes its dimension, its first convolution and its shortcut kind.

    conv1 - bn1 - relu - maxpool (3, stride 2, pad 1) - layer1..layer4 - avgpool - fc
    layer widths 64/128/256/512, stride 2 from layer2 on, on the 3x3 conv of a block
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

# dimension -> (convolution, batch norm, max pool, adaptive average pool)
LAYERS = {
    2: (nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d, nn.AdaptiveAvgPool2d),
    3: (nn.Conv3d, nn.BatchNorm3d, nn.MaxPool3d, nn.AdaptiveAvgPool3d),
}


class BasicBlock(nn.Module):
    """Two 3x3 convolutions (the first carries the stride) and the shortcut."""
    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1,
                 downsample: nn.Module | None = None, dims: int = 2):
        super().__init__()
        conv, bn = LAYERS[dims][:2]
        self.conv1 = conv(inplanes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1 = bn(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv(planes, planes, kernel_size=3, padding=1, bias=False)
        self.bn2 = bn(planes)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 reduce - 3x3 (carries the stride, torchvision's "v1.5" and Hara's) - 1x1 expand (x4)."""
    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1,
                 downsample: nn.Module | None = None, dims: int = 2):
        super().__init__()
        conv, bn = LAYERS[dims][:2]
        self.conv1 = conv(inplanes, planes, kernel_size=1, bias=False)
        self.bn1 = bn(planes)
        self.conv2 = conv(planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = bn(planes)
        self.conv3 = conv(planes, planes * 4, kernel_size=1, bias=False)
        self.bn3 = bn(planes * 4)
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

    def __init__(self, planes: int, stride: int, dims: int = 3):
        super().__init__()
        self.planes, self.stride, self.dims = planes, stride, dims

    def forward(self, x):
        pool = F.avg_pool3d if self.dims == 3 else F.avg_pool2d
        out = pool(x, kernel_size=1, stride=self.stride)  # = x[:, :, ::s, ::s(, ::s)]
        return F.pad(out, (0, 0) * self.dims + (0, self.planes - out.shape[1]))

    def extra_repr(self):
        return f"planes={self.planes}, stride={self.stride}"


SHORTCUTS = ("A", "B")


class ResNet(nn.Module):
    """The network around `conv1` (built by the backbone, so its shape is the backbone's).

    shortcut "B": 1x1 conv + BN (downsample.0 / .1) on block 0 of a layer whose shape changes;
    "A": the parameter-free ShortcutA there instead.
    """

    def __init__(self, dims: int, block, layers: list[int], conv1: nn.Module, num_classes: int,
                 shortcut: str = "B"):
        super().__init__()
        if shortcut not in SHORTCUTS:
            raise ValueError(f"shortcut must be 'A' (zero-padded identity) or 'B' (1x1 conv + BN), "
                             f"got {shortcut!r}")
        conv, bn, maxpool, avgpool = LAYERS[dims]
        self.dims, self.shortcut = dims, shortcut
        self.out_channels = 512 * block.expansion

        self.inplanes = 64
        self.conv1 = conv1
        self.bn1 = bn(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = maxpool(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 256, layers[2], stride=2)
        self.layer4 = self._make_layer(block, 512, layers[3], stride=2)
        self.avgpool = avgpool(1)
        self.fc = nn.Linear(self.out_channels, num_classes)

        # torchvision's and Hara's init: He normal (fan_out) for convs, BN to identity; fc keeps
        # PyTorch's default
        for m in self.modules():
            if isinstance(m, conv):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, bn):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _downsample(self, inplanes: int, outplanes: int, stride: int) -> nn.Module:
        if self.shortcut == "A":
            return ShortcutA(outplanes, stride, self.dims)
        conv, bn = LAYERS[self.dims][:2]
        return nn.Sequential(conv(inplanes, outplanes, kernel_size=1, stride=stride, bias=False),
                             bn(outplanes))

    def _make_layer(self, block, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        # only block 0 of a layer changes the shape, so only it gets a downsample shortcut:
        # layers 2-4 of a basic net, every layer of a bottleneck one (64 -> 256 already in layer1)
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = self._downsample(self.inplanes, planes * block.expansion, stride)
        layers = [block(self.inplanes, planes, stride, downsample, dims=self.dims)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes, dims=self.dims) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Input -> the layer4 map (out_channels channels; each spatial axis / 32)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        return self.layer4(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Input -> class logits [B, num_classes]."""
        return self.fc(torch.flatten(self.avgpool(self.features(x)), 1))
