"""A small dataset of real H.264 + AAC videos whose class needs both sight and sound, made from a seed.

Each class has a hue (the dominant colour of the picture) and a pitch (the tone on the sound
track), from data/datasets/demo.json. The four classes form a 2 x 2 grid: two hues (red for the
negative classes, cyan for the positive ones) times two pitches (220 and 495 Hz), so each class
shares its colour with one class and its tone with another. The picture alone tells only the
polarity, the sound alone only the pitch: one stream can at best tell two pairs apart (about
half the videos), both streams together tell every class. Every video varies around them: hue
and pitch jitter, saturation, brightness gradient, a moving disc (size, speed, direction), pixel
noise, loudness, tremolo and background hiss. The frames and PCM are made with numpy from `seed`
and piped through ffmpeg (one encoder thread, bit exact flags), so the same seed gives the same
files, byte for byte on the same ffmpeg build.
"""
from __future__ import annotations

import colorsys
import json
import os
import tempfile
import wave
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import ffmpeg
import numpy as np

from pipeline import atomic, ffmpeg_bin

DEFINITION = Path(__file__).resolve().parents[1] / "data" / "datasets" / "demo.json"
AUDIO_RATE = 22050  # the ETL resamples to its own rate; AAC at 44.1 kHz would double the encode time


def demo_classes() -> list[str]:
    with open(DEFINITION) as f:
        return list(json.load(f)["classes"])


def demo_signals() -> list[tuple[float, float]]:
    """(hue in [0, 1), pitch in Hz) of every demo class, in class order."""
    with open(DEFINITION) as f:
        d = json.load(f)
    return [(float(d["signals"][c]["hue"]), float(d["signals"][c]["pitch_hz"])) for c in d["classes"]]


def _frames(rng: np.random.Generator, class_hue: float, n: int, w: int, h: int) -> np.ndarray:
    hue = (class_hue + rng.normal(0, 0.02)) % 1.0
    sat = rng.uniform(0.55, 0.9)
    # background: the class colour with a brightness gradient in a random direction
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    grad = np.cos(angle) * xx / w + np.sin(angle) * yy / h
    value = 0.55 + 0.3 * (grad - grad.min()) / max(np.ptp(grad), 1e-6)
    rgb = np.array(colorsys.hsv_to_rgb(hue, sat, 1.0), np.float32)
    frames = (value[..., None] * rgb * 255)[None]
    # a disc of the complementary colour moving in a straight line, bouncing off the borders
    radius = rng.uniform(0.08, 0.2) * h
    disc = np.array(colorsys.hsv_to_rgb((hue + 0.5) % 1.0, sat, 0.9), np.float32) * 255
    pos = rng.uniform([radius, radius], [w - radius, h - radius])
    vel = rng.normal(0, 1.5, 2) + np.sign(rng.normal(size=2))
    tt = np.arange(n)[:, None]
    span = np.array([w - 2 * radius, h - 2 * radius])
    path = np.abs((pos - radius + vel * tt) % (2 * span) - span)  # triangle wave = bounce
    cx, cy = path[:, 0] + radius, path[:, 1] + radius
    dx = (np.arange(w, dtype=np.float32)[None, None, :] - cx[:, None, None]) ** 2
    dy = (np.arange(h, dtype=np.float32)[None, :, None] - cy[:, None, None]) ** 2
    frames = np.where((dx + dy < radius ** 2)[..., None], disc, frames)
    # grain: one noise value per pixel, shared by the three channels (brightness noise)
    frames += rng.standard_normal((n, h, w, 1), dtype=np.float32) * rng.uniform(2, 10)
    return np.clip(frames, 0, 255).astype(np.uint8)


def _sound(rng: np.random.Generator, class_pitch: float, n_samples: int) -> np.ndarray:
    pitch = class_pitch * (1 + rng.normal(0, 0.01))
    t = np.arange(n_samples) / AUDIO_RATE
    tone = np.sin(2 * np.pi * pitch * t) + 0.3 * np.sin(2 * np.pi * 2 * pitch * t + rng.uniform(0, 6.3))
    tremolo = 1 + 0.3 * np.sin(2 * np.pi * rng.uniform(0.5, 4) * t + rng.uniform(0, 6.3))
    loud = rng.uniform(0.1, 0.5)
    hiss = rng.uniform(0.005, 0.05) * rng.standard_normal(n_samples)
    pcm = loud * tone * tremolo / 1.3 + hiss
    return (np.clip(pcm, -1, 1) * 32767).astype(np.int16)


def _write_wav(path: str, pcm: np.ndarray):
    with wave.open(path, "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(AUDIO_RATE)
        f.writeframes(pcm.tobytes())


def encode(path: Path, frames: np.ndarray, pcm: np.ndarray | None, fps: float, gop: int | None = None):
    """Encode uint8 RGB frames [n, h, w, 3] (+ mono int16 PCM at AUDIO_RATE) into an H.264/AAC mp4.

    Written under a temporary name and renamed, so a file that exists is complete."""
    n, h, w, _ = frames.shape
    with atomic.target(path) as tmp, tempfile.TemporaryDirectory(prefix="vaanet-demo-") as d:
        video = ffmpeg.input("pipe:", format="rawvideo", pix_fmt="rgb24", s=f"{w}x{h}", r=fps)
        streams, opts = [video], {}
        if pcm is not None:
            wav = os.path.join(d, "a.wav")
            _write_wav(wav, pcm)
            streams.append(ffmpeg.input(wav))
            opts = {"acodec": "aac", "audio_bitrate": "64k", "flags:a": "+bitexact"}
        out = ffmpeg.output(*streams, str(tmp), vcodec="libx264", preset="ultrafast", crf=23,
                            pix_fmt="yuv420p", g=gop or int(round(2 * fps)), threads=1,
                            map_metadata=-1, fflags="+bitexact", **{"flags:v": "+bitexact"}, **opts)
        ffmpeg_bin.run(out, reason="demo encode failed", input=frames.tobytes())


def make_demo_videos(out_dir, seed: int = 0, per_class: int = 10, duration: float = 4.0,
                     size: tuple[int, int] = (160, 120), fps: float = 25) -> Path:
    """Write out_dir/<class>/<class>_<i>.mp4 for the classes of data/datasets/demo.json.

    `size` is (width, height). Files already made with the same settings are kept (a stamp file
    records the settings), so calling it again is cheap and changes nothing.
    """
    out_dir = Path(out_dir)
    classes, signals = demo_classes(), demo_signals()
    settings = dict(seed=seed, per_class=per_class, duration=duration, size=list(size), fps=fps,
                    classes=classes, signals=[list(s) for s in signals])
    stamp = out_dir / ".demo.json"
    paths = [out_dir / c / f"{c}_{i:02d}.mp4" for c in classes for i in range(per_class)]
    if stamp.exists() and json.loads(stamp.read_text()) == settings and all(p.exists() for p in paths):
        return out_dir
    stamp.unlink(missing_ok=True)
    w, h = size
    n = max(1, int(round(duration * fps)))
    n_samples = int(round(duration * AUDIO_RATE))

    def make(c: int, i: int):
        rng = np.random.default_rng([seed, c, i])  # one stream per video: order does not matter
        hue, pitch = signals[c]
        frames = _frames(rng, hue, n, w, h)
        encode(out_dir / classes[c] / f"{classes[c]}_{i:02d}.mp4", frames, _sound(rng, pitch, n_samples), fps)

    for name in classes:
        (out_dir / name).mkdir(parents=True, exist_ok=True)
    # numpy drawing and the ffmpeg encoder overlap well in two threads
    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(lambda ci: make(*ci), [(c, i) for c in range(len(classes)) for i in range(per_class)]))
    atomic.write_text(stamp, json.dumps(settings))
    return out_dir
