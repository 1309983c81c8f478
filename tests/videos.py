"""Test videos made with ffmpeg whose content is known, so decoded frames can be checked exactly.

Frame counter: frame n shows the bits of n as a 4 x 3 grid of black/white cells drawn inside the
central square of the picture (the part that survives any centre crop), so `read_counter` tells,
from a decoded and rescaled frame, which source frame it is.
"""
from __future__ import annotations

import os
import subprocess
import wave
from pathlib import Path

import ffmpeg
import numpy as np

from pipeline import ffmpeg_bin

GRID = (3, 4)  # rows, columns of the counter cells: 12 bits, frames 0..4095


def counter_frames(n: int, width: int, height: int, colour=(0, 0, 0)) -> np.ndarray:
    """uint8 [n, height, width, 3]: background `colour`, frame index drawn as a bit grid."""
    frames = np.empty((n, height, width, 3), np.uint8)
    frames[:] = np.asarray(colour, np.uint8)
    side = min(width, height)
    x0, y0 = (width - side) // 2, (height - side) // 2
    rows, cols = GRID
    for i in range(n):
        for b in range(rows * cols):
            r, c = divmod(b, cols)
            value = 255 if (i >> b) & 1 else 0
            frames[i, y0 + r * side // rows: y0 + (r + 1) * side // rows,
                   x0 + c * side // cols: x0 + (c + 1) * side // cols] = value
    return frames


def read_counter(frame: np.ndarray) -> int:
    """The frame index drawn by `counter_frames`, read at the centre of every cell."""
    h, w = frame.shape[:2]
    side = min(w, h)
    x0, y0 = (w - side) // 2, (h - side) // 2
    rows, cols = GRID
    n = 0
    for b in range(rows * cols):
        r, c = divmod(b, cols)
        y = y0 + int((r + 0.5) * side / rows)
        x = x0 + int((c + 0.5) * side / cols)
        if frame[y, x].mean() > 127:
            n |= 1 << b
    return n


def colour_frames(colours, per_colour: int, width: int, height: int) -> np.ndarray:
    """uint8 [len(colours) * per_colour, h, w, 3]: flat colours, one after the other."""
    return np.repeat(np.asarray(colours, np.uint8)[:, None, None, :], per_colour, 0).repeat(
        height, 1).repeat(width, 2)


def tone(freq: float, seconds: float, rate: int = 16000, amp: float = 0.3) -> np.ndarray:
    t = np.arange(int(round(seconds * rate))) / rate
    return (amp * 32767 * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def write_video(path, frames: np.ndarray, fps: float = 25, pcm: np.ndarray | None = None,
                rate: int = 16000, audio_codec: str = "aac", pix_fmt: str = "yuv420p",
                gop: int | None = None, select: str | None = None, faststart: bool = False,
                aspect: str | None = None) -> Path:
    """Encode RGB frames (+ mono int16 PCM) with libx264. audio_codec "pcm_s16le" (in .mkv/.mov)
    keeps the samples exact; pix_fmt "yuv444p" allows odd sizes; `select` is an ffmpeg select
    expression that drops frames, giving a variable frame rate; `aspect` sets a display aspect."""
    path = Path(path)
    n, h, w, _ = frames.shape
    streams = [ffmpeg.input("pipe:", format="rawvideo", pix_fmt="rgb24", s=f"{w}x{h}", r=fps)]
    if select:
        streams[0] = streams[0].filter("select", select)
    opts = dict(vcodec="libx264", preset="ultrafast", qp=4, pix_fmt=pix_fmt, threads=1)
    if gop:
        opts["g"] = gop
    if select:
        opts["fps_mode"] = "vfr"
    if faststart:
        opts["movflags"] = "+faststart"
    if aspect:
        opts["aspect"] = aspect
    wav = None
    if pcm is not None:
        wav = path.with_suffix(".in.wav")
        with wave.open(str(wav), "wb") as f:
            f.setnchannels(1)
            f.setsampwidth(2)
            f.setframerate(rate)
            f.writeframes(pcm.astype(np.int16).tobytes())
        streams.append(ffmpeg.input(str(wav)))
        opts["acodec"] = audio_codec
    try:
        ffmpeg_bin.run(ffmpeg.output(*streams, str(path), **opts), input=frames.tobytes(),
                       reason="test video encode failed")
    finally:
        if wav is not None:
            wav.unlink(missing_ok=True)
    return path


def rotate(src, dst, degrees: int) -> Path:
    """Copy `src` adding rotation metadata (display matrix), as phones do for portrait video."""
    ffmpeg_bin.run(ffmpeg.input(str(src), display_rotation=degrees).output(str(dst), c="copy"))
    return Path(dst)


def truncate(src, dst, fraction: float) -> Path:
    data = Path(src).read_bytes()
    Path(dst).write_bytes(data[: int(len(data) * fraction)])
    return Path(dst)


def zero_byte(path) -> Path:
    Path(path).write_bytes(b"")
    return Path(path)


def not_a_video(path) -> Path:
    Path(path).write_text("this is a text file with a video extension\n" * 20)
    return Path(path)


def audio_only(path, seconds: float = 1.0) -> Path:
    ffmpeg_bin.run(ffmpeg.input("pipe:", format="s16le", ar=16000, ac=1).output(str(path)),
                   input=tone(440, seconds).tobytes())
    return Path(path)


def ffmpeg_pcm(path, rate: int = 16000) -> np.ndarray:
    """Mono int16 PCM decoded by a plain ffmpeg command (an independent path to the samples)."""
    out = subprocess.run([ffmpeg_bin.ffmpeg_exe(), "-v", "error", "-nostdin", "-i", os.fspath(path),
                          "-vn", "-ac", "1", "-ar", str(rate), "-f", "s16le", "-"],
                         capture_output=True, check=True).stdout
    return np.frombuffer(out, np.int16)
