"""MFCC of the soundtrack: equal to python_speech_features run independently on the same samples."""
import numpy as np
import pytest
from python_speech_features import mfcc as psf_mfcc

from pipeline.audio import decode_pcm, mfcc, n_mfcc_frames
from pipeline.extract import extract_video
from pipeline.params import PreprocessParams
from pipeline.probe import probe
from tests import videos

P = PreprocessParams(segments=2, snippets=1, frames=4, short_side=32, max_long_side=48)


def reference(pcm, p=P):
    return psf_mfcc(pcm.astype(np.float64), samplerate=p.sample_rate, winlen=p.winlen,
                    winstep=p.winstep, numcep=p.n_mfcc, nfilt=p.n_filt, nfft=p.nfft)


def test_lossless_pcm_gives_the_reference_mfcc(tmp_path):
    # two tones with a pause: PCM stored as-is (pcm_s16le in matroska) at the ETL's own rate
    pcm = np.concatenate([videos.tone(440, 1.0), np.zeros(4000, np.int16), videos.tone(1200, 0.77)])
    path = videos.write_video(tmp_path / "pcm.mkv", videos.counter_frames(50, 64, 48), pcm=pcm,
                              audio_codec="pcm_s16le")
    ex = extract_video(path, P)
    ref = reference(pcm)
    assert ex.info["has_audio"] is True
    assert ex.mfcc.dtype == np.float32 and ex.mfcc.shape == ref.shape == (n_mfcc_frames(len(pcm), P), 32)
    np.testing.assert_allclose(ex.mfcc, ref, rtol=1e-4, atol=1e-3)
    # different tones give different coefficients (the features carry the sound)
    assert np.abs(ex.mfcc[20] - ex.mfcc[-20]).max() > 1


def test_aac_at_another_rate_matches_ffmpeg_decoded_pcm(tmp_path):
    pcm = videos.tone(660, 2.0, rate=44100)
    path = videos.write_video(tmp_path / "aac.mp4", videos.counter_frames(50, 64, 48), pcm=pcm, rate=44100)
    p = P.replace(n_mfcc=13, n_filt=26)
    ex = extract_video(path, p)
    np.testing.assert_allclose(ex.mfcc, reference(videos.ffmpeg_pcm(path), p), rtol=1e-4, atol=1e-3)
    assert ex.mfcc.shape[1] == 13


def test_no_audio_gives_zeros_sized_by_duration(tmp_path):
    path = videos.write_video(tmp_path / "silent.mp4", videos.counter_frames(60, 64, 48))  # 2.4 s
    ex = extract_video(path, P)
    assert ex.info["has_audio"] is False
    assert ex.mfcc.dtype == np.float32 and not ex.mfcc.any()
    assert ex.mfcc.shape == (n_mfcc_frames(round(ex.info["duration"] * 16000), P), 32)
    assert ex.mfcc.shape[0] == 239  # 2.4 s: 1 + ceil((38400 - 400) / 160)


@pytest.mark.parametrize("n", [1, 399, 400, 401, 560, 16000, 16161])
def test_frame_count_rule_matches_python_speech_features(n):
    assert n_mfcc_frames(n, P) == len(reference(np.ones(n)))


@pytest.mark.parametrize("n", [1, 399, 400, 401, 16000, 48000, 100003])
def test_mfcc_is_python_speech_features_mfcc(n):
    # the same steps a block at a time: the same coefficients, silence (log of eps) included
    rng = np.random.default_rng(n)
    pcm = (rng.normal(0, 3000, n) * (np.arange(n) % 7000 < 5000)).astype(np.int16)
    for p in (P, P.replace(n_mfcc=13, n_filt=26), P.replace(sample_rate=22050, nfft=1024, winlen=0.04)):
        ref = reference(pcm, p).astype(np.float32)
        got = mfcc(pcm, p)
        assert got.dtype == np.float32 and got.shape == ref.shape
        np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-5)


def test_pcm_is_what_a_plain_ffmpeg_decode_gives(tmp_path):
    # AAC at 44.1 kHz resampled to 16 kHz: regrouping the samples into larger frames changes none
    path = videos.write_video(tmp_path / "aac.mp4", videos.counter_frames(50, 64, 48),
                              pcm=videos.tone(660, 2.0, rate=44100), rate=44100)
    pcm = decode_pcm(probe(path), 16000)
    assert len(pcm) > 30000 and np.array_equal(pcm, videos.ffmpeg_pcm(path))


def test_a_soundtrack_that_starts_late_keeps_its_place_in_time(tmp_path):
    """Audio muxed 2 s after the video's start: the MFCC begin with 2 s of silence, so that MFCC
    frame i still sits at video time i * winstep."""
    import subprocess
    import wave

    from pipeline import ffmpeg_bin
    video = videos.write_video(tmp_path / "v.mp4", videos.counter_frames(125, 64, 64), fps=25)
    with wave.open(str(tmp_path / "t.wav"), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(16000)
        w.writeframes(videos.tone(440, 2.0).tobytes())
    late = tmp_path / "late.mkv"
    subprocess.run([ffmpeg_bin.ffmpeg_exe(), "-v", "error", "-y", "-i", str(video), "-itsoffset", "2",
                    "-i", str(tmp_path / "t.wav"), "-map", "0:v", "-map", "1:a", "-c:v", "copy",
                    "-c:a", "pcm_s16le", str(late)], check=True)
    energy = extract_video(late, PreprocessParams(segments=2, frames=4, short_side=32,
                                                  max_long_side=32)).mfcc[:, 0]
    assert len(energy) == pytest.approx(400, abs=3)          # 2 s of silence + 2 s of tone
    assert energy[:195].max() < energy[205:395].min() - 20   # silent, then loud from 2 s on


def test_librosa_recipe_on_the_same_samples(tmp_path):
    # --mfcc librosa with the paper profile: the same decode, librosa's MFCC of samples / 32768
    from pipeline.mfcc_librosa import mfcc_librosa
    pcm = np.concatenate([videos.tone(440, 1.0), np.zeros(4000, np.int16), videos.tone(1200, 0.77)])
    path = videos.write_video(tmp_path / "pcm.mkv", videos.counter_frames(50, 64, 48), pcm=pcm,
                              audio_codec="pcm_s16le")
    p = P.replace(mfcc="librosa", winlen=P.nfft / P.sample_rate)
    ex = extract_video(path, p)
    ref = mfcc_librosa(pcm / 32768.0, 16000, 32, 512, 160)
    assert ex.mfcc.shape == ref.shape == (n_mfcc_frames(len(pcm), p), 32) == (1 + len(pcm) // 160, 32)
    np.testing.assert_array_equal(ex.mfcc, ref)
    # the psf recipe on the same file gives other numbers (another scale)
    assert np.abs(extract_video(path, P).mfcc[:100] - ex.mfcc[:100]).max() > 10
    silent = videos.write_video(tmp_path / "silent.mp4", videos.counter_frames(60, 64, 48))
    assert extract_video(silent, p).mfcc.shape == (1 + 38400 // 160, 32)   # 2.4 s, librosa's count
