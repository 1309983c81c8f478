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
                 hop: int = 512, dtype=np.float32) -> np.ndarray:
    """float32 [T, n_mfcc] (time first, as the shards keep it) from mono float samples in [-1, 1]
    (librosa's scale); T = 1 + len(y) // hop. dtype float64 keeps the unrounded values."""
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
    return dct(db, type=2, axis=1, norm="ortho")[:, :n_mfcc].astype(dtype)


class LibrosaMfccStream:
    """mfcc_librosa fed a block of samples at a time, for tracks too long to hold whole.

    Centred frames: the first block's start gets the reflected padding once n_fft // 2 + 1
    samples have arrived; the end's padding is added by `finish`, from the last samples kept.
    The 80 dB floor needs the whole track's maximum before the DCT: the mel spectra (float64,
    128 per frame) go to an unnamed temporary file as they are computed and come back a block
    at a time in `finish`, so memory stays bounded while the disk holds ~1 KB per frame.
    Tracks shorter than one window are computed whole (np.pad's repeated reflection)."""

    def __init__(self, sr: float, n_mfcc: int = 32, n_fft: int = 2048, hop: int = 512,
                 dtype=np.float32):
        import tempfile
        self.sr, self.n_mfcc, self.n_fft, self.hop, self.dtype = sr, n_mfcc, n_fft, hop, dtype
        self.half = n_fft // 2
        self.window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)
        self.fb_t = mel_filters(sr, n_fft).T
        self.head = np.empty(0)  # samples before the padding could be made (short tracks)
        self.pending = None  # padded signal not yet consumed by a frame (None: not started)
        self.tail = np.empty(0)  # the last half + 1 samples, for the end's reflection
        self.n_samples = 0
        self.done = 0  # frames computed
        self.db_max = -np.inf
        self.spill = tempfile.TemporaryFile(prefix="vaanet-mel-")

    def feed(self, y: np.ndarray) -> None:
        y = np.asarray(y, dtype=np.float64)
        if not len(y):
            return
        self.n_samples += len(y)
        self.tail = np.concatenate((self.tail, y))[-(self.half + 1):]
        if self.pending is None:
            self.head = np.concatenate((self.head, y))
            if len(self.head) <= self.n_fft:
                return
            # np.pad's reflection of the start: samples 1..half, mirrored
            y, self.head = np.concatenate((self.head[1:self.half + 1][::-1], self.head)), None
            self.pending = np.empty(0)
        buf = np.concatenate((self.pending, y))
        n_full = 0 if len(buf) < self.n_fft else 1 + (len(buf) - self.n_fft) // self.hop
        if n_full:
            self._mel(buf, n_full)
        self.pending = buf[n_full * self.hop:].copy()

    def _mel(self, buf: np.ndarray, n: int) -> None:
        frames = as_strided(buf, (n, self.n_fft), (self.hop * buf.itemsize, buf.itemsize),
                            writeable=False)
        for a in range(0, n, _BLOCK):
            spec = np.fft.rfft(frames[a:a + _BLOCK] * self.window, axis=1)
            db = 10.0 * np.log10(np.maximum(AMIN, (spec.real ** 2 + spec.imag ** 2) @ self.fb_t))
            self.db_max = max(self.db_max, float(db.max()))
            self.spill.write(np.ascontiguousarray(db).tobytes())
        self.done += n

    def finish(self) -> np.ndarray:
        """[T, n_mfcc] (dtype), T = 1 + n_samples // hop, as mfcc_librosa of everything fed."""
        try:
            if self.pending is None:
                return mfcc_librosa(self.head, self.sr, self.n_mfcc, self.n_fft, self.hop, self.dtype)
            # np.pad's reflection of the end: the samples before the last, mirrored
            end = self.tail[-(self.half + 1):-1][::-1]
            rest = n_frames(self.n_samples, self.hop) - self.done
            if rest > 0:
                self._mel(np.concatenate((self.pending, end)), rest)
            self.spill.seek(0)
            out = np.empty((self.done, self.n_mfcc), self.dtype)
            floor, row = self.db_max - TOP_DB, N_MELS * 8
            for a in range(0, self.done, 4 * _BLOCK):
                db = np.frombuffer(self.spill.read(row * 4 * _BLOCK), np.float64).reshape(-1, N_MELS)
                out[a:a + len(db)] = dct(np.maximum(db, floor), type=2, axis=1,
                                         norm="ortho")[:, :self.n_mfcc]
            return out
        finally:
            self.spill.close()
