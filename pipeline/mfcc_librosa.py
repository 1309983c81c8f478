"""The MFCC recipe of librosa (`librosa.feature.mfcc` with its defaults, as the authors' code
calls it, librosa 0.6.1) in numpy/scipy, so that the `official` profile needs no librosa.

Steps, each as librosa has them: frames of n_fft samples every `hop`, centred (the signal padded
by n_fft // 2 on both sides, reflecting it), periodic Hann window, power spectrum |X|^2, 128
Slaney mel filters (Slaney's mel scale, each filter normalised to unit area: librosa's
`norm=1` / `"slaney"`), 10 log10 with amin 1e-10 and ref 1, values below the maximum minus
80 dB raised to it (over the whole track), DCT-II (orthonormal), the first n_mfcc.
tests/test_mfcc_librosa.py compares with librosa itself.
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided
from scipy.fft import dct

N_MELS = 128
AMIN = 1e-10
TOP_DB = 80.0
# frames per FFT block: the spectra of a long track never sit in memory at once
_BLOCK = 512


def hz_to_mel(f):
    """Slaney's mel scale (librosa's htk=False): linear below 1 kHz, logarithmic above."""
    f = np.asarray(f, dtype=np.float64)
    lin = f / (200.0 / 3)
    log = 15.0 + np.log(np.maximum(f, 1e-300) / 1000.0) / (np.log(6.4) / 27.0)
    return np.where(f >= 1000.0, log, lin)


def mel_to_hz(m):
    m = np.asarray(m, dtype=np.float64)
    lin = m * (200.0 / 3)
    log = 1000.0 * np.exp((np.log(6.4) / 27.0) * (m - 15.0))
    return np.where(m >= 15.0, log, lin)


def mel_filters(sr: float, n_fft: int, n_mels: int = N_MELS) -> np.ndarray:
    """[n_mels, 1 + n_fft // 2] triangular filters from 0 Hz to sr / 2, area-normalised."""
    fft_hz = np.linspace(0, sr / 2, 1 + n_fft // 2)
    mel_hz = mel_to_hz(np.linspace(hz_to_mel(0.0), hz_to_mel(sr / 2), n_mels + 2))
    width = np.diff(mel_hz)
    ramps = mel_hz[:, None] - fft_hz[None, :]
    lower = -ramps[:-2] / width[:-1, None]
    upper = ramps[2:] / width[1:, None]
    weights = np.maximum(0, np.minimum(lower, upper))
    return weights * (2.0 / (mel_hz[2:] - mel_hz[:-2]))[:, None]


def n_frames(n_samples: int, hop: int) -> int:
    """Frames of a centred STFT: one per hop, the first centred on sample 0."""
    return 1 + n_samples // hop


def mfcc_librosa(y: np.ndarray, sr: float, n_mfcc: int = 32, n_fft: int = 2048,
                 hop: int = 512) -> np.ndarray:
    """float32 [T, n_mfcc] (time first, as the shards keep it) from mono float samples in [-1, 1]
    (librosa's scale); T = 1 + len(y) // hop."""
    y = np.asarray(y, dtype=np.float64)
    padded = np.pad(y, n_fft // 2, mode="reflect")
    n = n_frames(len(y), hop)
    frames = as_strided(padded, (n, n_fft), (hop * padded.itemsize, padded.itemsize),
                        writeable=False)
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)   # periodic Hann
    fb_t = mel_filters(sr, n_fft).T
    mel = np.empty((n, N_MELS))
    for a in range(0, n, _BLOCK):
        spec = np.fft.rfft(frames[a:a + _BLOCK] * window, axis=1)
        mel[a:a + len(spec)] = (spec.real ** 2 + spec.imag ** 2) @ fb_t
    db = 10.0 * np.log10(np.maximum(AMIN, mel))
    db = np.maximum(db, db.max() - TOP_DB)
    return dct(db, type=2, axis=1, norm="ortho")[:, :n_mfcc].astype(np.float32)
