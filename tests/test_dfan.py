"""DFAN (our reading of Qiu et al., ICME 2020): config and presets, output shapes, switched-off
feature kinds, attention weights against an independent recomputation, frozen backbones,
ResNet-50 and its torchvision / Places365 weight files, build_model, a few training steps."""
import json

import pytest
import torch
import torch.nn as nn

from model.build import build_model
from tests.inputs import random_inputs
from model.config import ModelConfig, parse_kinds, preset
from model.dfan import DFAN
from model.resnet2d import resnet2d, resnet50
from model.vaanet import VAANet
from model.weights import load_dfan, load_image_backbone, load_torchvision


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One intra-op thread for these small convolutions: on a shared 2-core machine two OpenMP
    threads that wait for each other run many times slower than one (restored afterwards)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


inputs = random_inputs


def small(**overrides):
    """dfan-demo's networks on smaller inputs: 2 segments of 2 frames at 48 px (2 x 2 = 4
    positions per map), width 64."""
    return preset("dfan-demo", **{**dict(segments=2, frames=2, crop=48, audio_segments=2,
                                         audio_len=16, dfan_width=64), **overrides})


def top_level(model):
    return {n for n, _ in model.named_children()}


# ---- config ---------------------------------------------------------------------------------

def test_presets_and_config():
    cfg = preset("dfan")
    assert (cfg.arch, cfg.attention_spec, cfg.streams, cfg.freeze_visual) == ("dfan", "VS+VT", "visual", True)
    assert (cfg.visual_depth, cfg.object_depth, cfg.scene_depth, cfg.dfan_width) == (101, 50, 50, 512)
    assert (cfg.segments, cfg.frames, cfg.crop) == (10, 16, 112)
    assert cfg.dfan_kinds == ("action", "object", "scene")
    demo, vdemo = preset("dfan-demo"), preset("demo")
    assert (demo.visual_depth, demo.object_depth, demo.scene_depth) == (10, 18, 18)
    for name in ("num_classes", "segments", "frames", "crop", "audio_segments", "audio_len", "n_mfcc"):
        assert getattr(demo, name) == getattr(vdemo, name), name
    for name in ("paper", "official", "demo"):
        assert preset(name).arch == "vaanet"
    assert preset("dfan", attention="VS+VT+AT").streams == "both"

    assert parse_kinds("Scene + action") == ("action", "scene")        # canonical order
    assert preset("dfan", dfan_kinds=["scene", "object"]).dfan_kinds == ("object", "scene")
    for c in (cfg, preset("dfan-demo", dfan_kinds="action+scene")):
        assert ModelConfig.from_dict(json.loads(json.dumps(c.to_dict()))) == c

    with pytest.raises(ValueError, match="DFAN has no channel-wise attention"):
        preset("dfan", attention="VS+VCW+VT")
    with pytest.raises(ValueError, match=r"unknown DFAN feature kind 'motion'.*action, object, scene"):
        preset("dfan", dfan_kinds="action+motion")
    with pytest.raises(ValueError, match="at least one feature kind"):
        preset("dfan", dfan_kinds=[])
    with pytest.raises(ValueError, match=r"object_depth must be one of \(18, 34, 50\) \(2D ResNet\), got 101"):
        preset("dfan", object_depth=101)
    with pytest.raises(ValueError, match="arch must be one of vaanet, dfan"):
        ModelConfig(arch="dfam")


def test_build_model_dispatches():
    torch.manual_seed(0)
    assert type(build_model(preset("demo", attention="VS"))) is VAANet
    model = build_model(small().to_dict())                                  # a saved config dict
    assert type(model) is DFAN and model.cfg == small()
    with pytest.raises(ValueError, match="arch='dfan'"):
        DFAN(preset("demo"))
    with pytest.raises(TypeError, match="ModelConfig"):
        build_model("dfan")


# ---- shapes, kinds, attention ----------------------------------------------------------------

def test_dfan_demo_output_shapes_and_one_training_step():
    torch.manual_seed(0)
    cfg = preset("dfan-demo", attention="VS+VT+AT")                       # with the audio stream
    model = build_model(cfg).train()
    frozen = {k: v.clone() for k, v in model.state_dict().items() if k.split(".")[0].endswith("backbone")
              and not k.startswith("audio_")}
    head = model.classifier.weight.clone()
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    visual, audio = inputs(cfg)
    out = model(visual, audio)
    assert out.logits.shape == (2, 4)
    assert out.spatial.shape == (2, 4, 3, 4)        # [B, t, kinds, 2 x 2 positions at 64 px]
    assert out.channel is None
    assert out.temporal.shape == (2, 4)
    assert out.audio_temporal.shape == (2, 4)
    assert model.classifier.in_features == 3 * 512 + 256
    assert {"audio_backbone", "audio_embed", "audio_temporal"} <= top_level(model)
    loss = nn.functional.cross_entropy(out.logits, torch.tensor([0, 3]))
    loss.backward()
    opt.step()
    assert torch.isfinite(loss) and not torch.equal(model.classifier.weight, head)
    assert len(frozen) > 300 and all(torch.equal(v, model.state_dict()[k]) for k, v in frozen.items())
    with pytest.raises(ValueError, match=r"visual input must be \[B, 4, 3, 8, 64, 64\]"):
        model(visual[:, :3], audio)


def test_switched_off_kind_removes_its_modules():
    torch.manual_seed(0)
    full = top_level(build_model(small()))
    assert {"backbone", "object_backbone", "scene_backbone", "action_reduce", "object_reduce",
            "scene_reduce", "action_spatial", "object_spatial", "scene_spatial", "temporal"} <= full
    model = build_model(small(dfan_kinds="action+scene"))
    names = top_level(model)
    assert not {n for n in names if n.startswith("object")}
    assert {"backbone", "scene_backbone", "image_norm"} <= names
    assert model.classifier.in_features == 2 * 64
    with torch.no_grad():
        out = model.eval()(inputs(model.cfg)[0], None)
    assert out.spatial.shape == (2, 2, 2, 4)

    model = build_model(small(dfan_kinds="object", attention="VT"))        # no 3D net, no VS
    names = top_level(model)
    assert "backbone" not in names and "norm" not in names and "scene_backbone" not in names
    assert not {n for n in names if n.endswith("_spatial")}
    with torch.no_grad():
        out = model.eval()(inputs(model.cfg)[0], None)
    assert out.spatial is None and out.temporal.shape == (2, 2)
    with pytest.raises(ValueError, match="no scene stream"):
        load_dfan(model, scene={})


def _recompute(model, visual):
    """DFAN's eval-mode forward written out sample by sample with our own constants; a missing
    attention pools uniformly -> (logits [B, C], spatial [B, t, K, P], temporal [B, t])."""
    cfg = model.cfg
    anet = torch.tensor([114.7748, 107.7354, 99.4750]).view(3, 1, 1, 1)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    logits, spatial, temporal = [], [], []
    for clips in visual.float():                                            # [t, 3, k, H, W]
        frames = (clips[:, :, cfg.frames // 2] / 255 - mean) / std          # middle frames
        maps = {"action": model.backbone.features(clips - anet).mean(dim=2),
                "object": model.object_backbone.features(frames),
                "scene": model.scene_backbone.features(frames)}
        vectors, weights = [], []
        for kind in cfg.dfan_kinds:
            f = getattr(model, f"{kind}_reduce")(maps[kind].flatten(2))    # [t, W, P]
            a = torch.ones(f.shape[0], f.shape[2])
            if hasattr(model, f"{kind}_spatial"):
                att = getattr(model, f"{kind}_spatial")
                h = torch.tanh(att.conv[1](att.conv[0](f))).squeeze(1)
                a = torch.softmax(att.fc(h), dim=1) * f.shape[2]
            weights.append(a)
            vectors.append((f * a[:, None]).mean(dim=2))
        s = torch.cat(vectors, dim=1).T                                     # [K*W, t]
        g = torch.ones(s.shape[1])
        if hasattr(model, "temporal"):
            ta = model.temporal
            g = torch.relu(ta.fc(torch.tanh(ta.conv[1](ta.conv[0](s[None]))).squeeze(1)))[0]
        logits.append(model.classifier((s * g).mean(dim=1)))
        spatial.append(torch.stack(weights, dim=1))
        temporal.append(g)
    return torch.stack(logits), torch.stack(spatial), torch.stack(temporal)


def test_attention_weights_and_logits_match_an_independent_forward():
    torch.manual_seed(1)
    model = build_model(small(segments=3)).eval()
    for m in model.modules():  # non-trivial BatchNorm statistics, so normalisation matters
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
    visual = inputs(model.cfg, batch=2)[0]
    with torch.no_grad():
        out = model(visual, None)
        logits, spatial, temporal = _recompute(model, visual)
    assert out.spatial.shape == (2, 3, 3, 4) and out.temporal.shape == (2, 3)
    torch.testing.assert_close(out.spatial.sum(dim=3), torch.full((2, 3, 3), 4.0))  # mean 1 per map
    assert (out.spatial > 0).all() and (out.temporal >= 0).all()
    torch.testing.assert_close(out.spatial, spatial, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(out.temporal, temporal, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(out.logits, logits, rtol=1e-4, atol=1e-4)
    # the spatial weights differ between kinds and positions: they are not uniform
    assert out.spatial.std() > 1e-3

    # without VS and VT the kinds are pooled uniformly over positions and segments
    plain = build_model(small(segments=3, attention="none", streams="visual")).eval()
    plain.load_state_dict({k: v for k, v in model.state_dict().items()
                           if not k.split(".")[0].endswith("_spatial") and not k.startswith("temporal.")})
    with torch.no_grad():
        out = plain(visual, None)
        logits = _recompute(plain, visual)[0]
    assert out.spatial is None and out.temporal is None
    torch.testing.assert_close(out.logits, logits, rtol=1e-4, atol=1e-4)


# ---- frozen backbones, gradients, training ---------------------------------------------------

def test_gradients_skip_frozen_backbones_and_reach_the_head():
    torch.manual_seed(0)
    model = build_model(small(attention="VS+VT+AT")).train()
    before = {k: v.clone() for k, v in model.object_backbone.state_dict().items()}
    visual, audio = inputs(model.cfg)
    model(visual, audio).logits.logsumexp(dim=1).sum().backward()
    for net in model.backbones():
        assert not net.training                                   # frozen: BN in eval mode
        assert all(p.grad is None and not p.requires_grad for p in net.parameters())
    for k, v in model.object_backbone.state_dict().items():       # statistics unchanged
        assert torch.equal(v, before[k]), k
    for name in ("action_reduce", "object_spatial", "scene_spatial", "temporal", "classifier",
                 "audio_backbone", "audio_temporal"):
        grads = [p.grad for p in getattr(model, name).parameters()]
        assert all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads), name

    model = build_model(small(freeze_visual=False)).train()       # trainable by option
    model(inputs(model.cfg)[0], None).logits.sum().backward()
    for net in model.backbones():
        assert net.training and net.conv1.weight.grad is not None and net.conv1.weight.grad.abs().sum() > 0


def test_loss_decreases_on_a_fixed_batch():
    torch.manual_seed(0)
    model = build_model(small()).train()
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    visual, labels = inputs(model.cfg, batch=4, seed=5)[0], torch.tensor([0, 1, 2, 3])
    losses = []
    for _ in range(6):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(visual, None).logits, labels)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(b < a for a, b in zip(losses, losses[1:])) and losses[-1] < 0.85 * losses[0], losses


# ---- ResNet-50 and its weight files ----------------------------------------------------------

def _bn(name, c):
    return {f"{name}.weight": (c,), f"{name}.bias": (c,), f"{name}.running_mean": (c,),
            f"{name}.running_var": (c,), f"{name}.num_batches_tracked": ()}


def torchvision_resnet50_entries(num_classes=1000):
    """Names -> shapes of torchvision's resnet50 state dict, from its documented layout:
    bottlenecks 1x1 (w) - 3x3 (w) - 1x1 (4w), [3, 4, 6, 3] blocks, a downsample on block 0."""
    e = {"conv1.weight": (64, 3, 7, 7), **_bn("bn1", 64)}
    inplanes = 64
    for li, (width, n) in enumerate(zip([64, 128, 256, 512], [3, 4, 6, 3]), start=1):
        for b in range(n):
            p = f"layer{li}.{b}"
            e[f"{p}.conv1.weight"] = (width, inplanes, 1, 1)
            e.update(_bn(f"{p}.bn1", width))
            e[f"{p}.conv2.weight"] = (width, width, 3, 3)
            e.update(_bn(f"{p}.bn2", width))
            e[f"{p}.conv3.weight"] = (4 * width, width, 1, 1)
            e.update(_bn(f"{p}.bn3", 4 * width))
            if b == 0:
                e[f"{p}.downsample.0.weight"] = (4 * width, inplanes, 1, 1)
                e.update(_bn(f"{p}.downsample.1", 4 * width))
            inplanes = 4 * width
    e["fc.weight"] = (num_classes, 2048)
    e["fc.bias"] = (num_classes,)
    return e


def fake_state(entries, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {k: (torch.tensor(7) if k.endswith("num_batches_tracked") else torch.randn(s, generator=g) * 0.01)
            for k, s in entries.items()}


@pytest.mark.slow
def test_resnet50_full_size_forward():
    torch.manual_seed(0)
    model = resnet2d(50, in_channels=3).eval()
    assert sum(p.numel() for p in model.parameters()) == 25_557_032     # torchvision's count
    assert model.out_channels == 2048
    with torch.no_grad():
        f = model.features(torch.randn(1, 3, 112, 112))
    assert f.shape == (1, 2048, 4, 4)
    with pytest.raises(ValueError, match=r"1-channel 2D ResNet.*resnet2d\(50, in_channels=3\)"):
        resnet2d(50, in_channels=1)


@pytest.mark.slow
def test_torchvision_and_places365_resnet50_files_load_strictly(tmp_path):
    entries = torchvision_resnet50_entries()
    assert len(entries) == 320
    state = fake_state(entries)
    path = tmp_path / "resnet50-imagenet.pth"
    torch.save(state, path)
    model = resnet50()
    report = load_torchvision(model, path)
    assert len(report.loaded) == 318 and report.skipped == ["fc.weight", "fc.bias"]
    for k, v in model.state_dict().items():
        if not k.startswith("fc."):
            assert torch.equal(v, state[k]), k

    # the Places365 release: {'epoch', 'arch', 'state_dict' with module. keys, 'best_prec1'}, 365 classes
    places = fake_state(torchvision_resnet50_entries(num_classes=365), seed=1)
    path = tmp_path / "resnet50_places365.pth.tar"
    torch.save({"epoch": 90, "arch": "resnet50", "best_prec1": 54.7,
                "state_dict": {"module." + k: v for k, v in places.items()}}, path)
    torch.manual_seed(0)
    dfan = build_model(small(dfan_kinds="scene", scene_depth=50))
    (report,) = load_dfan(dfan, scene=path)
    assert len(report.loaded) == 318 and "arch 'resnet50'" in str(report)
    torch.testing.assert_close(dfan.scene_backbone.layer4[2].conv3.weight,
                               places["layer4.2.conv3.weight"], rtol=0, atol=0)

    # a ResNet-18 file in a ResNet-50: an error that names the file's depth
    r18 = {k: v for k, v in resnet2d(18, in_channels=3).state_dict().items()}
    with pytest.raises(ValueError, match=r"looks like a ResNet-18 \(ImageNet\): build the model with depth 18"):
        load_image_backbone(resnet50(), r18)
    with pytest.raises(ValueError, match=r"arch 'resnet18' does not match the model \(ResNet-50\)"):
        load_image_backbone(resnet50(), {"arch": "resnet18", "state_dict": r18}, "Places365")


# ---- model-info ------------------------------------------------------------------------------

def test_model_info_for_dfan():
    import re

    from click.testing import CliRunner

    from cli import main
    result = CliRunner().invoke(main, ["model-info", "--preset", "dfan"])
    assert result.exit_code == 0, result.output
    rows = {m.group(1): (int(m.group(2).replace(",", "")), int(m.group(3).replace(",", "")))
            for m in re.finditer(r"^\s+(\w+)\s+-\s+\w+\s+([\d,]+)\s+([\d,]+)\s", result.output, re.M)}
    assert rows["backbone"] == (85_245_120, 0)                             # Hara's 3D ResNet-101, frozen
    assert rows["object_backbone"] == rows["scene_backbone"] == (25_557_032 - 2_049_000, 0)  # no fc
    reduce = 2048 * 512 + 512 + 2 * 512                                     # Conv1d + BN
    assert rows["action_reduce"] == rows["scene_reduce"] == (reduce, reduce)
    assert rows["object_spatial"][0] == 512 + 2 + 16 * 16                  # conv, BN(1), Linear P->P
    assert rows["temporal"][0] == 3 * 512 + 2 + 10 * 10 + 10
    assert rows["classifier"][0] == 3 * 512 * 8 + 8
    assert "channel" not in rows and "audio_backbone" not in rows
    assert "kinds action+object+scene" in result.output and "[B, 10, 3, 16, 112, 112]" in result.output

    result = CliRunner().invoke(main, ["model-info", "--preset", "dfan-demo", "--kinds", "scene"])
    assert result.exit_code == 0 and "object_backbone" not in result.output
    result = CliRunner().invoke(main, ["model-info", "--preset", "dfan", "--attn", "VS+VCW"])
    assert result.exit_code == 2 and "no channel-wise attention" in result.output
    result = CliRunner().invoke(main, ["model-info", "--preset", "demo", "--kinds", "scene"])
    assert result.exit_code == 2 and "--kinds applies to DFAN presets only" in result.output
