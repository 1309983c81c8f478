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
first_stride / first_padding to override. The rest is torchvision's ResNet (model/residual.py, shared with
the 3D backbones): conv1 - bn1 - relu - maxpool - layer1..layer4 - avgpool - fc, so an ImageNet state dict maps name for name
(model/weights.py: load_torchvision). Children are in torchvision's order, so
`list(children())[:8]` is the Sequential the official code keeps as `a_resnet`.

ResNet-50 (bottleneck blocks, expansion 4, torchvision's "v1.5" with the stride on the 3x3 conv;
names layerL.B.{conv1,bn1,conv2,bn2,conv3,bn3}, layerL.0.downsample.{0,1}) is offered as an RGB
image backbone: resnet2d(50, in_channels=3) takes an ImageNet or Places365 resnet50 file as it is.
It is not built for 1-channel input (the audio stream stays on 18/34), and a 1-channel
resnet2d(50) says so.
"""
from __future__ import annotations

import torch.nn as nn

from model.residual import BasicBlock, Bottleneck, ResNet


def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)


# depth -> (block, blocks per layer), as torchvision
ARCHS = {18: (BasicBlock, [2, 2, 2, 2]), 34: (BasicBlock, [3, 4, 6, 3]), 50: (Bottleneck, [3, 4, 6, 3])}
# depths built for 1-channel (MFCC) input; the bottleneck ones are RGB image backbones
MONO_DEPTHS = (18, 34)


class ResNet2D(ResNet):
    """features(): [B, in_channels, H, W] -> layer4 map [B, out_channels, h, w] (512, or 2048
    for ResNet-50)."""

    def __init__(self, depth: int = 18, in_channels: int = 1, first_kernel=7, first_stride=None,
                 first_padding=None, num_classes: int = 1000):
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
        conv1 = nn.Conv2d(in_channels, 64, kernel_size=kernel, stride=stride, padding=padding, bias=False)
        super().__init__(2, block, layers, conv1, num_classes)
        self.depth, self.in_channels = depth, in_channels


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
