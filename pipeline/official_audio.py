"""The soundtrack as the authors' code reads it, for the `official` preprocessing profile.

Their steps: `ffmpeg -i VIDEO X.mp3` (ffmpeg's default MP3 encoder settings: libmp3lame, the
native sample rate, stereo downmix), then librosa 0.6.1's `load(X.mp3, sr=44100)`: the MP3
decoded by ffmpeg to 16-bit samples, divided by 32768, the channels averaged, resampled to
44.1 kHz with resampy's `kaiser_best` filter (resampy 0.2.2, pinned with that librosa).

Here: the same ffmpeg writes the MP3 to a temporary file (a file, not a pipe: only a seekable
output gets the header that tells the decoder the encoder's delay, so that decoding gives the
samples back at the same times), then decodes it back to 16-bit PCM into a pipe (as WAV, whose
header gives the MP3's rate and channels), read DECODE_BLOCK_S at a time; the rest is numpy.
The resampler is resampy 0.2.2's `kaiser_best` (a Kaiser-windowed sinc: 64 zero crossings,
beta 14.7697, roll-off 0.9476 of the lower Nyquist frequency, tabulated at 2**9 steps per
crossing) with resampy's own interpolation loop, in numpy: the same weights, so the same
samples up to rounding (tests/test_mfcc_librosa.py compares with resampy); the output length
as librosa gives it (floor, then zero-padded to the ceiling). `resample` runs on a whole
signal; `Resampler` gives the same samples from blocks (the filter reaches a fixed number of
input samples either side), so with LibrosaMfccStream a worker's memory does not grow with the
track's length (tests/test_official_audio_blocks.py, bench/memory.py).
"""
from __future__ import annotations

import math
import os
import struct
import tempfile

import ffmpeg
import numpy as np
from numpy.lib.stride_tricks import as_strided

from pipeline import ffmpeg_bin
from pipeline.errors import VideoError
from pipeline.probe import Probe

# resampy 0.2.2's kaiser_best (the one librosa 0.6.1 uses for librosa.load)
KAISER_BEST = dict(num_zeros=64, beta=14.769656459379492, rolloff=0.9475937167399596)
# its filter is a table of 2**9 values per zero crossing
TABLE_STEPS = 2 ** 9
# output rows per matrix product (keeps the strided copy small)
_ROWS = 4096
# seconds of 48 kHz stereo PCM read from the decoding pipe at a time (as pipeline/audio.py's)
DECODE_BLOCK_S = 10.0


def resampy_kernel(u: np.ndarray, num_zeros=64, beta=14.769656459379492,
                   rolloff=0.9475937167399596) -> np.ndarray:
    """resampy's sinc_window at offsets `u` (in zero crossings): roll-off-scaled sinc, Kaiser taper."""
    u = np.abs(np.asarray(u, dtype=np.float64))
    inside = u <= num_zeros
    taper = np.i0(beta * np.sqrt(np.clip(1 - (u / num_zeros) ** 2, 0, None))) / np.i0(beta)
    return np.where(inside, rolloff * np.sinc(rolloff * u) * taper, 0.0)


class KaiserBest:
    """resampy's kaiser_best weights from sr_in to sr_out, one vector per output phase.

    The ratio is up / down in lowest terms; output t sits at input position n0 + num / up
    (n0, num = divmod(t * down, up)), so its fractional position repeats every `up` outputs and
    output t = p + k * up weighs x[n0 - width + 1 .. n0 + width] by `weights(p)`, where
    n0 = k * down + p * down // up.

    resampy's loop weighs x[n0 - i] and x[n0 + 1 + k] by its filter table, linearly
    interpolated, at steps of int(scale * TABLE_STEPS) entries (not the exact scale *
    TABLE_STEPS: rounded down, which an exactly evaluated filter would not copy: -60 dB of
    difference for 48 -> 44.1 kHz, up to 0.09 in the MFCC)."""

    def __init__(self, sr_in: int, sr_out: int):
        g = math.gcd(sr_in, sr_out)
        self.up, self.down = sr_out // g, sr_in // g
        self.ratio = sr_out / sr_in
        self.scale = min(1.0, self.ratio)
        self.step = int(self.scale * TABLE_STEPS)
        self.table = resampy_kernel(np.arange(KAISER_BEST["num_zeros"] * TABLE_STEPS + 1) / TABLE_STEPS,
                                    **KAISER_BEST) * (self.ratio if self.ratio < 1 else 1.0)
        self.delta = np.append(np.diff(self.table), 0.0)
        self.width = len(self.table) // self.step + 1   # taps on either side, at most

    def weights(self, p: int) -> np.ndarray:
        """[2 * width] weights of x[n0 - width + 1 .. n0 + width] for the outputs of phase p."""
        num = p * self.down % self.up
        w = np.zeros(2 * self.width)
        for frac, side in ((self.scale * num / self.up, "left"),
                           (self.scale - self.scale * num / self.up, "right")):
            pos = frac * TABLE_STEPS
            offset = int(pos)
            i = np.arange((len(self.table) - offset) // self.step)
            taps = offset + i * self.step
            # left wing: x[n0 - i] at w[width - 1 - i]; right wing: x[n0 + 1 + i] at w[width + i]
            at = self.width - 1 - i if side == "left" else self.width + i
            w[at] = self.table[taps] + (pos - offset) * self.delta[taps]
        return w


def _apply(out: np.ndarray, padded: np.ndarray, start: int, count: int, step: int,
           w: np.ndarray) -> None:
    """out[i] = padded[start + i * step : ... + len(w)] . w for i < count, by strided rows."""
    frames = as_strided(padded[start:], (count, len(w)), (step * padded.itemsize, padded.itemsize),
                        writeable=False)
    for a in range(0, count, _ROWS):
        rows = frames[a:a + _ROWS]
        # einsum, not @: a strided view through BLAS was 2-3x slower here (copies, threads)
        out[a:a + len(rows)] = np.einsum("ij,j->i", rows, w)


def resample(y: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """`y` from sr_in to sr_out as resampy 0.2.2's kaiser_best does it, the length as librosa
    0.6.1 gives it (resampy's floor(len * ratio), zero-padded to the ceiling); the whole signal
    at once (Resampler: the same from blocks). The weights are computed once per phase
    (KaiserBest) and applied as one matrix product per phase."""
    y = np.asarray(y, dtype=np.float64)
    if sr_in == sr_out:
        return y.copy()
    f = KaiserBest(sr_in, sr_out)
    n_floor, n_out = int(len(y) * f.ratio), int(math.ceil(len(y) * f.ratio))
    padded = np.concatenate([np.zeros(f.width), y, np.zeros(f.width + f.down + 1)])
    out = np.zeros(n_out)
    for p in range(min(f.up, n_floor)):
        count = len(range(p, n_floor, f.up))
        n0 = p * f.down // f.up
        # padded[n0 + 1 + j] is x[n0 - width + 1 + j]
        _apply(out[p::f.up], padded, n0 + 1, count, f.down, f.weights(p))
    return out


class Resampler:
    """resample() fed a block at a time: `feed` returns every output whose filter support
    (width samples either side) has arrived, keeping the input still needed; `finish` pads the
    end with zeros as resample does and applies its length rule. The concatenated outputs are
    resample's, each sample from the same weights over the same inputs.

    The weights of all `up` phases are kept: for the rates an MP3 can have (8 to 48 kHz) and
    44.1 kHz out, up <= 441 phases of 2 * width <= 140 weights, under 0.5 MB."""

    def __init__(self, sr_in: int, sr_out: int):
        self.same = sr_in == sr_out
        self.ratio = sr_out / sr_in
        self.n_in = 0
        if self.same:
            return
        self.f = KaiserBest(sr_in, sr_out)
        self.w = [self.f.weights(p) for p in range(self.f.up)]
        self.buf = np.zeros(self.f.width)   # resample's `padded`, from index `base` on
        self.base = 0
        self.next = 0                       # the next output to compute

    def _outputs(self, t0: int, t1: int) -> np.ndarray:
        """Outputs t0 .. t1 - 1; buf must hold their support."""
        f = self.f
        out = np.empty(max(t1 - t0, 0))
        for p in range(f.up):
            k0, k1 = -((p - t0) // f.up), -((p - t1) // f.up)   # ceil((t - p) / up)
            if k1 > k0:
                n0 = k0 * f.down + p * f.down // f.up
                _apply(out[p + k0 * f.up - t0::f.up], self.buf, n0 + 1 - self.base, k1 - k0,
                       f.down, self.w[p])
        return out

    def feed(self, y: np.ndarray) -> np.ndarray:
        y = np.asarray(y, dtype=np.float64)
        self.n_in += len(y)
        if self.same:
            return y.copy()
        f = self.f
        self.buf = np.concatenate((self.buf, y))
        # output t needs padded[..n0 + 2 * width]: those with n0 <= last are complete
        last = self.base + len(self.buf) - 1 - 2 * f.width
        end = max(self.next, -(-(last + 1) * f.up // f.down))
        out = self._outputs(self.next, end)
        self.next = end
        keep = self.next * f.down // f.up + 1 - self.base   # the next output's first input
        self.buf = self.buf[max(keep, 0):].copy()
        self.base += max(keep, 0)
        return out

    def finish(self) -> np.ndarray:
        """The remaining outputs, up to librosa's length for everything fed."""
        if self.same:
            return np.empty(0)
        f = self.f
        n_floor, n_out = int(self.n_in * self.ratio), int(math.ceil(self.n_in * self.ratio))
        self.buf = np.concatenate((self.buf, np.zeros(f.width + f.down + 1)))
        out = self._outputs(self.next, n_floor)
        self.next = max(self.next, n_floor)
        return np.concatenate((out, np.zeros(max(n_out - self.next, 0))))


def _wav_format(head: bytes, path: str) -> tuple[int, int, int] | None:
    """(channels, rate, offset of the samples) from the start of a 16-bit WAV stream; None while
    its header has not all arrived. ffmpeg writes unknown sizes into a pipe: data runs to the end."""
    if len(head) < 12:
        return None
    if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        raise VideoError("audio decode failed", "the MP3's decoder gave no WAV stream", path)
    pos, fmt = 12, None
    while len(head) >= pos + 8:
        tag, size = head[pos:pos + 4], struct.unpack_from("<I", head, pos + 4)[0]
        if tag == b"data":
            if fmt is None:
                raise VideoError("audio decode failed", "WAV stream without a format chunk", path)
            return fmt[0], fmt[1], pos + 8
        if len(head) < pos + 8 + size:
            return None
        if tag == b"fmt ":
            channels, rate = struct.unpack_from("<HI", head, pos + 10)
            bits = struct.unpack_from("<H", head, pos + 22)[0]
            if bits != 16 or channels < 1:
                raise VideoError("audio decode failed", f"WAV stream of {bits}-bit samples", path)
            fmt = channels, rate
        pos += 8 + size + (size & 1)
    return None


def mp3_roundtrip_blocks(probe: Probe, block_s: float | None = None):
    """Yields (sample rate, mono float64 block in [-1, 1]) of the first audio stream after the
    MP3 round trip (see the module docstring), about block_s (default DECODE_BLOCK_S) seconds of
    48 kHz stereo at a time. Raises VideoError('audio decode failed')."""
    block_s = block_s or DECODE_BLOCK_S
    with tempfile.TemporaryDirectory(prefix="vaanet-mp3-") as tmp:
        mp3 = os.path.join(tmp, "audio.mp3")
        # no encoder options at all: ffmpeg's defaults, as `ffmpeg -i VIDEO X.mp3`
        enc = ffmpeg.input(probe.path)[f"a:{probe.audio_stream}"].output(mp3)
        ffmpeg_bin.run(enc, reason="audio decode failed", path=probe.path)
        dec = ffmpeg.input(mp3).output("pipe:", format="wav", acodec="pcm_s16le")
        pieces = ffmpeg_bin.stream_chunks(dec, chunk_bytes=4 * int(block_s * 48000),
                                          reason="audio decode failed", path=probe.path)
        head, fmt = b"", None
        try:
            for piece in pieces:
                head += piece
                if fmt is None:
                    fmt = _wav_format(head, probe.path)
                    if fmt is None:
                        continue
                    head = head[fmt[2]:]
                channels, rate, _ = fmt
                cut = len(head) - len(head) % (2 * channels)   # a read may split a sample
                if cut:
                    pcm = np.frombuffer(head[:cut], np.int16).reshape(-1, channels)
                    head = head[cut:]
                    yield rate, (pcm.astype(np.float64) / 32768.0).mean(axis=1)
        finally:
            pieces.close()   # an early stop kills ffmpeg before the folder goes


def load_like_librosa(probe: Probe, sample_rate: int):
    """The authors' `librosa.load(mp3, sr=sample_rate)`, emulated and in blocks: yields mono
    float64 blocks at sample_rate (their concatenation is the whole load)."""
    resampler = None
    for rate, y in mp3_roundtrip_blocks(probe):
        if resampler is None:
            resampler = Resampler(rate, sample_rate)
        yield resampler.feed(y)
    if resampler is not None:
        yield resampler.finish()
