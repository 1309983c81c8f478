"""3D ResNet (Hara et al.): names and shapes as documented, layer arithmetic, output shapes."""
import pytest
import torch
import torch.nn.functional as F

from model.resnet3d import ShortcutA, resnet3d

BLOCKS = {10: ("basic", [1, 1, 1, 1]), 18: ("basic", [2, 2, 2, 2]), 34: ("basic", [3, 4, 6, 3]),
          50: ("bottleneck", [3, 4, 6, 3]), 101: ("bottleneck", [3, 4, 23, 3]), 152: ("bottleneck", [3, 8, 36, 3])}


def bn_entries(name, c, counters=True):
    out = {f"{name}.weight": (c,), f"{name}.bias": (c,), f"{name}.running_mean": (c,), f"{name}.running_var": (c,)}
    if counters:
        out[f"{name}.num_batches_tracked"] = ()
    return out


def hara_entries(depth, shortcut="B", num_classes=400, counters=True):
    """Names -> shapes of a Hara 3D ResNet state dict, written from the documented architecture."""
    kind, layers = BLOCKS[depth]
    expansion = 4 if kind == "bottleneck" else 1
    e = {"conv1.weight": (64, 3, 7, 7, 7), **bn_entries("bn1", 64, counters)}
    inplanes = 64
    for li, (width, n) in enumerate(zip([64, 128, 256, 512], layers), start=1):
        for b in range(n):
            p = f"layer{li}.{b}"
            if kind == "basic":
                e[f"{p}.conv1.weight"] = (width, inplanes, 3, 3, 3)
                e.update(bn_entries(f"{p}.bn1", width, counters))
                e[f"{p}.conv2.weight"] = (width, width, 3, 3, 3)
                e.update(bn_entries(f"{p}.bn2", width, counters))
            else:
                e[f"{p}.conv1.weight"] = (width, inplanes, 1, 1, 1)
                e.update(bn_entries(f"{p}.bn1", width, counters))
                e[f"{p}.conv2.weight"] = (width, width, 3, 3, 3)
                e.update(bn_entries(f"{p}.bn2", width, counters))
                e[f"{p}.conv3.weight"] = (width * 4, width, 1, 1, 1)
                e.update(bn_entries(f"{p}.bn3", width * 4, counters))
            if b == 0 and (li > 1 or expansion == 4) and shortcut == "B":
                e[f"{p}.downsample.0.weight"] = (width * expansion, inplanes, 1, 1, 1)
                e.update(bn_entries(f"{p}.downsample.1", width * expansion, counters))
            inplanes = width * expansion
    e["fc.weight"] = (num_classes, 512 * expansion)
    e["fc.bias"] = (num_classes,)
    return e


@pytest.mark.parametrize("depth", [10, 18, 34, 50, 101, 152])
def test_names_and_shapes_match_hara(depth):
    with torch.device("meta"):  # no memory, no init cost
        model = resnet3d(depth)
    found = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert found == hara_entries(depth)
    assert model.out_channels == (2048 if depth >= 50 else 512)


def test_downsample_only_where_the_shape_changes():
    with torch.device("meta"):
        basic, bottleneck = resnet3d(18), resnet3d(50)
    assert basic.layer1[0].downsample is None  # 64 -> 64, stride 1
    assert all(getattr(basic, f"layer{i}")[0].downsample is not None for i in (2, 3, 4))
    assert bottleneck.layer1[0].downsample is not None  # 64 -> 256
    assert all(b.downsample is None for b in list(bottleneck.layer1)[1:])


def test_resnet101_parameter_count_matches_reference():
    with torch.device("meta"):
        model = resnet3d(101)
    body = sum(p.numel() for k, p in model.named_parameters() if not k.startswith("fc."))
    assert body == 85_245_120
    assert sum(p.numel() for p in model.fc.parameters()) == 2048 * 400 + 400


def test_stem_and_children_order():
    with torch.device("meta"):
        model = resnet3d(50)
    c = model.conv1
    assert (c.kernel_size, c.stride, c.padding, c.bias) == ((7, 7, 7), (1, 2, 2), (3, 3, 3), None)
    assert (model.maxpool.kernel_size, model.maxpool.stride, model.maxpool.padding) == (3, 2, 1)
    assert model.layer2[0].conv2.stride == (2, 2, 2) and model.layer2[0].conv1.stride == (1, 1, 1)
    names = [n for n, _ in model.named_children()][:8]
    assert names == ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"]


def _bn(x, bn):
    return F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)


def test_bottleneck_block_equals_its_equations():
    torch.manual_seed(0)
    model = resnet3d(50).eval()
    block = model.layer2[0]  # stride 2, with downsample
    for m in block.modules():  # non-trivial BN statistics
        if isinstance(m, torch.nn.BatchNorm3d):
            m.running_mean.uniform_(-0.5, 0.5); m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5); m.bias.data.uniform_(-0.2, 0.2)
    x = torch.randn(1, 256, 4, 6, 6)
    with torch.no_grad():
        h = F.relu(_bn(F.conv3d(x, block.conv1.weight), block.bn1))
        h = F.relu(_bn(F.conv3d(h, block.conv2.weight, stride=2, padding=1), block.bn2))
        h = _bn(F.conv3d(h, block.conv3.weight), block.bn3)
        skip = _bn(F.conv3d(x, block.downsample[0].weight, stride=2), block.downsample[1])
        expected = F.relu(h + skip)
        assert torch.allclose(block(x), expected, atol=1e-5)
        assert block(x).shape == (1, 512, 2, 3, 3)


def test_small_forward_shapes_and_logits_from_features():
    torch.manual_seed(0)
    model = resnet3d(10, num_classes=8).eval()
    x = torch.randn(2, 3, 8, 64, 64)
    with torch.no_grad():
        f = model.features(x)
        assert f.shape == (2, 512, 1, 2, 2)
        logits = model(x)
    assert logits.shape == (2, 8)
    assert torch.allclose(logits, model.fc(f.mean(dim=(2, 3, 4))), atol=1e-5)


def test_shortcut_a_has_no_weights_and_pads_with_zeros():
    with torch.device("meta"):
        r18 = resnet3d(18, shortcut="A")
    assert not any("downsample" in k for k in r18.state_dict())
    assert {k: tuple(v.shape) for k, v in r18.state_dict().items()} == hara_entries(18, shortcut="A")
    x = torch.randn(1, 4, 5, 5, 5)
    y = ShortcutA(planes=10, stride=2)(x)
    assert y.shape == (1, 10, 3, 3, 3)
    assert torch.equal(y[:, :4], x[:, :, ::2, ::2, ::2]) and not y[:, 4:].any()
    model = resnet3d(10, shortcut="A")  # the gradient flows through the padded identity
    out = model(torch.randn(2, 3, 8, 32, 32))  # train mode: BN needs 2 values per channel
    out.sum().backward()
    assert model.conv1.weight.grad is not None and model.conv1.weight.grad.abs().sum() > 0


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"depth must be one of \[10, 18, 34, 50, 101, 152\], got 20"):
        resnet3d(20)
    with pytest.raises(ValueError, match="shortcut must be 'A'"):
        resnet3d(18, shortcut="C")


@pytest.mark.slow
def test_full_size_resnet101_on_one_clip():
    torch.manual_seed(0)
    model = resnet3d(101).eval()
    x = torch.randn(1, 3, 16, 112, 112)
    with torch.no_grad():
        f = model.features(x)
        logits = model.fc(f.mean(dim=(2, 3, 4)))
    assert f.shape == (1, 2048, 1, 4, 4)
    assert logits.shape == (1, 400) and torch.isfinite(logits).all()
