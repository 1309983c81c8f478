"""The soundtrack as the authors' code reads it, for the `official` preprocessing profile.

Their steps: `ffmpeg -i VIDEO X.mp3` (ffmpeg's default MP3 encoder settings: libmp3lame, the
native sample rate, stereo downmix), then librosa 0.6.1's `load(X.mp3, sr=44100)`: the MP3
decoded by ffmpeg to 16-bit samples, divided by 32768, the channels averaged, resampled to
44.1 kHz with resampy's `kaiser_best` filter (resampy 0.2.2, pinned with that librosa).

Here: the same ffmpeg writes the MP3 to a temporary file (a file, not a pipe: only a seekable
output gets the header that tells the decoder the encoder's delay, so that decoding gives the
samples back at the same times), decodes it back to 16-bit WAV, and the rest is numpy/scipy.
The resampler is scipy's polyphase `resample_poly` given resampy 0.2.2's `kaiser_best` filter
itself (a Kaiser-windowed sinc: 64 zero crossings, beta 14.7697, roll-off 0.9476 of the lower
Nyquist frequency), evaluated exactly where resampy interpolates a table of it; it leaves the
output length as librosa does (floor, then zero-padded to the ceiling).
"""
from __future__ import annotations

import math
import os
import tempfile
import wave

import ffmpeg
import numpy as np
from scipy.signal import resample_poly

from pipeline import ffmpeg_bin
from pipeline.probe import Probe

# resampy 0.2.2's kaiser_best (the one librosa 0.6.1 uses for librosa.load)
KAISER_BEST = dict(num_zeros=64, beta=14.769656459379492, rolloff=0.9475937167399596)
# its filter is a table of 2**9 values per zero crossing
TABLE_STEPS = 2 ** 9


def resampy_kernel(u: np.ndarray, num_zeros=64, beta=14.769656459379492,
                   rolloff=0.9475937167399596) -> np.ndarray:
    """resampy's sinc_window at offsets `u` (in zero crossings): roll-off-scaled sinc, Kaiser taper."""
    u = np.abs(np.asarray(u, dtype=np.float64))
    inside = u <= num_zeros
    taper = np.i0(beta * np.sqrt(np.clip(1 - (u / num_zeros) ** 2, 0, None))) / np.i0(beta)
    return np.where(inside, rolloff * np.sinc(rolloff * u) * taper, 0.0)


def resample(y: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """`y` from sr_in to sr_out as resampy's kaiser_best does it, length as librosa 0.6.1 gives."""
    if sr_in == sr_out:
        return np.asarray(y, dtype=np.float64)
    g = math.gcd(sr_in, sr_out)
    up, down = sr_out // g, sr_in // g
    # the filter at the upsampled rate: tap m is m / up input samples away; when downsampling
    # the sinc widens by 1 / ratio (its cut-off at the output's Nyquist) and scales by ratio.
    # resampy steps through its table by int(ratio * TABLE_STEPS) entries per input sample,
    # not by ratio * TABLE_STEPS: its kernel is that much narrower (0.085% for 48 -> 44.1 kHz)
    scale = min(1.0, sr_out / sr_in)
    step = int(scale * TABLE_STEPS) / TABLE_STEPS
    half = int(math.floor(KAISER_BEST["num_zeros"] * up / step))
    m = np.arange(-half, half + 1)
    h = scale * resampy_kernel(step * m / up, **KAISER_BEST)
    out = resample_poly(np.asarray(y, dtype=np.float64), up, down, window=h / up)
    n_floor = int(len(y) * sr_out / sr_in)   # resampy's length; librosa pads it with zeros
    out[n_floor:] = 0.0
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
