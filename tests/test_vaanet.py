"""VAANet: configuration, ablation specs, output shapes, uniform pooling of switched-off
attentions, gradients, the frozen backbone and its BatchNorm. Tiny "demo"-size models."""
import json

import pytest
import torch

from tests.inputs import random_inputs
from model.config import ModelConfig, parse_attention, preset
from model.vaanet import VAANet, feature_grid


demo_inputs = random_inputs


def small(**overrides):
    """Smaller than the demo preset: 2 segments of 2 frames at 64 px (4 positions), 2 audio
    segments of 16 MFCC frames."""
    return preset("demo", **{**dict(segments=2, frames=2, crop=64, audio_segments=2,
                                     audio_len=16), **overrides})


# ---- config ---------------------------------------------------------------------------------

def test_parse_attention():
    assert parse_attention("VS+VCW+VT+AT") == {"VS", "VCW", "VT", "AT"}
    assert parse_attention(" vs + vcw ") == {"VS", "VCW"}
    assert parse_attention("at") == {"AT"}
    assert parse_attention("none") == frozenset() == parse_attention("")
    with pytest.raises(ValueError) as e:
        parse_attention("VS+VCX")
    assert "'VCX'" in str(e.value) and "VS, VCW, VT, AT" in str(e.value)


@pytest.mark.parametrize("spec,streams", [("AT", "audio"), ("VS", "visual"), ("VS+VCW", "visual"),
                                          ("VS+VCW+VT", "visual"), ("VS+VCW+VT+AT", "both"),
                                          ("VT+AT", "both"), ("none", "both")])
def test_ablation_specs_build_with_the_papers_streams(spec, streams):
    cfg = small(attention=spec)
    assert cfg.streams == streams
    model = VAANet(cfg)
    names = {n.split(".")[0] for n, _ in model.named_parameters()}
    assert ("backbone" in names) == (streams != "audio")
    assert ("audio_backbone" in names) == (streams != "visual")
    for module, flag in [("spatial", "VS"), ("channel", "VCW"), ("temporal", "VT"),
                         ("audio_temporal", "AT")]:
        assert (module in names) == (flag in cfg.attention), module
    width = {"visual": 512, "audio": 256, "both": 768}[streams]
    assert model.classifier.in_features == width
    visual, audio = demo_inputs(cfg)
    with torch.no_grad():
        out = model.eval()(visual if cfg.visual else None, audio if cfg.audio else None)
    assert out.logits.shape == (2, cfg.num_classes)
    assert (out.spatial is None) == ("VS" not in cfg.attention)
    assert (out.channel is None) == ("VCW" not in cfg.attention)
    assert (out.temporal is None) == ("VT" not in cfg.attention)
    assert (out.audio_temporal is None) == ("AT" not in cfg.attention)


def test_explicit_streams_override_and_conflicts():
    cfg = small(attention="VS", streams="both")
    model = VAANet(cfg)
    assert cfg.streams == "both" and hasattr(model, "audio_backbone")
    assert model.classifier.in_features == 768 and not hasattr(model, "audio_temporal")
    assert not any(n.startswith("audio_temporal") for n, _ in model.named_parameters())
    with pytest.raises(ValueError, match="AT needs the audio stream"):
        small(attention="VS+AT", streams="visual")
    with pytest.raises(ValueError, match="needs the visual stream"):
        small(attention="VS", streams="audio")
    # a new attention set re-derives the streams
    assert cfg.replace(attention="AT").streams == "audio"
    assert cfg.replace(attention="AT", streams="both").streams == "both"


def test_presets_and_round_trip():
    paper, official, demo = preset("paper"), preset("official"), preset("demo")
    assert (paper.segments, paper.frames, paper.crop, paper.visual_depth) == (10, 16, 112, 101)
    assert paper.audio_segments == 10 and paper.audio_sampling == "paper"
    assert paper.audio_len * paper.audio_segments == 4800                 # q: 48 s at 100 frames/s
    assert not paper.freeze_visual and not paper.frozen_bn_updates and not paper.unused_visual_fc
    assert (official.segments, official.audio_segments, official.audio_len) == (12, 16, 256)
    assert official.freeze_visual and official.frozen_bn_updates and official.norm == "official"
    assert official.audio_sampling == "official" and official.unused_visual_fc
    assert (demo.visual_depth, demo.segments, demo.frames, demo.crop) == (10, 4, 8, 64)
    assert (demo.audio_segments, demo.audio_len, demo.n_mfcc) == (4, 64, 32)
    for cfg in (paper, official, demo, small(attention="VS+VT", streams="both")):
        d = json.loads(json.dumps(cfg.to_dict()))
        assert ModelConfig.from_dict(d) == cfg
    assert paper.to_dict()["attention"] == "VS+VCW+VT+AT"
    with pytest.raises(ValueError, match="paper, official, demo"):
        preset("papr")
    with pytest.raises(ValueError, match="unknown model config fields"):
        preset("paper", segmnets=3)
    with pytest.raises(ValueError, match="visual_depth must be one of"):
        preset("paper", visual_depth=20)


# ---- forward --------------------------------------------------------------------------------

def test_demo_forward_shapes_and_input_dtypes():
    cfg = preset("demo")
    torch.manual_seed(0)  # the same weights whatever tests ran before
    model = VAANet(cfg).eval()
    visual, audio = demo_inputs(cfg, batch=2)
    with torch.no_grad():
        out = model(visual, audio)
        out_float = model(visual[:1].float(), audio[:1])
    assert out.logits.shape == (2, 4)
    assert out.spatial.shape == (2, 4, feature_grid(64) ** 2) == (2, 4, 4)
    assert out.channel.shape == (2, 4, 512)
    assert out.temporal.shape == (2, 4) and out.audio_temporal.shape == (2, 4)
    torch.testing.assert_close(out.logits[:1], out_float.logits)   # eval: per-sample result
    # weights keep their meaning per sample and segment: softmax x P and x C, ReLU >= 0
    torch.testing.assert_close(out.spatial.sum(-1), torch.full((2, 4), 4.0))
    torch.testing.assert_close(out.channel.sum(-1), torch.full((2, 4), 512.0))
    assert (out.temporal >= 0).all() and (out.audio_temporal >= 0).all()


def test_wrong_inputs_are_reported():
    cfg = small()
    model = VAANet(cfg).eval()
    visual, audio = demo_inputs(cfg)
    with pytest.raises(ValueError, match=r"visual input must be \[B, 2, 3, 2, 64, 64\]"):
        model(visual[:, :1], audio)
    with pytest.raises(ValueError, match="got audio=None"):
        model(visual, None)


def test_switched_off_attention_is_uniform_pooling():
    """With its weights forced uniform, the full model equals the model without attentions."""
    full = VAANet(small()).eval()
    with torch.no_grad():
        full.spatial.fc.weight.zero_()          # softmax of zeros x P = 1 everywhere
        full.channel.fc.weight.zero_()
        for att in (full.temporal, full.audio_temporal):
            att.fc.weight.zero_()
            att.fc.bias.fill_(1.0)              # ReLU(1) = 1 everywhere
    bare = VAANet(small(attention="none")).eval()
    missing, unexpected = bare.load_state_dict(full.state_dict(), strict=False)
    assert not missing
    assert {k.split(".")[0] for k in unexpected} == {"spatial", "channel", "temporal",
                                                     "audio_temporal"}
    visual, audio = demo_inputs(small())
    with torch.no_grad():
        torch.testing.assert_close(full(visual, audio).logits, bare(visual, audio).logits)
        # and a real attention does change the result
        full.spatial.fc.weight.normal_()
        assert not torch.allclose(full(visual, audio).logits, bare(visual, audio).logits)


# ---- gradients and the frozen backbone ------------------------------------------------------

def grads_after_step(cfg):
    torch.manual_seed(0)
    model = VAANet(cfg).train()
    visual, audio = demo_inputs(cfg)
    out = model(visual, audio)
    torch.nn.functional.cross_entropy(out.logits, torch.tensor([0, 1])).backward()
    return model


def test_gradients_flow_into_attention_and_audio_but_not_a_frozen_backbone():
    model = grads_after_step(small(freeze_visual=True))
    assert all(not p.requires_grad and p.grad is None for p in model.backbone.parameters())
    for name in ("reduce", "spatial", "channel", "temporal", "audio_backbone", "audio_embed",
                 "audio_temporal", "classifier"):
        grads = [p.grad for p in getattr(model, name).parameters()]
        assert all(g is not None for g in grads), name
        assert sum(g.abs().sum() for g in grads) > 0, name
    trainable = grads_after_step(small(freeze_visual=False, crop=32, attention="none"))
    assert all(p.grad is not None for p in trainable.backbone.parameters())
    assert trainable.backbone.conv1.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("bn_updates", [False, True])
def test_frozen_backbone_batchnorm(bn_updates):
    cfg = small(freeze_visual=True, frozen_bn_updates=bn_updates)
    model = VAANet(cfg).train()
    bn = model.backbone.bn1
    before = bn.running_mean.clone()
    visual, audio = demo_inputs(cfg)
    out_train = model(visual, audio)
    # official code: train mode -> batch statistics and updated running stats; paper: eval mode
    assert model.backbone.training is bn_updates and model.reduce.training
    assert torch.equal(bn.running_mean, before) is (not bn_updates)
    assert model.reduce[1].num_batches_tracked == 1   # the trainable head always trains
    assert out_train.logits.requires_grad
    # in the model's train mode the backbone uses batch statistics iff bn_updates
    x = model.norm(visual.transpose(0, 1).reshape(-1, *visual.shape[2:]))
    with torch.no_grad():
        f_train = model.train().backbone.features(x)
        f_eval = model.eval().backbone.features(x)
    assert torch.equal(f_train, f_eval) is (not bn_updates)
    assert not model.backbone.training


@pytest.mark.slow
def test_paper_preset_full_size_forward():
    """3D ResNet-101 at 16 x 112 x 112 and the audio ResNet-18 on 480 x 32, batch 1, t = 1."""
    cfg = preset("paper", segments=1, audio_segments=1)
    model = VAANet(cfg).eval()
    assert model.backbone.out_channels == 2048 and model.positions == 16
    visual, audio = demo_inputs(cfg, batch=1)
    assert visual.shape == (1, 1, 3, 16, 112, 112) and audio.shape == (1, 1, 480, 32)
    with torch.no_grad():
        out = model(visual, audio)
    assert out.logits.shape == (1, 8)
    assert out.spatial.shape == (1, 1, 16) and out.channel.shape == (1, 1, 512)
    assert out.temporal.shape == (1, 1) and out.audio_temporal.shape == (1, 1)
    assert torch.isfinite(out.logits).all()


def test_paper_literal_fields_follow_the_equations():
    from model.config import PAPER_LITERAL
    cfg = small(**PAPER_LITERAL)
    model = VAANet(cfg).eval()
    # no 2048 -> 512 reduction: the attentions see the backbone's channels (512 for ResNet-10)
    assert isinstance(model.reduce, torch.nn.Identity)
    assert model.channel.fc.in_features == model.backbone.out_channels
    # plain bilinear scorers: one Conv1d, no BN, no tanh
    for m in (model.spatial, model.channel, model.temporal, model.audio_temporal):
        assert [type(x).__name__ for x in m.conv] == ["Conv1d"]
    assert isinstance(model.audio_embed, torch.nn.Identity)
    assert model.classifier.in_features == model.backbone.out_channels + 512
    out = model(*random_inputs(cfg, batch=2))
    assert out.logits.shape == (2, cfg.num_classes)
    # no x P: spatial weights are a softmax (sum 1); Eq. 9 sums the weighted segments
    assert torch.allclose(out.spatial.sum(-1), torch.ones(2, cfg.segments), atol=1e-5)
    x = torch.randn(3, 8, 4)
    t = model.temporal.__class__(8, 4, None, scorer_kind="linear", pool="sum").eval()
    v, w = t(x)
    assert torch.allclose(v, (x * w.unsqueeze(1)).sum(-1), atol=1e-6)
    # the default (authors' code) keeps BN + tanh and the x P scaling
    default = VAANet(small()).eval()
    assert [type(x).__name__ for x in default.spatial.conv] == ["Conv1d", "BatchNorm1d", "Tanh"]
    d = default(*random_inputs(small(), batch=2))
    assert torch.allclose(d.spatial.sum(-1), torch.full((2, 2), float(default.positions)), atol=1e-4)
    with pytest.raises(ValueError, match="attention_scorer must be one of"):
        small(attention_scorer="softmax")


def test_audio_crop_sets_the_segment_length():
    assert small(audio_crop=40).audio_len == 20
    with pytest.raises(ValueError, match="multiple of audio_segments"):
        small(audio_crop=41)
