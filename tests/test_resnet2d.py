"""2D ResNet-18 (audio backbone): torchvision names and shapes, both first convolutions, shapes."""
import pytest
import torch

from model.resnet2d import resnet2d, resnet18, resnet34


def _bn(name, c):
    return {f"{name}.weight": (c,), f"{name}.bias": (c,), f"{name}.running_mean": (c,),
            f"{name}.running_var": (c,), f"{name}.num_batches_tracked": ()}


def torchvision_entries(in_channels=3, kernel=(7, 7), num_classes=1000, blocks=(2, 2, 2, 2)):
    """Names -> shapes of torchvision's resnet18 state dict (122 entries), from its documentation."""
    e = {"conv1.weight": (64, in_channels, *kernel), **_bn("bn1", 64)}
    inplanes = 64
    for li, (width, n) in enumerate(zip([64, 128, 256, 512], blocks), start=1):
        for b in range(n):
            p = f"layer{li}.{b}"
            e[f"{p}.conv1.weight"] = (width, inplanes, 3, 3)
            e.update(_bn(f"{p}.bn1", width))
            e[f"{p}.conv2.weight"] = (width, width, 3, 3)
            e.update(_bn(f"{p}.bn2", width))
            if b == 0 and li > 1:
                e[f"{p}.downsample.0.weight"] = (width, inplanes, 1, 1)
                e.update(_bn(f"{p}.downsample.1", width))
            inplanes = width
    e["fc.weight"] = (num_classes, 512)
    e["fc.bias"] = (num_classes,)
    return e


def shapes(model):
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def test_rgb_resnet18_is_torchvision_resnet18():
    model = resnet18(in_channels=3)
    assert len(torchvision_entries()) == 122
    assert shapes(model) == torchvision_entries()
    assert sum(p.numel() for p in model.parameters()) == 11_689_512  # torchvision's count


def test_official_first_conv_and_parameter_count():
    model = resnet18(in_channels=1, first_kernel=(7, 1))
    c = model.conv1
    assert (c.in_channels, c.kernel_size, c.stride, c.padding, c.bias) == (1, (7, 1), (2, 1), (3, 0), None)
    assert shapes(model) == torchvision_entries(in_channels=1, kernel=(7, 1))
    body = sum(p.numel() for k, p in model.named_parameters() if not k.startswith("fc."))
    assert body == 11_167_552  # a_resnet (docs/reference.md, "Parameter counts")


def test_paper_first_conv():
    c = resnet18().conv1
    assert (c.in_channels, c.kernel_size, c.stride, c.padding) == (1, (7, 7), (2, 2), (3, 3))
    c = resnet18(first_kernel=(7, 1), first_stride=1, first_padding=(3, 0)).conv1
    assert (c.stride, c.padding) == ((1, 1), (3, 0))


def _out(n, k, s, p):
    return (n + 2 * p - k) // s + 1


@pytest.mark.parametrize("kernel", [7, (7, 1)])
def test_feature_map_shapes(kernel):
    torch.manual_seed(0)
    model = resnet18(first_kernel=kernel).eval()
    x = torch.randn(2, 1, 256, 32)  # one official audio segment: 256 MFCC frames x 32 coefficients
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    h = _out(256, kh, 2 if kh > 1 else 1, kh // 2)
    w = _out(32, kw, 2 if kw > 1 else 1, kw // 2)
    h, w = _out(h, 3, 2, 1), _out(w, 3, 2, 1)  # maxpool
    for _ in range(3):  # layer2..layer4
        h, w = _out(h, 3, 2, 1), _out(w, 3, 2, 1)
    with torch.no_grad():
        f = model.features(x)
        logits = model(x)
    assert f.shape == (2, 512, h, w)
    assert (h, w) == ((8, 1) if kernel == 7 else (8, 2))
    assert torch.allclose(logits, model.fc(f.mean(dim=(2, 3))), atol=1e-5)
    assert model.out_channels == 512


def test_children_order_and_resnet34():
    names = [n for n, _ in resnet18().named_children()][:8]
    assert names == ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"]
    model = resnet34(in_channels=3)
    assert shapes(model) == torchvision_entries(blocks=(3, 4, 6, 3))
    assert sum(p.numel() for p in model.parameters()) == 21_797_672  # torchvision's count
    with pytest.raises(ValueError, match=r"depth must be one of \[18, 34\], got 50"):
        resnet2d(50)
