"""Block-wise MFCC (as audio_features computes it from the ffmpeg pipe) against the whole-track
computation, on a long tone cut into small blocks so that many block boundaries are crossed."""
import numpy as np
import pytest
from python_speech_features import mfcc as psf_mfcc

from pipeline.audio import PsfMfccStream, audio_features, n_mfcc_frames
from pipeline.mfcc_librosa import LibrosaMfccStream, mfcc_librosa
from pipeline.params import PreprocessParams
from pipeline.probe import probe
from tests import videos

SR = 16000


def _tone(seconds: float) -> np.ndarray:
    """A 440 Hz tone with a slow swell and one second of silence, as int16 values."""
    t = np.arange(int(seconds * SR)) / SR
    x = 8000 * np.sin(2 * np.pi * 440 * t) * (1 + 0.5 * np.sin(2 * np.pi * 0.3 * t))
    x[5 * SR:6 * SR] = 0
    return np.round(x)


def _blocks(x: np.ndarray, size: int):
    return (x[i:i + size] for i in range(0, len(x), size))


@pytest.mark.parametrize("cut,expect", [(0, 0), (1, 6500), (159, 10 ** 6), (400, 6499)])
def test_psf_blocks_equal_the_whole_track(cut, expect):
    """expect: the frames the output is first sized for (too few: it grows; too many: cut)."""
    x = _tone(65)[:len(_tone(65)) - cut]
    params = PreprocessParams()
    whole = psf_mfcc(x, SR, params.winlen, params.winstep, params.n_mfcc, params.n_filt, params.nfft)
    stream = PsfMfccStream(params, expect)
    for b in _blocks(x, 12345):  # not a multiple of the hop: frames straddle blocks
        stream.feed(b)
    got = stream.finish()
    assert got.shape == whole.shape == (n_mfcc_frames(len(x), params), params.n_mfcc)
    np.testing.assert_allclose(got, whole, rtol=1e-5, atol=1e-4)
    one = PsfMfccStream(params)
    one.feed(x)
    np.testing.assert_array_equal(got, one.finish())


@pytest.mark.parametrize("n", [65 * SR, 65 * SR - 1, 65 * SR - 77, 100, 513, 1000])
def test_librosa_blocks_equal_the_whole_track(n):
    y = _tone(65)[:n] / 32768.0
    whole = mfcc_librosa(y, SR, 32, 512, 160)
    stream = LibrosaMfccStream(SR, 32, 512, 160)
    for b in _blocks(y, 777):
        stream.feed(b)
    got = stream.finish()
    assert got.shape == whole.shape == (1 + n // 160, 32)
    np.testing.assert_allclose(got, whole, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("recipe", ["psf", "librosa"])
def test_audio_features_reads_the_pipe_in_blocks(tmp_path, monkeypatch, recipe):
    """A real video through ffmpeg, read 0.3 s at a time, gives the whole-decode MFCC."""
    from pipeline import audio
    pcm44 = videos.tone(660, 4.0, rate=44100)
    path = videos.write_video(tmp_path / "v.mp4", videos.counter_frames(100, 64, 48), pcm=pcm44, rate=44100)
    p = probe(path)
    params = PreprocessParams(mfcc=recipe, winlen=512 / SR) if recipe == "librosa" else PreprocessParams()
    pcm = audio.decode_pcm(p, params.sample_rate)
    expected = (audio.librosa_features(pcm / 32768.0, params) if recipe == "librosa"
                else audio.mfcc(pcm, params))
    real = audio.pcm_blocks
    monkeypatch.setattr(audio, "pcm_blocks", lambda pr, sr: real(pr, sr, 0.3))
    blocks = list(audio.pcm_blocks(p, params.sample_rate))
    assert len(blocks) > 10 and max(len(b) for b in blocks) <= int(0.3 * params.sample_rate)
    got, has_audio, notes = audio_features(p, params, p.duration)
    assert has_audio and notes == []
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_pipe_errors_are_video_errors(tmp_path):
    """A failing ffmpeg ends the block stream with the reason; a hung one is killed on time;
    a stream closed early leaves no ffmpeg behind."""
    import dataclasses

    import ffmpeg

    from pipeline import audio, ffmpeg_bin
    from pipeline.errors import VideoError
    bad = ffmpeg.input(str(tmp_path / "none.wav")).output("pipe:", format="s16le")
    with pytest.raises(VideoError) as e:
        list(ffmpeg_bin.stream_chunks(bad, chunk_bytes=4096, reason="audio decode failed"))
    assert e.value.reason == "audio decode failed" and "none.wav" in e.value.log_tail
    slow = ffmpeg.input("sine=sample_rate=8000", f="lavfi", re=None).output("pipe:", format="s16le")
    with pytest.raises(VideoError, match="timed out"):
        list(ffmpeg_bin.stream_chunks(slow, chunk_bytes=4096, timeout=1.0))
    gen = ffmpeg_bin.stream_chunks(slow, chunk_bytes=4096)
    assert len(next(gen)) == 4096
    gen.close()  # kills and reaps ffmpeg: no error, no hang

    # a soundtrack ffmpeg cannot decode (here: a stream index the file lacks) keeps the video, silent
    path = videos.write_video(tmp_path / "v.mp4", videos.counter_frames(25, 64, 48),
                              pcm=videos.tone(440, 1.0))
    p = dataclasses.replace(probe(path), audio_stream=7)
    got, has_audio, notes = audio.audio_features(p, PreprocessParams(), p.duration)
    assert not has_audio and notes[0].startswith("audio decode failed") and not got.any()
