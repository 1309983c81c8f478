"""The soundtrack as MFCC: ffmpeg decodes mono 16-bit PCM at a fixed rate, python_speech_features
computes the coefficients once, for the whole track (the authors recomputed them on every access).

The PCM goes to `mfcc()` as integer sample values (the scale of a WAV file read with scipy), so the
first coefficient (log frame energy) matches what that usual recipe gives.
A video without an audio stream gets zeros of the shape its duration would give; never an error.
"""
from __future__ import annotations

import math

import ffmpeg
import numpy as np
from python_speech_features import mfcc as psf_mfcc
from python_speech_features.sigproc import round_half_up

from pipeline import ffmpeg_bin
from pipeline.errors import VideoError
from pipeline.params import PreprocessParams
from pipeline.probe import Probe


def decode_pcm(probe: Probe, sample_rate: int) -> np.ndarray:
    """The first audio stream as mono int16 samples at `sample_rate` (channels averaged by ffmpeg)."""
    inp = ffmpeg.input(probe.path, threads=1)
    out = inp[f"a:{probe.audio_stream}"].output("pipe:", format="s16le", acodec="pcm_s16le",
                                                 ac=1, ar=sample_rate)
    raw, _ = ffmpeg_bin.run(out, reason="audio decode failed", path=probe.path)
    return np.frombuffer(raw, np.int16, count=len(raw) // 2)


def n_mfcc_frames(n_samples: int, params: PreprocessParams) -> int:
    """How many MFCC frames python_speech_features gives for n_samples (its framesig rule)."""
    frame_len = round_half_up(params.winlen * params.sample_rate)
    step = round_half_up(params.winstep * params.sample_rate)
    if n_samples <= frame_len:
        return 1
    return 1 + int(math.ceil((n_samples - frame_len) / step))


def mfcc(pcm: np.ndarray, params: PreprocessParams) -> np.ndarray:
    """float32 [T, n_mfcc] from mono samples (int16 values or floats on the same scale)."""
    feats = psf_mfcc(np.asarray(pcm, dtype=np.float64), samplerate=params.sample_rate,
                     winlen=params.winlen, winstep=params.winstep, numcep=params.n_mfcc,
                     nfilt=params.n_filt, nfft=params.nfft)
    return feats.astype(np.float32)


def silent_mfcc(duration: float, params: PreprocessParams) -> np.ndarray:
    """Zeros [T, n_mfcc] for a video with no sound, T as if it had a soundtrack of `duration` s."""
    n = n_mfcc_frames(int(round(duration * params.sample_rate)), params)
    return np.zeros((n, params.n_mfcc), np.float32)


def audio_features(probe: Probe, params: PreprocessParams,
                   duration: float) -> tuple[np.ndarray, bool, list[str]]:
    """(mfcc float32 [T, n_mfcc], has_audio, notes) for one video; `duration` sizes the zeros."""
    if not probe.has_audio:
        return silent_mfcc(duration, params), False, []
    try:
        pcm = decode_pcm(probe, params.sample_rate)
    except VideoError as e:
        if e.reason != "audio decode failed":
            raise  # truncated file, timeout: the whole video is unusable
        # a broken soundtrack should not cost the pictures: keep the video, silent
        last = (e.log_tail.splitlines() or ["no log"])[-1]
        return silent_mfcc(duration, params), False, [f"audio decode failed ({last}): zeros"]
    if len(pcm) == 0:
        return silent_mfcc(duration, params), False, ["audio stream decoded to no samples: zeros"]
    return mfcc(pcm, params), True, []
