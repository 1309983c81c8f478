"""Reading a video's header from `ffmpeg -i` output."""
import dataclasses

import ffmpeg
import numpy as np
import pytest

from pipeline import ffmpeg_bin
from pipeline.errors import VideoError
from pipeline.probe import frame_table, parse_header, probe
from tests import videos

HEADER = """Input #0, mov,mp4,m4a,3gp,3g2,mj2, from 'x.mp4':
  Metadata:
    major_brand     : isom
  Duration: 00:01:47.04, start: 0.000000, bitrate: 1205 kb/s
  Stream #0:0[0x1](und): Audio: aac (LC) (mp4a / 0x6134706D), 44100 Hz, stereo, fltp, 128 kb/s (default)
  Stream #0:1[0x2](und): Video: h264 (High) (avc1 / 0x31637661), yuv420p(tv, bt709, progressive), 1280x720 [SAR 1:1 DAR 16:9], 1071 kb/s, 29.97 fps, 29.97 tbr, 30k tbn (default)
    Metadata:
      handler_name    : VideoHandler
    Side data:
      Display Matrix: rotation of -90.00 degrees
  Stream #0:2[0x3](und): Video: mjpeg (Baseline), yuvj420p(pc), 300x300 [SAR 1:1 DAR 1:1], 90k tbr, 90k tbn (attached pic)
"""


def test_parse_full_header():
    p = parse_header("x.mp4", HEADER)
    assert p.duration == pytest.approx(107.04) and p.fps == pytest.approx(29.97)
    assert (p.coded_width, p.coded_height, p.rotation) == (1280, 720, 270)
    assert (p.width, p.height) == (720, 1280)  # shown as portrait
    assert p.has_audio and p.audio_stream == 0 and p.video_stream == 0
    assert p.n_frames == round(107.04 * 29.97)


def test_parse_fallbacks():
    h = HEADER.replace("Duration: 00:01:47.04", "Duration: N/A").replace("29.97 fps, ", "")
    h = h.replace("Display Matrix: rotation of -90.00 degrees", "rotate          : 180")
    h = h.replace("[SAR 1:1 DAR 16:9]", "[SAR 4:3 DAR 64:27]")
    p = parse_header("x.mp4", h)
    assert p.duration is None and p.n_frames is None
    assert p.fps == pytest.approx(29.97) and p.fps_known  # from tbr
    assert p.rotation == 180 and (p.width, p.height) == (1707, 720)


def test_cover_art_only_is_not_a_video():
    h = "\n".join(line for line in HEADER.splitlines() if "h264" not in line)
    with pytest.raises(VideoError, match="no video stream"):
        parse_header("x.m4a", h)


def test_probe_real_files(tmp_path):
    v = videos.write_video(tmp_path / "a.mp4", videos.counter_frames(30, 80, 60), fps=30,
                           pcm=videos.tone(440, 1.0))
    p = probe(v)
    assert (p.width, p.height, p.fps, p.rotation, p.has_audio) == (80, 60, 30, 0, True)
    assert p.duration == pytest.approx(1.0, abs=0.05)
    r = probe(videos.rotate(v, tmp_path / "r.mp4", 270))
    assert (r.rotation, r.width, r.height) == (270, 60, 80)
    png = tmp_path / "still.png"
    ffmpeg_bin.run(ffmpeg.input(str(v)).output(str(png), vframes=1))
    with pytest.raises(VideoError, match="still image"):
        probe(png)


def test_start_time_is_read():
    assert parse_header("x.mp4", HEADER).start == 0.0
    h = HEADER.replace("start: 0.000000", "start: 1.236000")
    assert parse_header("x.mp4", h).start == pytest.approx(1.236)
    h = HEADER.replace("start: 0.000000", "start: -0.080000")
    assert parse_header("x.mp4", h).start == pytest.approx(-0.08)


def test_packets_listed_with_the_header_are_the_separate_listing(tmp_path):
    v = videos.write_video(tmp_path / "a.mp4", videos.counter_frames(120, 80, 60), gop=30,
                           pcm=videos.tone(440, 5.0))
    both, alone = probe(v, packets=True), probe(v)
    # the same header fields (the logs differ after the input's header)
    assert dataclasses.replace(both, log="") == dataclasses.replace(alone, log="")
    assert "Input #0" in both.log and "Output #0" not in both.log
    a, b = frame_table(both), frame_table(alone)
    assert len(a.times) == 120 and a.keyframes.tolist() == [0, 30, 60, 90]
    for name in ("times", "keyframes", "packets"):
        assert np.array_equal(getattr(a, name), getattr(b, name))
    assert a.packets.tolist() == list(range(120))  # no B-frames: decoding order is display order
    with pytest.raises(VideoError, match="no video stream"):
        probe(videos.audio_only(tmp_path / "sound.wav"), packets=True)
    with pytest.raises(VideoError, match="not a video file"):
        probe(videos.not_a_video(tmp_path / "text.mp4"), packets=True)
