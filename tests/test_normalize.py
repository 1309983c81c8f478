"""Input normalisation: values against direct arithmetic, layouts, dtypes, devices."""
import numpy as np
import pytest
import torch

from model.normalize import InputNorm

ACTIVITYNET = (114.7748, 107.7354, 99.4750)


def clips(shape=(2, 3, 4, 5, 6), seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, shape, generator=g, dtype=torch.uint8)


def test_hara_subtracts_activitynet_mean_per_channel():
    x = clips()
    y = InputNorm("hara")(x)
    assert y.dtype == torch.float32 and y.shape == x.shape
    for c, m in enumerate(ACTIVITYNET):
        expected = x[:, c].numpy().astype(np.float64) - m
        assert np.allclose(y[:, c].numpy(), expected, atol=1e-5)
        assert torch.equal(y[:, c], x[:, c].float() - torch.tensor(m, dtype=torch.float32))
    assert y[0, 0, 0, 0, 0].item() == pytest.approx(x[0, 0, 0, 0, 0].item() - 114.7748, abs=1e-4)


def test_official_is_x_over_255_minus_100_over_255():
    x = clips()
    y = InputNorm("official")(x)
    assert torch.equal(y, x.float() / 255 - 100 / 255)  # the official transforms' own float ops
    assert np.allclose(y.numpy(), x.numpy().astype(np.float64) / 255 - 100 / 255, atol=1e-6)
    assert y.min() >= -100 / 255 - 1e-6 and y.max() <= 155 / 255 + 1e-6


def test_imagenet_on_images_with_channel_dim():
    x = clips((2, 3, 7, 9))
    y = InputNorm("imagenet", channel_dim=-3)(x)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    for c in range(3):
        expected = (x[:, c].numpy().astype(np.float64) / 255 - mean[c]) / std[c]
        assert np.allclose(y[:, c].numpy(), expected, atol=1e-5)


def test_model_input_layout_and_float_input():
    x = clips((2, 5, 3, 4, 6, 6))  # [B, t, 3, k, H, W]: RGB is dim 2 = -4
    norm = InputNorm("hara")
    y = norm(x)
    for c, m in enumerate(ACTIVITYNET):
        assert torch.allclose(y[:, :, c], x[:, :, c].float() - m)
    assert torch.equal(norm(x.float()), y)
    y64 = norm(x.double())
    assert y64.dtype == torch.float64
    # the constants are float32 buffers (what runs on the device); only their rounding differs
    assert np.allclose(y64[:, :, 1].numpy(), x[:, :, 1].numpy().astype(np.float64) - ACTIVITYNET[1], atol=1e-5)


def test_follows_the_input_device_and_is_not_saved():
    norm = InputNorm("official")
    x = torch.empty(1, 3, 2, 4, 4, device="meta")
    assert norm(x).device.type == "meta"
    assert norm.state_dict() == {}  # constants, not weights: checkpoints stay as the originals
    assert norm.to(torch.device("cpu")).mean.device.type == "cpu"


def test_errors():
    expected = r"unknown normalisation 'kinetics'; expected one of \['hara', 'imagenet', 'official'\]"
    with pytest.raises(ValueError, match=expected):
        InputNorm("kinetics")
    expected = r"expects 3 RGB channels at dim -4, got a tensor of shape \(2, 4, 3, 5, 5\)"
    with pytest.raises(ValueError, match=expected):
        InputNorm("hara")(torch.zeros(2, 4, 3, 5, 5))
