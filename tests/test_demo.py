"""The built-in demo data: real H.264/AAC files, class visible and audible (a 2 x 2 grid of colour and
tone), same seed -> same data."""
import colorsys
import json

import numpy as np

from pipeline.demo import DEFINITION, demo_signals, make_demo_videos
from pipeline.extract import extract_video
from pipeline.params import PreprocessParams
from pipeline.probe import probe
from tests import videos

P = PreprocessParams(segments=2, snippets=1, frames=4, short_side=32, max_long_side=48)


def circular_distance(a, b):
    d = abs(a - b) % 1.0
    return min(d, 1 - d)


def test_classes_form_a_grid_so_that_both_streams_are_needed():
    """Two hues x two pitches: each class shares its colour with exactly one other class and its
    tone with exactly one other, and the colour gives the polarity."""
    d = json.loads(DEFINITION.read_text())
    signals = demo_signals()
    assert len(signals) == len(d["classes"]) == 4 and len(set(signals)) == 4
    hues, pitches = {h for h, _ in signals}, {p for _, p in signals}
    assert len(hues) == len(pitches) == 2
    for h, p in signals:
        assert [h2 for h2, _ in signals].count(h) == 2 and [p2 for _, p2 in signals].count(p) == 2
    assert min(circular_distance(*hues), abs(max(pitches) / min(pitches) - 1)) > 0.3
    negative_hues = {h for c, (h, _) in zip(d["classes"], signals) if c in d["negative"]}
    positive_hues = {h for c, (h, _) in zip(d["classes"], signals) if c not in d["negative"]}
    assert len(negative_hues) == len(positive_hues) == 1 and negative_hues != positive_hues


def test_demo_videos_carry_the_class_and_repeat_from_the_seed(tmp_path):
    classes = json.loads(DEFINITION.read_text())["classes"]
    signals = demo_signals()
    a = make_demo_videos(tmp_path / "a", seed=3, per_class=2, duration=1.0)
    files = sorted(p.relative_to(a) for p in a.rglob("*.mp4"))
    assert [str(f) for f in files] == [f"{c}/{c}_{i:02d}.mp4" for c in sorted(classes) for i in range(2)]

    for c, name in enumerate(classes):
        for i in range(2):
            path = a / name / f"{name}_{i:02d}.mp4"
            info = probe(path)
            assert info.has_audio and (info.width, info.height, info.fps) == (160, 120, 25)
            assert "h264" in info.log and "aac" in info.log
            # picture: the dominant hue is the class hue
            rgb = extract_video(path, P).frames.reshape(-1, 3).mean(0) / 255
            assert circular_distance(colorsys.rgb_to_hsv(*rgb)[0], signals[c][0]) < 0.07
            # sound: the strongest frequency is the class pitch
            pcm = videos.ffmpeg_pcm(path).astype(float)
            spectrum = np.abs(np.fft.rfft(pcm * np.hanning(len(pcm))))
            peak = np.argmax(spectrum) * 16000 / len(pcm)
            assert abs(peak / signals[c][1] - 1) < 0.05

    b = make_demo_videos(tmp_path / "b", seed=3, per_class=2, duration=1.0)
    for f in files:
        assert (a / f).read_bytes() == (b / f).read_bytes()
    first = a / files[0]
    assert np.array_equal(extract_video(first, P).frames, extract_video(b / files[0], P).frames)

    other = make_demo_videos(tmp_path / "c", seed=4, per_class=1, duration=1.0)
    assert not np.array_equal(extract_video(other / files[0], P).frames, extract_video(first, P).frames)


def test_second_call_keeps_the_files(tmp_path):
    out = make_demo_videos(tmp_path, seed=0, per_class=1, duration=0.5, size=(64, 48), fps=10)
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*.mp4")}
    assert len(stamps) == 4
    make_demo_videos(tmp_path, seed=0, per_class=1, duration=0.5, size=(64, 48), fps=10)
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.mp4")} == stamps
    ex = extract_video(next(iter(stamps)), P)
    assert ex.info["n_frames"] == 5 and ex.frames.shape[-3:] == (32, 43, 3)
