"""`vaanet predict --explain`: Grad-CAM follows what decides the class; the figure and the numbers
for VAANet, its ablation rows and DFAN."""
import struct

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from cli import main
from model.build import build_model
from model.config import preset
from pipeline.params import PreprocessParams
from tests import videos as tv
from trainer import checkpoint
from trainer.figure import figure_size

SIDE, SEGMENTS, GREY = 96, 3, 110
PARAMS = PreprocessParams(segments=SEGMENTS, snippets=1, frames=4, short_side=SIDE, max_long_side=SIDE)
TINY = dict(segments=SEGMENTS, frames=4, crop=SIDE, audio_segments=SEGMENTS, audio_len=32,
            num_classes=2)


def png_size(path) -> tuple[int, int]:
    data = open(path, "rb").read(24)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def patch_video(path, audio: bool = False):
    """A grey square video whose bright patch sits in column s (of 3) during segment s."""
    frames = np.full((SEGMENTS * 10, SIDE, SIDE, 3), GREY, np.uint8)
    third = SIDE // 3
    for s in range(SEGMENTS):
        frames[s * 10:(s + 1) * 10, third:2 * third, s * third:(s + 1) * third] = 255
    return tv.write_video(path, frames, fps=25, pcm=tv.tone(440, 1.2) if audio else None)


def save(path, model, classes=("patch", "none")):
    return checkpoint.save(path, model=model.state_dict(), optimizer=None, scaler=None, epoch=1,
                           model_config=model.cfg.to_dict(), run_config={}, classes=list(classes),
                           polarity=[1, 0], best=None, data_params=PARAMS.to_dict())


def patch_model():
    """A VAANet set by hand to answer 'patch' where layer4 looks like the patch: the reduction
    passes layer4 through, the classifier's 'patch' row is the patch's feature minus the grey's."""
    torch.manual_seed(0)
    cfg = preset("demo", attention="none", streams="visual", visual_channels=512, freeze_visual=True,
                 **{k: v for k, v in TINY.items() if not k.startswith("audio")})
    m = build_model(cfg).eval()
    clip = torch.full((SEGMENTS, 3, 4, SIDE, SIDE), float(GREY))
    clip[0, :, :, 32:64, 0:32] = 255
    with torch.no_grad():
        conv = m.reduce[0]
        conv.weight.zero_()
        conv.weight[:, :, 0].copy_(torch.eye(512))
        conv.bias.zero_()
        a = m.backbone.features(m.norm(clip)).mean(2)        # [3, 512, 3, 3]
        m.classifier.weight.zero_()
        m.classifier.bias.zero_()
        m.classifier.weight[0] = a[0, :, 1, 0] - a[1].mean((1, 2))
    return m


def explain(video, ckpt, out, *extra):
    return CliRunner().invoke(main, ["predict", str(video), "--checkpoint", str(ckpt), "--explain",
                                     str(out), "--device", "cpu", "-q", *map(str, extra)])


def test_gradcam_peak_follows_the_moving_patch(tmp_path):
    video = patch_video(tmp_path / "patch.mp4")
    ckpt = save(tmp_path / "patch.pt", patch_model())
    r = explain(video, ckpt, tmp_path / "x")
    assert r.exit_code == 0, r.output
    assert "patch" in r.output
    numbers = np.load(tmp_path / "x" / "patch.npz")
    cam = numbers["gradcam"]
    assert cam.shape == (SEGMENTS, 3, 3)
    for s in range(SEGMENTS):  # the hottest cell is in the patch's column, in its row
        assert np.unravel_index(cam[s].argmax(), cam[s].shape) == (1, s), cam[s]
    assert numbers["frames"].shape == (SEGMENTS, SIDE, SIDE, 3)
    assert int(numbers["target"]) == 0 and "temporal" not in numbers
    assert png_size(tmp_path / "x" / "patch.png") == figure_size(SEGMENTS) == (800, 440)


@pytest.mark.parametrize("name,arch,attention", [
    ("vaanet", "demo", "VS+VCW+VT+AT"),
    ("audio-row", "demo", "AT"),
    ("visual-row", "demo", "VS+VCW"),
    ("dfan", "dfan-demo", "VS+VT+AT"),
])
def test_every_architecture_gets_its_figure_and_numbers(tmp_path, name, arch, attention):
    torch.manual_seed(1)
    cfg = preset(arch, attention=attention, visual_channels=32, audio_channels=16, dfan_width=16, **TINY)
    ckpt = save(tmp_path / f"{name}.pt", build_model(cfg))
    video = patch_video(tmp_path / "clip.mp4", audio=True)
    r = explain(video, ckpt, tmp_path / "x", "--class", "none")
    assert r.exit_code == 0, r.output
    assert png_size(tmp_path / "x" / "clip.png") == figure_size(SEGMENTS)
    n = np.load(tmp_path / "x" / "clip.npz")
    assert abs(float(n["probs"].sum()) - 1) < 1e-5 and int(n["target"]) == 1
    assert ("gradcam" in n) == cfg.visual and ("audio_temporal" in n) == ("AT" in attention)
    assert ("temporal" in n) == ("VT" in attention) and ("channel" in n) == ("VCW" in attention)
    if cfg.visual:
        assert n["gradcam"].shape == (SEGMENTS, 3, 3) and (n["gradcam"] >= 0).all()
    if arch == "dfan-demo":
        assert n["spatial"].shape == (SEGMENTS, 3, 9)
        assert {"gradcam_action", "gradcam_object", "gradcam_scene"} <= set(n.files)
    if "AT" in attention:
        assert n["audio_temporal"].shape == (SEGMENTS,)
    # the VS map as the heat map instead: only where there is a VS attention
    r = explain(video, ckpt, tmp_path / "y", "--heatmap", "attention")
    if "VS" in attention:
        assert r.exit_code == 0, r.output
        assert png_size(tmp_path / "y" / "clip.png") == figure_size(SEGMENTS)
    else:
        assert r.exit_code == 2 and "needs the VS attention" in r.output
        assert not (tmp_path / "y").exists()
