"""Checkpoints of the authors' VAANet code: the 792-key format, import into the official preset,
identical outputs, and the authors' forward pass re-written here from docs/reference.md
("Authors' code: modules and shapes", "Authors' checkpoint")."""
import json

import pytest
import torch
import torch.nn as nn
from click.testing import CliRunner

from cli import main
from trainer import checkpoint
from model.config import ModelConfig, preset
from model.official import (build_from_official, load_official, official_checkpoint, official_state_dict,
                            to_official)
from model.resnet2d import resnet18
from model.resnet3d import resnet3d
from model.vaanet import VAANet, feature_grid
from model.weights import UnsafeFileError

# parameter counts of the authors' audio-visual model with 8 classes (docs/reference.md, "Parameter counts")
OFFICIAL_COUNTS = {"resnet": 85_245_120, "conv0": 1_050_112, "sa_net": 770, "cwa_net": 262_162,
                   "ta_net": 670, "a_resnet": 11_167_552, "a_fc": 131_840, "aa_net": 530,
                   "av_fc": 6_152, "fc": 4_104}
BUFFERS = ("running_mean", "running_var", "num_batches_tracked")


def tiny_official(**overrides):
    """The official preset, shrunk: 3D ResNet-10, 3 segments of 2 frames at 64 px, 4 audio
    segments of 16 MFCC frames."""
    return preset("official", **{**dict(visual_depth=10, segments=3, frames=2, crop=64,
                                         audio_segments=4, audio_len=16), **overrides})


TINY_SHAPE = dict(frames=2, crop=64, audio_len=16)   # what the tensors of a file do not tell


def randomised(model, seed=0):
    """Random BN statistics and affine parameters, so that eval mode is really exercised."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.normal_(0, 0.1, generator=g)
                m.running_var.uniform_(0.5, 1.5, generator=g)
                m.weight.uniform_(0.5, 1.5, generator=g)
                m.bias.normal_(0, 0.1, generator=g)
        for att in (model.temporal, model.audio_temporal):
            att.fc.bias.uniform_(0.5, 1.5, generator=g)
    return model


def inputs(cfg, batch=2, seed=1):
    g = torch.Generator().manual_seed(seed)
    visual = torch.randint(0, 256, (batch, cfg.segments, 3, cfg.frames, cfg.crop, cfg.crop),
                           generator=g).float()
    audio = torch.randn(batch, cfg.audio_segments, cfg.audio_len, cfg.n_mfcc, generator=g)
    return visual, audio


# ---- the authors' layout and forward (docs/reference.md, "Authors' code: modules and shapes")

def attention_dict(in_channels, steps, bias, last):
    return nn.ModuleDict({
        "conv": nn.Sequential(nn.Conv1d(in_channels, 1, 1, bias=False), nn.BatchNorm1d(1), nn.Tanh()),
        "fc": nn.Linear(steps, steps, bias=bias),
        last: nn.Softmax(dim=1) if last == "softmax" else nn.ReLU(),
    })


class AuthorsVAANet(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        r = resnet3d(cfg.visual_depth)
        k, m = 512, feature_grid(cfg.crop) ** 2
        self.k, self.m, self.na = k, m, cfg.audio_segments
        self.resnet = nn.Sequential(*list(r.children())[:8])        # conv1 .. layer4
        self.conv0 = nn.Sequential(nn.Conv1d(r.out_channels, k, 1), nn.BatchNorm1d(k), nn.ReLU())
        self.sa_net = attention_dict(k, m, False, "softmax")
        self.ta_net = attention_dict(k, cfg.segments, True, "relu")
        self.cwa_net = nn.ModuleDict({
            "conv": nn.Sequential(nn.Conv1d(m, 1, 1, bias=False), nn.BatchNorm1d(1), nn.Tanh()),
            "fc": nn.Linear(k, k, bias=False), "softmax": nn.Softmax(dim=1)})
        self.fc = nn.Linear(k, cfg.num_classes)
        # torchvision's ResNet-18 with its first conv replaced, cut before avgpool, plus an
        # average pool over the whole layer4 map (8 x 2 for 256 x 32 segments)
        conv = nn.Conv2d(1, 64, kernel_size=(7, 1), stride=(2, 1), padding=(3, 0), bias=False)
        body = [conv, *list(resnet18(in_channels=1).children())[1:8]]
        with torch.no_grad():
            pool = nn.Sequential(*body).eval()(torch.zeros(1, 1, cfg.audio_len, cfg.n_mfcc)).shape[2:]
        self.a_resnet = nn.Sequential(*body, nn.AvgPool2d(tuple(pool)))
        self.a_fc = nn.Sequential(nn.Linear(512, 256), nn.BatchNorm1d(256), nn.Tanh())
        self.aa_net = attention_dict(256, cfg.audio_segments, True, "relu")
        self.av_fc = nn.Linear(768, cfg.num_classes)
        self.resnet.requires_grad_(False)

    def forward(self, visual, audio):
        visual = visual.transpose(0, 1).contiguous()
        visual = visual / 255.0 - 100.0 / 255.0
        seq_len, batch = visual.shape[:2]
        visual = visual.view(seq_len * batch, *visual.shape[2:])
        with torch.no_grad():
            f = torch.flatten(torch.squeeze(self.resnet(visual), dim=2), start_dim=2)
        f = self.conv0(f)
        hs = self.sa_net["fc"](torch.squeeze(self.sa_net["conv"](f), dim=1))
        a_s = self.sa_net["softmax"](hs) * self.m
        fs = f * a_s.unsqueeze(1).repeat(1, self.k, 1)
        hc = self.cwa_net["fc"](torch.squeeze(self.cwa_net["conv"](fs.transpose(1, 2).contiguous()), 1))
        a_c = self.cwa_net["softmax"](hc) * self.k
        fsc = (fs * a_c.unsqueeze(2).repeat(1, 1, self.m)).mean(2)
        fsc = fsc.view(seq_len, batch, self.k).permute(1, 2, 0).contiguous()
        a_t = self.ta_net["relu"](self.ta_net["fc"](torch.squeeze(self.ta_net["conv"](fsc), 1)))
        fsct = (fsc * a_t.unsqueeze(1).repeat(1, self.k, 1)).mean(2)

        bs = audio.size(0)
        audio = torch.stack(audio.transpose(0, 1).contiguous().chunk(self.na, dim=0), dim=0)
        audio = torch.flatten(audio.transpose(1, 2).contiguous(), 0, 1).unsqueeze(1)
        audio = self.a_fc(torch.flatten(self.a_resnet(audio), 1))
        audio = audio.view(self.na, bs, 256).permute(1, 2, 0).contiguous()
        a_a = self.aa_net["relu"](self.aa_net["fc"](torch.squeeze(self.aa_net["conv"](audio), 1)))
        fa = (audio * a_a.unsqueeze(1).repeat(1, 256, 1)).mean(2)
        out = self.av_fc(torch.cat([fsct, fa], dim=1))
        return (out, a_s.view(seq_len, batch, self.m), a_c.view(seq_len, batch, self.k),
                a_t.view(batch, seq_len), a_a)


def assert_same_outputs(ours, theirs):
    logits, alpha, beta, gamma, a_a = theirs
    torch.testing.assert_close(ours.logits, logits, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(ours.spatial, alpha.transpose(0, 1), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(ours.channel, beta.transpose(0, 1), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(ours.temporal, gamma, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(ours.audio_temporal, a_a, rtol=1e-4, atol=1e-5)


# ---- tests ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def full_size_file(tmp_path_factory):
    torch.manual_seed(0)
    model = VAANet(preset("official"))
    path = tmp_path_factory.mktemp("official") / "vaanet_ve8.pth"
    torch.save(official_checkpoint(model, epoch=37), path)
    return path, official_state_dict(model)


@pytest.mark.slow
def test_full_size_export_has_the_authors_792_keys(full_size_file):
    path, state = full_size_file
    raw = torch.load(path, weights_only=True)
    assert set(raw) == {"epoch", "state_dict", "optimizer"} and raw["epoch"] == 37
    sd = raw["state_dict"]
    assert len(sd) == 792
    assert {k.split(".")[0] for k in sd} == set(OFFICIAL_COUNTS)
    assert sd["resnet.0.weight"].shape == (64, 3, 7, 7, 7)
    assert sd["resnet.7.2.conv3.weight"].shape == (2048, 512, 1, 1, 1)
    assert sd["resnet.6.22.bn3.running_var"].shape == (1024,)
    assert sd["conv0.0.weight"].shape == (512, 2048, 1) and "conv0.0.bias" in sd
    assert sd["sa_net.fc.weight"].shape == (16, 16) and "sa_net.fc.bias" not in sd
    assert sd["ta_net.fc.weight"].shape == (12, 12) and "ta_net.fc.bias" in sd
    assert sd["a_resnet.0.weight"].shape == (64, 1, 7, 1)
    assert sd["a_resnet.7.1.bn2.num_batches_tracked"].shape == ()
    assert sd["aa_net.fc.weight"].shape == (16, 16)
    assert sd["av_fc.weight"].shape == (8, 768) and sd["fc.weight"].shape == (8, 512)
    params = {}
    for k, v in sd.items():
        if not k.endswith(BUFFERS):
            params[k.split(".")[0]] = params.get(k.split(".")[0], 0) + v.numel()
    assert params == OFFICIAL_COUNTS


@pytest.mark.slow
def test_import_checkpoint_command(full_size_file, tmp_path):
    path, state = full_size_file
    dst = tmp_path / "imported.pt"
    result = CliRunner().invoke(main, ["import-checkpoint", str(path), str(dst)])
    assert result.exit_code == 0, result.output
    assert "assuming dataset ve8" in result.output
    ckpt = checkpoint.load(dst)
    assert ckpt["epoch"] == 37 and ckpt["classes"][0] == "Anger" and len(ckpt["classes"]) == 8
    cfg = ModelConfig.from_dict(ckpt["model_config"])
    assert cfg == preset("official")
    # every tensor of the authors' file, bit for bit, under our names
    back = to_official(ckpt["model"])
    assert back.keys() == state.keys() and all(torch.equal(back[k], state[k]) for k in state)
    side = json.loads((tmp_path / "imported.config.json").read_text())
    assert side["model_config"] == cfg.to_dict() and side["polarity"] == [0, 1, 0, 0, 1, 0, 1, 1]

    wrong = CliRunner().invoke(main, ["import-checkpoint", str(path), str(tmp_path / "x.pt"),
                                      "--num-classes", "6"])
    assert wrong.exit_code == 2 and "trained for 8 classes" in wrong.output


def test_import_gives_the_same_outputs_as_the_authors_forward(tmp_path):
    """A random official-preset model, exported in the authors' format and imported again, vs
    the authors' module layout and forward (this file) loaded strictly from the same file:
    logits and every attention weight, in eval and then in train mode (frozen backbone whose
    BatchNorm uses batch statistics and updates its running statistics)."""
    torch.manual_seed(2)
    ours = randomised(VAANet(tiny_official()), seed=3)
    path = tmp_path / "tiny.pth"
    torch.save(official_checkpoint(ours, epoch=5), path)
    imported, cfg, meta = build_from_official(path, **TINY_SHAPE)
    assert cfg == tiny_official() and meta == {"epoch": 5}
    assert not any(p.requires_grad for p in imported.backbone.parameters())
    theirs = AuthorsVAANet(cfg)
    theirs.load_state_dict(torch.load(path, weights_only=True)["state_dict"], strict=True)
    visual, audio = inputs(cfg, batch=2)
    flat_audio = audio.reshape(2, -1, audio.shape[-1])                # their [B, 4096, 32] layout
    for training in (False, True):
        for m in (ours, imported, theirs):
            m.train(training)
        before = imported.backbone.bn1.running_mean.clone()
        with torch.no_grad():
            a = ours(visual, audio)
        b = imported(visual, audio)                                     # one step each
        for x, y in zip(a, b):
            assert torch.equal(x, y)
        assert_same_outputs(b, theirs(visual, flat_audio))
        after_ours, after_theirs = official_state_dict(imported), theirs.state_dict()
        for k in after_theirs:
            torch.testing.assert_close(after_ours[k], after_theirs[k], rtol=1e-4, atol=1e-5)
        # the frozen backbone's statistics move in train mode only, as in the authors' code
        assert torch.equal(imported.backbone.bn1.running_mean, before) is (not training)


class Marker:
    ran = False

    def __setstate__(self, state):
        Marker.ran = True


def test_wrong_checkpoints_are_reported(tmp_path):
    torch.manual_seed(3)
    model = VAANet(tiny_official())
    state = official_state_dict(model)

    missing = dict(state)
    del missing["cwa_net.fc.weight"]
    with pytest.raises(ValueError, match=r"missing from the file: 1 keys, e.g. cwa_net.fc.weight"):
        build_from_official(missing, **TINY_SHAPE)

    extra = {**state, "decoder.weight": torch.zeros(1)}
    with pytest.raises(ValueError, match="belong to no module of the official VAANet: decoder.weight"):
        build_from_official(extra, **TINY_SHAPE)

    with pytest.raises(ValueError, match="trained for 8 classes"):
        build_from_official(state, num_classes=6, **TINY_SHAPE)

    six = VAANet(tiny_official(num_classes=6))
    with pytest.raises(ValueError, match=r"shape mismatches: 4, e.g. fc.weight: file \[8, 512\], model \[6, 512\]"):
        load_official(six, state)

    hara = {"arch": "resnet-10", "state_dict": resnet3d(10).state_dict()}
    torch.save(hara, tmp_path / "hara.pth")
    with pytest.raises(ValueError, match="not an audio-visual VAANet checkpoint.*missing av_fc.weight"):
        build_from_official(tmp_path / "hara.pth")

    with pytest.raises(ValueError, match="cannot hold an official checkpoint"):
        load_official(VAANet(tiny_official(attention="VS+VCW+VT")), state)

    torch.save({"epoch": 1, "state_dict": state, "optimizer": Marker()}, tmp_path / "evil.pth")
    with pytest.raises(UnsafeFileError, match="pickled code"):
        build_from_official(tmp_path / "evil.pth")
    assert not Marker.ran
