"""The soundtrack as the authors' code reads it, for the `official` preprocessing profile.

Their steps: `ffmpeg -i VIDEO X.mp3` (ffmpeg's default MP3 encoder settings: libmp3lame, the
native sample rate, stereo downmix), then librosa 0.6.1's `load(X.mp3, sr=44100)`: the MP3
decoded by ffmpeg to 16-bit samples, divided by 32768, the channels averaged, resampled to
44.1 kHz with resampy's `kaiser_best` filter (resampy 0.2.2, pinned with that librosa).

Here: the same ffmpeg writes the MP3 to a temporary file (a file, not a pipe: only a seekable
output gets the header that tells the decoder the encoder's delay, so that decoding gives the
samples back at the same times), decodes it back to 16-bit WAV, and the rest is numpy/scipy.
The resampler is resampy 0.2.2's `kaiser_best` (a Kaiser-windowed sinc: 64 zero crossings,
beta 14.7697, roll-off 0.9476 of the lower Nyquist frequency, tabulated at 2**9 steps per
crossing) with resampy's own interpolation loop, in numpy: the same weights, so the same
samples up to rounding (tests/test_mfcc_librosa.py compares with resampy); the output length
as librosa gives it (floor, then zero-padded to the ceiling).
"""
from __future__ import annotations

import math
import os
import tempfile
import wave

import ffmpeg
import numpy as np
from numpy.lib.stride_tricks import as_strided

from pipeline import ffmpeg_bin
from pipeline.probe import Probe

# resampy 0.2.2's kaiser_best (the one librosa 0.6.1 uses for librosa.load)
KAISER_BEST = dict(num_zeros=64, beta=14.769656459379492, rolloff=0.9475937167399596)
# its filter is a table of 2**9 values per zero crossing
TABLE_STEPS = 2 ** 9
# output rows per matrix product (keeps the strided copy small)
_ROWS = 4096


def resampy_kernel(u: np.ndarray, num_zeros=64, beta=14.769656459379492,
                   rolloff=0.9475937167399596) -> np.ndarray:
    """resampy's sinc_window at offsets `u` (in zero crossings): roll-off-scaled sinc, Kaiser taper."""
    u = np.abs(np.asarray(u, dtype=np.float64))
    inside = u <= num_zeros
    taper = np.i0(beta * np.sqrt(np.clip(1 - (u / num_zeros) ** 2, 0, None))) / np.i0(beta)
    return np.where(inside, rolloff * np.sinc(rolloff * u) * taper, 0.0)


def resample(y: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """`y` from sr_in to sr_out as resampy 0.2.2's kaiser_best does it, the length as librosa
    0.6.1 gives it (resampy's floor(len * ratio), zero-padded to the ceiling).

    resampy's loop, output sample by output sample, weighs x[n - i] and x[n + 1 + k] by its
    filter table, linearly interpolated, at steps of int(scale * TABLE_STEPS) entries (not the
    exact scale * TABLE_STEPS: rounded down, which an exactly evaluated filter would not copy:
    -60 dB of difference for 48 -> 44.1 kHz, up to 0.09 in the MFCC). The fractional
    position repeats every `up` outputs for the ratio up / down, so the weights are computed
    once per phase and applied as one matrix product per phase."""
    y = np.asarray(y, dtype=np.float64)
    if sr_in == sr_out:
        return y.copy()
    g = math.gcd(sr_in, sr_out)
    up, down = sr_out // g, sr_in // g
    ratio = sr_out / sr_in
    scale = min(1.0, ratio)
    step = int(scale * TABLE_STEPS)
    table = resampy_kernel(np.arange(KAISER_BEST["num_zeros"] * TABLE_STEPS + 1) / TABLE_STEPS,
                           **KAISER_BEST) * (ratio if ratio < 1 else 1.0)
    delta = np.append(np.diff(table), 0.0)
    n_floor, n_out = int(len(y) * ratio), int(math.ceil(len(y) * ratio))
    width = len(table) // step + 1                  # taps on either side, at most
    padded = np.concatenate([np.zeros(width), y, np.zeros(width + down + 1)])
    out = np.zeros(n_out)
    for p in range(min(up, n_floor)):
        n0, num = divmod(p * down, up)              # output p sits at input n0 + num / up
        w = np.zeros(2 * width)                     # weights of x[n0 - width + 1 .. n0 + width]
        for frac, side in ((scale * num / up, "left"), (scale - scale * num / up, "right")):
            pos = frac * TABLE_STEPS
            offset = int(pos)
            i = np.arange((len(table) - offset) // step)
            taps = offset + i * step
            # left wing: x[n0 - i] at w[width - 1 - i]; right wing: x[n0 + 1 + i] at w[width + i]
            at = width - 1 - i if side == "left" else width + i
            w[at] = table[taps] + (pos - offset) * delta[taps]
        count = len(range(p, n_floor, up))
        frames = as_strided(padded[n0 + 1:], (count, 2 * width),
                            (down * padded.itemsize, padded.itemsize), writeable=False)
        for a in range(0, count, _ROWS):
            rows = frames[a:a + _ROWS]
            # einsum, not @: a strided view through BLAS was 2-3x slower here (copies, threads)
            out[p + a * up:p + (a + len(rows)) * up:up] = np.einsum("ij,j->i", rows, w)
    return out


def decode_mp3_roundtrip(probe: Probe) -> tuple[np.ndarray, int]:
    """(mono float64 samples in [-1, 1], sample rate) of the first audio stream after the MP3
    round trip (see the module docstring). Raises VideoError('audio decode failed')."""
    with tempfile.TemporaryDirectory(prefix="vaanet-mp3-") as tmp:
        mp3, wav = os.path.join(tmp, "audio.mp3"), os.path.join(tmp, "audio.wav")
        # no encoder options at all: ffmpeg's defaults, as `ffmpeg -i VIDEO X.mp3`
        enc = ffmpeg.input(probe.path)[f"a:{probe.audio_stream}"].output(mp3)
        ffmpeg_bin.run(enc, reason="audio decode failed", path=probe.path)
        dec = ffmpeg.input(mp3).output(wav, acodec="pcm_s16le")
        ffmpeg_bin.run(dec, reason="audio decode failed", path=probe.path)
        with wave.open(wav, "rb") as w:
            channels, rate = w.getnchannels(), w.getframerate()
            pcm = np.frombuffer(w.readframes(w.getnframes()), np.int16)
    y = pcm.reshape(-1, channels).astype(np.float64) / 32768.0
    return y.mean(axis=1), rate


def load_like_librosa(probe: Probe, sample_rate: int) -> np.ndarray:
    """The authors' `librosa.load(mp3, sr=sample_rate)`, emulated: mono float64 at sample_rate."""
    y, rate = decode_mp3_roundtrip(probe)
    return resample(y, rate, sample_rate)
