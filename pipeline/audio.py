"""The soundtrack as MFCC: ffmpeg decodes mono 16-bit PCM, resampled to a fixed rate in the pipe,
python_speech_features' coefficients are computed once per video (the authors recomputed them on
every access), from blocks of DECODE_BLOCK_S seconds read from the pipe as they come: the window
overlap is carried to the next block, so the coefficients are those of the whole track and a
worker's memory does not grow with the track's length (tests/test_audio_blocks.py, bench/memory.py).

The PCM goes to `mfcc()` as integer sample values (the scale of a WAV file read with scipy), so the
first coefficient (log frame energy) matches what that usual recipe gives.
`mfcc()` runs python_speech_features' own steps, in the same order, a block of frames at a time
(the same coefficients, bit for bit on the machines we checked; tests/test_audio.py compares):
its `mfcc` builds a full index array and a copy of every 25 ms frame, and its one large
filterbank product starts BLAS threads that spin on the other core; together 2.5-4x the CPU.
A video without an audio stream gets zeros of the shape its duration would give; never an error.

`--mfcc librosa` takes librosa's recipe instead (pipeline/mfcc_librosa.py) on samples scaled
to [-1, 1] as librosa reads them; the `official` profile also decodes as the authors' code
did (pipeline/official_audio.py: an MP3 round trip, the channels' mean, resampy's filter),
in blocks too.
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
from pipeline.mfcc_librosa import LibrosaMfccStream, mfcc_librosa
from pipeline.params import PreprocessParams
from pipeline.probe import Probe


def decode_pcm(probe: Probe, sample_rate: int) -> np.ndarray:
    """The first audio stream as mono int16 samples at `sample_rate` (channels averaged by ffmpeg),
    whole (audio_features reads it in blocks instead: pcm_blocks)."""
    raw, _ = ffmpeg_bin.run(_pcm_graph(probe, sample_rate),
                            reason="audio decode failed", path=probe.path)
    return np.frombuffer(raw, np.int16, count=len(raw) // 2)


def _pcm_graph(probe: Probe, sample_rate: int):
    """ffmpeg's graph: the audio stream, resampled by ffmpeg to sample_rate, mono s16le to the pipe."""
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
    return out.global_args("-filter_complex_threads", "1")


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
# seconds of sound read from the ffmpeg pipe at a time: memory stays the same for any length
DECODE_BLOCK_S = 10.0


class PsfMfccStream:
    """python_speech_features' MFCC fed a block of samples at a time: `feed` computes every frame
    that lies wholly inside what has arrived and keeps the rest (frame overlap, the last sample for
    the pre-emphasis) for the next block; `finish` zero-pads the end as psf does. Every frame goes
    through the same operations as in a whole-track computation (tests/test_audio_blocks.py)."""

    def __init__(self, params: PreprocessParams, expect_frames: int = 0):
        self.params = params
        self.frame_len = round_half_up(params.winlen * params.sample_rate)
        self.step = round_half_up(params.winstep * params.sample_rate)
        self.fb_t = get_filterbanks(params.n_filt, params.nfft, params.sample_rate, 0,
                                    params.sample_rate / 2).T
        self.last = None  # the previous block's last sample (pre-emphasis)
        self.pending = np.empty(0)  # pre-emphasised samples not yet consumed by a frame
        self.n_samples = 0
        # the result is written in place: np.empty's untouched pages cost no memory, and no
        # concatenation at the end doubles an hour's 46 MB
        self.out = np.empty((max(expect_frames, 1), params.n_mfcc), np.float32)
        self.done = 0

    def feed(self, pcm: np.ndarray) -> None:
        sig = np.asarray(pcm, dtype=np.float64)
        if not len(sig):
            return
        # psf keeps the first sample as it is: x - 0.97 * 0.0 is x exactly
        prev = np.concatenate(([0.0 if self.last is None else self.last], sig[:-1]))
        emph = sig - 0.97 * prev
        self.last = sig[-1]
        self.n_samples += len(sig)
        buf = np.concatenate((self.pending, emph))
        n_full = 0 if len(buf) < self.frame_len else 1 + (len(buf) - self.frame_len) // self.step
        if n_full:
            self._store(self._frames(buf, n_full))
        self.pending = buf[n_full * self.step:].copy()

    def _store(self, rows: np.ndarray) -> None:
        if self.done + len(rows) > len(self.out):  # longer than expected: grow by half
            grown = np.empty((max(self.done + len(rows), len(self.out) * 3 // 2), self.out.shape[1]),
                             np.float32)
            grown[:self.done] = self.out[:self.done]
            self.out = grown
        self.out[self.done:self.done + len(rows)] = rows
        self.done += len(rows)

    def finish(self) -> np.ndarray:
        """float32 [T, n_mfcc] for everything fed (T as n_mfcc_frames gives)."""
        rest = n_mfcc_frames(self.n_samples, self.params) - self.done
        if rest > 0:
            need = (rest - 1) * self.step + self.frame_len
            buf = np.concatenate((self.pending, np.zeros(max(need - len(self.pending), 0))))
            self._store(self._frames(buf, rest))
        return self.out[:self.done]

    def _frames(self, buf: np.ndarray, n: int) -> np.ndarray:
        """MFCC of the n frames starting every `step` samples in buf (psf's steps, in blocks)."""
        p = self.params
        # a view, not a copy; the window is all ones, which multiplies nothing
        frames = as_strided(buf, (n, self.frame_len), (self.step * buf.itemsize, buf.itemsize),
                            writeable=False)
        feat, energy = np.empty((n, p.n_filt)), np.empty(n)
        for a in range(0, n, _BLOCK):
            pspec = 1.0 / p.nfft * np.square(np.absolute(np.fft.rfft(frames[a:a + _BLOCK], p.nfft)))
            energy[a:a + len(pspec)] = np.sum(pspec, 1)
            for b in range(0, len(pspec), _DOT_ROWS):
                part = pspec[b:b + _DOT_ROWS]
                feat[a + b:a + b + len(part)] = np.dot(part, self.fb_t)
        eps = np.finfo(float).eps
        energy = np.where(energy == 0, eps, energy)
        feat = np.log(np.where(feat == 0, eps, feat))
        feat = lifter(dct(feat, type=2, axis=1, norm="ortho")[:, :p.n_mfcc], 22)
        feat[:, 0] = np.log(energy)
        return feat.astype(np.float32)


def mfcc(pcm: np.ndarray, params: PreprocessParams) -> np.ndarray:
    """float32 [T, n_mfcc] from mono samples (int16 values or floats on the same scale).

    python_speech_features.mfcc with its defaults (pre-emphasis 0.97, no window, lifter 22,
    energy as coefficient 0), step by step; every frame's numbers go through the same operations."""
    s = PsfMfccStream(params)
    s.feed(pcm)
    return s.finish()


def pcm_blocks(probe: Probe, sample_rate: int, block_s: float = DECODE_BLOCK_S):
    """decode_pcm's samples, int16 blocks of block_s seconds read from the pipe as they come."""
    chunk = 2 * max(1, int(block_s * sample_rate))
    odd = b""
    for piece in ffmpeg_bin.stream_chunks(_pcm_graph(probe, sample_rate), chunk_bytes=chunk,
                                          reason="audio decode failed", path=probe.path):
        piece = odd + piece
        cut = len(piece) - len(piece) % 2  # a pipe read may split a sample
        odd = piece[cut:]
        if cut:
            yield np.frombuffer(piece[:cut], np.int16)


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
        stream = (LibrosaMfccStream(params.sample_rate, params.n_mfcc, params.nfft, hop_samples(params))
                  if params.mfcc == "librosa" else
                  PsfMfccStream(params, n_mfcc_frames(int(duration * params.sample_rate), params)))
        if params.profile == "official":
            # the MP3 round trip and resampy's filter, in blocks (already on librosa's scale)
            from pipeline.official_audio import load_like_librosa
            blocks = load_like_librosa(probe, params.sample_rate)
        else:
            # librosa's scale: 16-bit values / 32768
            blocks = (b / 32768.0 if params.mfcc == "librosa" else b
                      for b in pcm_blocks(probe, params.sample_rate))
        for block in blocks:
            stream.feed(block)
    except VideoError as e:
        if e.reason != "audio decode failed":
            raise  # truncated file, timeout: the whole video is unusable
        # a broken soundtrack should not cost the pictures: keep the video, silent
        last = (e.log_tail.splitlines() or ["no log"])[-1]
        return silent_mfcc(duration, params), False, [f"audio decode failed ({last}): zeros"]
    if stream.n_samples == 0:
        return silent_mfcc(duration, params), False, ["audio stream decoded to no samples: zeros"]
    return stream.finish(), True, []
