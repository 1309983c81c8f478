"""The `official` profile's soundtrack in blocks (MP3 decoded from the pipe, resampy's filter and
librosa's MFCC a block at a time) against the whole-track chain it replaced."""
import dataclasses
import math
import subprocess
import wave

import numpy as np
import pytest

from pipeline import ffmpeg_bin, official_audio
from pipeline.audio import audio_features
from pipeline.mfcc_librosa import LibrosaMfccStream, mfcc_librosa
from pipeline.official_audio import Resampler, mp3_roundtrip_blocks, resample
from pipeline.params import official_params
from pipeline.probe import probe

P = official_params()


def signal(kind: str, n: int, rate: int, seed: int = 0) -> np.ndarray:
    """float64 in [-1, 1]: a 440 Hz tone with a slow swell and a silent stretch, or noise."""
    t = np.arange(n) / rate
    if kind == "noise":
        return 0.3 * np.random.default_rng(seed).standard_normal(n)
    y = 0.4 * np.sin(2 * np.pi * 440 * t) * (1 + 0.5 * np.sin(2 * np.pi * 0.3 * t))
    y[n // 3:n // 2] = 0
    return y


def irregular_blocks(y: np.ndarray, seed: int = 1, most: int = 30000):
    """y cut at random places (1 to `most` samples), so that blocks end anywhere."""
    rng, i = np.random.default_rng(seed), 0
    while i < len(y):
        k = int(rng.integers(1, most))
        yield y[i:i + k]
        i += k


def resample_in_blocks(y, sr_in, sr_out, blocks):
    r = Resampler(sr_in, sr_out)
    return np.concatenate([r.feed(b) for b in blocks] + [r.finish()])


@pytest.mark.parametrize("rate", [48000, 32000, 22050, 8000, 44100])
def test_resampler_blocks_equal_the_whole_track(rate):
    n = 7 * rate + 1233                    # an odd length: floor and ceiling of the ratio differ
    y = signal("tone", n, rate) + 0.05 * signal("noise", n, rate)
    whole = resample(y, rate, 44100)
    got = resample_in_blocks(y, rate, 44100, irregular_blocks(y))
    assert len(got) == len(whole) == math.ceil(n * 44100 / rate)
    np.testing.assert_allclose(got, whole, rtol=0, atol=1e-12)
    # librosa's length rule: resampy's floor, then zeros up to the ceiling
    assert not got[int(n * 44100 / rate):].any()


@pytest.mark.parametrize("n", [0, 1, 2, 139, 1000, 48000 + 7])
def test_resampler_short_tracks_and_one_block(n):
    y = signal("noise", n, 48000)
    whole = resample(y, 48000, 44100)
    for blocks in ([y], [y[:n // 2], y[n // 2:]], [y[i:i + 1] for i in range(min(n, 200))] + [y[200:]]):
        got = resample_in_blocks(y, 48000, 44100, blocks)
        assert got.shape == whole.shape
        np.testing.assert_allclose(got, whole, rtol=0, atol=1e-12)


@pytest.mark.parametrize("kind", ["tone", "noise"])
@pytest.mark.parametrize("n", [12 * 48000 + 481, 2 * 48000 - 1])
def test_mfcc_of_streamed_resampling_equals_the_whole_track(kind, n):
    """MP3-rate samples resampled and turned into MFCC block by block, as audio_features does,
    against resample and mfcc_librosa on the whole signal (float64, before the float32 cast)."""
    y = signal(kind, n, 48000)
    whole = mfcc_librosa(resample(y, 48000, 44100), 44100, 32, 2048, 512, dtype=np.float64)
    r, m = Resampler(48000, 44100), LibrosaMfccStream(44100, 32, 2048, 512, dtype=np.float64)
    for b in irregular_blocks(y, most=60000):
        m.feed(r.feed(b))
    m.feed(r.finish())
    got = m.finish()
    assert got.shape == whole.shape == (1 + math.ceil(n * 44100 / 48000) // 512, 32)
    np.testing.assert_allclose(got, whole, rtol=1e-9, atol=1e-9 * np.abs(whole).max())


@pytest.mark.parametrize("n", [1, 100, 2047, 2048, 2049, 5000, 44100 + 1])
def test_mfcc_stream_short_tracks(n):
    """Shorter than the window (np.pad's repeated reflection), around it, and one block."""
    y = signal("tone", n, 44100) + 0.01 * signal("noise", n, 44100)
    whole = mfcc_librosa(y, 44100, 32, 2048, 512, dtype=np.float64)
    for blocks in ([y], [y[:n // 3], y[n // 3:]]):
        m = LibrosaMfccStream(44100, 32, 2048, 512, dtype=np.float64)
        for b in blocks:
            m.feed(b)
        got = m.finish()
        assert got.shape == whole.shape == (1 + n // 512, 32)
        np.testing.assert_allclose(got, whole, rtol=1e-9, atol=1e-9 * np.abs(whole).max())


def clip(tmp_path, rate: int, channels: int, seconds: float, name: str = "v.mp4"):
    """A small video whose AAC soundtrack is noise at `rate` with `channels` channels."""
    path = tmp_path / name
    subprocess.run([ffmpeg_bin.ffmpeg_exe(), "-v", "error", "-y", "-f", "lavfi", "-i",
                    "testsrc=size=64x48:rate=5:duration=1", "-f", "lavfi", "-i",
                    f"anoisesrc=r={rate}:a=0.2:d={seconds}", "-ac", str(channels),
                    "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", str(path)], check=True)
    return probe(path)


def whole_track_decode(p, tmp_path):
    """The chain before blocks: the MP3 decoded to a WAV file, read whole, channels averaged."""
    exe = ffmpeg_bin.ffmpeg_exe()
    mp3, wav = tmp_path / "ref.mp3", tmp_path / "ref.wav"
    subprocess.run([exe, "-v", "error", "-y", "-i", p.path, "-map", f"0:a:{p.audio_stream}",
                    str(mp3)], check=True)
    subprocess.run([exe, "-v", "error", "-y", "-i", str(mp3), "-acodec", "pcm_s16le", str(wav)],
                   check=True)
    with wave.open(str(wav), "rb") as w:
        channels, rate = w.getnchannels(), w.getframerate()
        pcm = np.frombuffer(w.readframes(w.getnframes()), np.int16)
    return rate, (pcm.reshape(-1, channels).astype(np.float64) / 32768.0).mean(axis=1)


@pytest.mark.parametrize("rate,channels", [(48000, 2), (32000, 6), (22050, 1)])
def test_mp3_blocks_from_the_pipe_equal_the_wav_file(tmp_path, rate, channels):
    p = clip(tmp_path, rate, channels, 2.3)
    ref_rate, ref = whole_track_decode(p, tmp_path)
    got = list(mp3_roundtrip_blocks(p, block_s=0.1))
    assert len(got) > 4 and {r for r, _ in got} == {ref_rate}   # blocks of 0.1 s at 48 kHz stereo
    np.testing.assert_array_equal(np.concatenate([b for _, b in got]), ref)


@pytest.mark.parametrize("seconds", [4.1, 0.01])
def test_official_audio_features_equal_the_whole_track_chain(tmp_path, monkeypatch, seconds):
    """A real video through audio_features, read 0.25 s at a time, against the whole-track
    chain (float32 results: at most a rounding step apart)."""
    p = clip(tmp_path, 48000, 2, seconds)
    rate, y = whole_track_decode(p, tmp_path)
    ref = mfcc_librosa(resample(y, rate, 44100), 44100, 32, 2048, 512)
    monkeypatch.setattr(official_audio, "DECODE_BLOCK_S", 0.25)
    got, has_audio, notes = audio_features(p, P, p.duration)
    assert has_audio and notes == [] and got.dtype == np.float32
    assert got.shape == ref.shape == (1 + math.ceil(len(y) * 44100 / 48000) // 512, 32)
    np.testing.assert_allclose(got, ref, rtol=2.5e-7, atol=1e-5)


def test_official_audio_without_samples_or_decodable_stream(tmp_path, monkeypatch):
    """As before the blocks: a stream that decodes to nothing, or not at all, gives zeros and a note."""
    p = clip(tmp_path, 48000, 2, 1.0)
    bad = dataclasses.replace(p, audio_stream=7)     # a stream index the file lacks
    got, has_audio, notes = audio_features(bad, P, 1.0)
    assert not has_audio and notes[0].startswith("audio decode failed") and not got.any()
    assert got.shape == (1 + 44100 // 512, 32)
    monkeypatch.setattr(official_audio, "mp3_roundtrip_blocks", lambda probe: iter(()))
    got, has_audio, notes = audio_features(p, P, 1.0)
    assert not has_audio and notes == ["audio stream decoded to no samples: zeros"]
    assert got.shape == (1 + 44100 // 512, 32) and not got.any()
