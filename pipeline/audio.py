"""The soundtrack as MFCC: ffmpeg decodes mono 16-bit PCM at a fixed rate, python_speech_features
computes the coefficients once, for the whole track (the authors recomputed them on every access).

The PCM goes to `mfcc()` as integer sample values (the scale of a WAV file read with scipy), so the
first coefficient (log frame energy) matches what that usual recipe gives.
`mfcc()` runs python_speech_features' own steps, in the same order, a block of frames at a time
(the same coefficients, bit for bit on the machines we checked; tests/test_audio.py compares):
its `mfcc` builds a full index array and a copy of every 25 ms frame, and its one large
filterbank product starts BLAS threads that spin on the other core; together 2.5-4x the CPU.
A video without an audio stream gets zeros of the shape its duration would give; never an error.

`--mfcc librosa` takes librosa's recipe instead (pipeline/mfcc_librosa.py) on samples scaled
to [-1, 1] as librosa reads them; the `official` profile also decodes as the authors' code
did (pipeline/official_audio.py: an MP3 round trip, the channels' mean, resampy's filter).
"""
from __future__ import annotations

import math

import ffmpeg
import numpy as np
from numpy.lib.stride_tricks import as_strided
from python_speech_features.base import get_filterbanks, lifter
from python_speech_features.sigproc import round_half_up
from scipy.fftpack import dct

from pipeline import ffmpeg_bin
from pipeline.errors import VideoError
from pipeline.mfcc_librosa import mfcc_librosa
from pipeline.params import PreprocessParams
from pipeline.probe import Probe


def decode_pcm(probe: Probe, sample_rate: int) -> np.ndarray:
    """The first audio stream as mono int16 samples at `sample_rate` (channels averaged by ffmpeg)."""
    inp = ffmpeg.input(probe.path, threads=1)
    # one-second frames to the encoder and muxer instead of one per AAC frame (~1/40 s): each
    # frame is a hand-over between ffmpeg's threads, together a quarter of this run's CPU;
    # regrouping (no padding) leaves every sample as it was
    a = inp[f"a:{probe.audio_stream}"]
    # sample 0 is the file's start, as for the frames: a soundtrack that starts later (or
    # earlier) than that gets silence in front (or is trimmed), so MFCC frame i is at i * winstep
    a = a.filter("asetpts", f"PTS-{probe.start!r}/TB").filter("aresample", first_pts=0, **{"async": 1})
    a = a.filter("asetnsamples", n=sample_rate, p=0)
    out = a.output("pipe:", format="s16le", acodec="pcm_s16le", ac=1, ar=sample_rate)
    raw, _ = ffmpeg_bin.run(out.global_args("-filter_complex_threads", "1"),
                            reason="audio decode failed", path=probe.path)
    return np.frombuffer(raw, np.int16, count=len(raw) // 2)


def n_mfcc_frames(n_samples: int, params: PreprocessParams) -> int:
    """How many MFCC frames the recipe gives for n_samples (psf: its framesig rule; librosa:
    centred frames, one per hop)."""
    if params.mfcc == "librosa":
        return 1 + n_samples // hop_samples(params)
    frame_len = round_half_up(params.winlen * params.sample_rate)
    step = round_half_up(params.winstep * params.sample_rate)
    if n_samples <= frame_len:
        return 1
    return 1 + int(math.ceil((n_samples - frame_len) / step))


def hop_samples(params: PreprocessParams) -> int:
    return round_half_up(params.winstep * params.sample_rate)


def librosa_features(samples: np.ndarray, params: PreprocessParams) -> np.ndarray:
    """librosa's MFCC [T, n_mfcc] of float samples in [-1, 1]."""
    return mfcc_librosa(samples, params.sample_rate, params.n_mfcc, params.nfft,
                        hop_samples(params))


# frames per FFT block (keeps the spectra in cache), and rows per filterbank product: at most
# 24 x 257 x 40 multiply-adds, below OpenBLAS's size for starting threads (65536 * 4)
_BLOCK = 480
_DOT_ROWS = 24


def mfcc(pcm: np.ndarray, params: PreprocessParams) -> np.ndarray:
    """float32 [T, n_mfcc] from mono samples (int16 values or floats on the same scale).

    python_speech_features.mfcc with its defaults (pre-emphasis 0.97, no window, lifter 22,
    energy as coefficient 0), step by step; every frame's numbers go through the same operations."""
    rate = params.sample_rate
    sig = np.asarray(pcm, dtype=np.float64)
    sig = np.append(sig[0], sig[1:] - 0.97 * sig[:-1])
    frame_len = round_half_up(params.winlen * rate)
    step = round_half_up(params.winstep * rate)
    n = n_mfcc_frames(len(sig), params)
    padded = np.concatenate((sig, np.zeros((n - 1) * step + frame_len - len(sig))))
    # a view, not a copy; the window is all ones, which multiplies nothing
    frames = as_strided(padded, (n, frame_len), (step * padded.itemsize, padded.itemsize),
                        writeable=False)
    fb_t = get_filterbanks(params.n_filt, params.nfft, rate, 0, rate / 2).T
    feat, energy = np.empty((n, params.n_filt)), np.empty(n)
    for a in range(0, n, _BLOCK):
        pspec = 1.0 / params.nfft * np.square(np.absolute(np.fft.rfft(frames[a:a + _BLOCK], params.nfft)))
        energy[a:a + len(pspec)] = np.sum(pspec, 1)
        for b in range(0, len(pspec), _DOT_ROWS):
            part = pspec[b:b + _DOT_ROWS]
            feat[a + b:a + b + len(part)] = np.dot(part, fb_t)
    eps = np.finfo(float).eps
    energy = np.where(energy == 0, eps, energy)
    feat = np.log(np.where(feat == 0, eps, feat))
    feat = lifter(dct(feat, type=2, axis=1, norm="ortho")[:, :params.n_mfcc], 22)
    feat[:, 0] = np.log(energy)
    return feat.astype(np.float32)


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
        if params.profile == "official":
            from pipeline.official_audio import load_like_librosa
            pcm = load_like_librosa(probe, params.sample_rate)
        else:
            pcm = decode_pcm(probe, params.sample_rate)
    except VideoError as e:
        if e.reason != "audio decode failed":
            raise  # truncated file, timeout: the whole video is unusable
        # a broken soundtrack should not cost the pictures: keep the video, silent
        last = (e.log_tail.splitlines() or ["no log"])[-1]
        return silent_mfcc(duration, params), False, [f"audio decode failed ({last}): zeros"]
    if len(pcm) == 0:
        return silent_mfcc(duration, params), False, ["audio stream decoded to no samples: zeros"]
    if params.mfcc == "librosa":
        # librosa's scale: 16-bit values / 32768 (the official decode gives that scale already)
        samples = pcm if params.profile == "official" else pcm / 32768.0
        return librosa_features(samples, params), True, []
    return mfcc(pcm, params), True, []
