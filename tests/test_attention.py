"""Each attention block against a direct computation of its equations (docs/reference.md,
"Authors' code: modules and shapes"), written
here with plain tensor ops on the block's own parameters, in eval and in train mode."""
import pytest
import torch

from model.channel_attention import ChannelAttention
from model.spatial_attention import SpatialAttention
from model.temporal_attention import TemporalAttention


def bn_single(h, bn, training):
    """BatchNorm1d(1) applied to scores h of any shape: one channel, statistics over everything."""
    if training:
        mean, var = h.mean(), h.var(unbiased=False)
    else:
        mean, var = bn.running_mean[0], bn.running_var[0]
    return (h - mean) / torch.sqrt(var + bn.eps) * bn.weight[0] + bn.bias[0]


def randomise(block, seed):
    """Non-trivial BN affine and running statistics, so that eval mode is really checked."""
    g = torch.Generator().manual_seed(seed)
    bn = block.conv[1]
    with torch.no_grad():
        bn.weight.fill_(1.0 + torch.rand(1, generator=g).item())
        bn.bias.fill_(torch.randn(1, generator=g).item() * 0.3)
        bn.running_mean.fill_(torch.randn(1, generator=g).item() * 0.2)
        bn.running_var.fill_(0.5 + torch.rand(1, generator=g).item())
        block.fc.weight.normal_(0, 0.7, generator=g)
        if block.fc.bias is not None:
            block.fc.bias.normal_(0, 0.5, generator=g)
    return block


@pytest.mark.parametrize("training", [False, True])
def test_spatial_attention_matches_equations(training):
    n, c, p = 5, 6, 4
    block = randomise(SpatialAttention(c, p), 0).train(training)
    x = torch.randn(n, c, p, generator=torch.Generator().manual_seed(1))
    out, weights = block(x)

    w = block.conv[0].weight[0, :, 0]                       # [C]
    h = torch.einsum("ncp,c->np", x, w)                     # Conv1d C->1, no bias
    h = torch.tanh(bn_single(h, block.conv[1], training))
    logits = h @ block.fc.weight.T                          # Linear P->P, no bias
    expected_w = p * torch.exp(logits) / torch.exp(logits).sum(1, keepdim=True)
    torch.testing.assert_close(weights, expected_w, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out, x * expected_w[:, None, :], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(weights.sum(1), torch.full((n,), float(p)))
    assert block.conv[0].bias is None and block.fc.bias is None


@pytest.mark.parametrize("training", [False, True])
def test_channel_attention_matches_equations(training):
    n, c, p = 4, 7, 3
    block = randomise(ChannelAttention(c, p), 2).train(training)
    x = torch.randn(n, c, p, generator=torch.Generator().manual_seed(3))
    out, weights = block(x)

    w = block.conv[0].weight[0, :, 0]                       # [P]: the conv runs over positions
    h = torch.einsum("ncp,p->nc", x, w)
    h = torch.tanh(bn_single(h, block.conv[1], training))
    logits = h @ block.fc.weight.T                          # Linear C->C, no bias
    expected_w = c * torch.softmax(logits, dim=1)
    torch.testing.assert_close(weights, expected_w, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out, x * expected_w[:, :, None], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(weights.sum(1), torch.full((n,), float(c)))


@pytest.mark.parametrize("training", [False, True])
def test_temporal_attention_matches_equations(training):
    b, c, t = 3, 5, 6
    block = randomise(TemporalAttention(c, t), 4).train(training)
    x = torch.randn(b, c, t, generator=torch.Generator().manual_seed(5))
    out, weights = block(x)

    w = block.conv[0].weight[0, :, 0]
    h = torch.einsum("bct,c->bt", x, w)
    h = torch.tanh(bn_single(h, block.conv[1], training))
    expected_w = (h @ block.fc.weight.T + block.fc.bias).clamp(min=0)   # ReLU, not softmax
    expected = (x * expected_w[:, None, :]).sum(2) / t
    torch.testing.assert_close(weights, expected_w, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)
    assert (weights == 0).any(), "the ReLU should cut some weights to zero in this draw"


def test_temporal_bias_initialisation():
    assert torch.equal(TemporalAttention(512, 12).fc.bias, torch.ones(12))
    assert torch.equal(TemporalAttention(256, 16, bias_init=0.25).fc.bias, torch.full((16,), 0.25))
    torch.manual_seed(0)
    default = TemporalAttention(256, 16, bias_init=None).fc.bias   # PyTorch's uniform init
    assert default.abs().max() <= 16 ** -0.5 and not torch.equal(default, torch.ones(16))


def test_parameter_counts_of_official_blocks():
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(SpatialAttention(512, 16)) == 770
    assert count(ChannelAttention(512, 16)) == 262_162
    assert count(TemporalAttention(512, 12)) == 670
    assert count(TemporalAttention(256, 16)) == 530


def test_attention_gradients_reach_every_parameter():
    x = torch.randn(4, 6, 4, requires_grad=True)
    sa, ca, ta = SpatialAttention(6, 4), ChannelAttention(6, 4), TemporalAttention(6, 4)
    f, _ = sa(x)
    f, _ = ca(f)
    v, _ = ta(f.mean(2).T.unsqueeze(0))                     # treat the 4 rows as 4 segments
    v.pow(2).sum().backward()
    for name, p in [*sa.named_parameters(), *ca.named_parameters(), *ta.named_parameters()]:
        assert p.grad is not None and p.grad.abs().sum() > 0, name
