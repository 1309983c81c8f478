"""2D ResNets with torchvision's parameter names: the audio backbone of VAANet (18/34 on MFCC
images) and the object / scene backbones of DFAN (18/34/50 on RGB frames).

The audio stream sees one MFCC segment as a 1-channel image [B, 1, L, n_mfcc] (time x coefficient).
Its first convolution (the paper does not describe it) is, in both the "paper" and the
"official" presets, the authors' code's (7, 1) kernel, which never mixes coefficients; a square
kernel gives torchvision's stem instead (model config field audio_first_kernel):

    (7, 1): Conv2d(1, 64, kernel (7,1), stride (2, 1), padding (3, 0))  first_kernel=(7, 1)
    7:      Conv2d(1, 64, kernel 7x7,   stride 2,      padding 3)       first_kernel=7

Stride and padding follow from the kernel (stride 2 and "same" padding along every axis the kernel
spans, stride 1 and no padding along an axis of size 1), which gives both convolutions above; pass
first_stride / first_padding to override. The rest is torchvision's ResNet: conv1 - bn1 - relu -
maxpool - layer1..layer4 - avgpool - fc, so an ImageNet state dict maps name for name
(model/weights.py: load_torchvision). Children are in torchvision's order, so
`list(children())[:8]` is the Sequential the official code keeps as `a_resnet`.

ResNet-50 (bottleneck blocks, expansion 4, torchvision's "v1.5" with the stride on the 3x3 conv;
names layerL.B.{conv1,bn1,conv2,bn2,conv3,bn3}, layerL.0.downsample.{0,1}) is offered as an RGB
image backbone: resnet2d(50, in_channels=3) takes an ImageNet or Places365 resnet50 file as it is.
It is not built for 1-channel input (the audio stream stays on 18/34), and a 1-channel
resnet2d(50) says so.
"""
from __future__ import annotations

import torch
import torch.nn as nn


def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)


def conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """torchvision's bottleneck: 1x1 reduce - 3x3 (carries the stride) - 1x1 expand (x4)."""
    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


# depth -> (block, blocks per layer), as torchvision
ARCHS = {18: (BasicBlock, [2, 2, 2, 2]), 34: (BasicBlock, [3, 4, 6, 3]), 50: (Bottleneck, [3, 4, 6, 3])}
# depths built for 1-channel (MFCC) input; the bottleneck ones are RGB image backbones
MONO_DEPTHS = (18, 34)


class ResNet2D(nn.Module):
    def __init__(self, depth: int = 18, in_channels: int = 1, first_kernel=7, first_stride=None,
                 first_padding=None, num_classes: int = 1000):
        super().__init__()
        if depth not in ARCHS:
            raise ValueError(f"2D ResNet depth must be one of {sorted(ARCHS)}, got {depth!r}")
        if in_channels != 3 and depth not in MONO_DEPTHS:
            raise ValueError(f"a {in_channels}-channel 2D ResNet: depth must be one of "
                             f"{list(MONO_DEPTHS)}, got {depth} (ResNet-{depth} is an RGB image "
                             f"backbone: resnet2d({depth}, in_channels=3))")
        block, layers = ARCHS[depth]
        kernel = _pair(first_kernel)
        stride = _pair(first_stride) if first_stride is not None else tuple(2 if k > 1 else 1 for k in kernel)
        padding = _pair(first_padding) if first_padding is not None else tuple(k // 2 for k in kernel)
        self.depth, self.in_channels = depth, in_channels
        self.out_channels = 512 * block.expansion

        self.inplanes = 64
        self.conv1 = nn.Conv2d(in_channels, 64, kernel_size=kernel, stride=stride, padding=padding, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 256, layers[2], stride=2)
        self.layer4 = self._make_layer(block, 512, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(self.out_channels, num_classes)

        # torchvision's init: He normal (fan_out) for convs, BN to identity; fc keeps PyTorch's default
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _make_layer(self, block, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        # only block 0 of a layer changes the shape, so only it gets a downsample shortcut:
        # layers 2-4 of a basic net, every layer of a bottleneck one (64 -> 256 already in layer1)
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * block.expansion, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(planes * block.expansion),
            )
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """[B, in_channels, H, W] -> layer4 map [B, out_channels, h, w] (512, or 2048 for 50)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        return self.layer4(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, in_channels, H, W] -> logits [B, num_classes]."""
        return self.fc(torch.flatten(self.avgpool(self.features(x)), 1))


def resnet2d(depth: int = 18, in_channels: int = 1, first_kernel=7, first_stride=None,
             first_padding=None, num_classes: int = 1000) -> ResNet2D:
    """2D ResNet (18, 34, or 50 for RGB) with torchvision names.

    Audio: in_channels=1, first_kernel=7 (paper) or (7, 1) (official). Frames (DFAN's object and
    scene streams): resnet2d(depth, in_channels=3), torchvision's 7x7 stem.
    """
    return ResNet2D(depth, in_channels, first_kernel, first_stride, first_padding, num_classes)


def resnet18(in_channels: int = 1, first_kernel=7, first_stride=None, first_padding=None,
             num_classes: int = 1000) -> ResNet2D:
    return ResNet2D(18, in_channels, first_kernel, first_stride, first_padding, num_classes)


def resnet34(in_channels: int = 1, first_kernel=7, first_stride=None, first_padding=None,
             num_classes: int = 1000) -> ResNet2D:
    return ResNet2D(34, in_channels, first_kernel, first_stride, first_padding, num_classes)


def resnet50(in_channels: int = 3, num_classes: int = 1000) -> ResNet2D:
    """torchvision's ImageNet ResNet-50 layout (Places365's resnet50 has the same, with 365 classes)."""
    return ResNet2D(50, in_channels, 7, None, None, num_classes)
