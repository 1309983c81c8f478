"""The librosa-compatible MFCC and resampler against librosa and resampy themselves."""
import numpy as np
import pytest

from pipeline.mfcc_librosa import mel_filters, mfcc_librosa
from pipeline.official_audio import KAISER_BEST, resample
from tests import videos

librosa = pytest.importorskip("librosa", reason="librosa is in the test extra: pip install -e .[test]")


def synthetic(seconds: float, rate: int, seed: int = 0) -> np.ndarray:
    """float32 in [-1, 1]: a tone, a chirp and noise, then a silent stretch (where the 80 dB floor
    of power_to_db applies)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    y = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.2 * np.sin(2 * np.pi * (100 + 2000 * t) * t) \
        + 0.05 * rng.standard_normal(len(t))
    y[len(y) * 2 // 3:] = 0
    return y.astype(np.float32)


def encoded(tmp_path, rate: int) -> np.ndarray:
    """Real-ish audio: the synthetic signal through an AAC encoder and decoder (ffmpeg)."""
    pcm = (synthetic(1.5, rate, seed=1) * 32767).astype(np.int16)
    path = videos.write_video(tmp_path / "a.mp4", videos.counter_frames(10, 32, 32), pcm=pcm, rate=rate)
    return videos.ffmpeg_pcm(path, rate).astype(np.float32) / 32768


def librosa_mfcc(y, sr, n_fft=2048, hop=512, n_mfcc=32):
    # the authors' call, librosa.feature.mfcc(y=y, sr=sr, n_mfcc=32), with 0.6.1's reflect padding
    return librosa.feature.mfcc(y=y, sr=sr, n_mfcc=n_mfcc, n_fft=n_fft, hop_length=hop,
                                center=True, pad_mode="reflect").T


def assert_close(ours, ref):
    assert ours.shape == ref.shape and ours.dtype == np.float32
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())


@pytest.mark.parametrize("n", [3000, 44100, 44100 * 2 + 123])
def test_equals_librosa_on_synthetic_audio(n):
    y = synthetic(3.0, 44100)[:n]
    assert_close(mfcc_librosa(y, 44100), librosa_mfcc(y, 44100))


def test_equals_librosa_on_encoded_audio_and_other_grids(tmp_path):
    y = encoded(tmp_path, 44100)
    ref = librosa_mfcc(y, 44100)
    assert_close(mfcc_librosa(y, 44100), ref)
    assert ref.shape == (1 + len(y) // 512, 32)
    # --mfcc librosa with the paper profile's rate: 16 kHz, nfft 512, hop 160
    y16 = synthetic(1.0, 16000)
    assert_close(mfcc_librosa(y16, 16000, 13, 512, 160), librosa_mfcc(y16, 16000, 512, 160, 13))


def test_mel_filters_are_librosa_slaney_filters():
    ref = librosa.filters.mel(sr=44100, n_fft=2048, n_mels=128, htk=False, norm="slaney")
    np.testing.assert_allclose(mel_filters(44100, 2048), ref, rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("rate", [16000, 22050, 32000, 48000])
def test_resampler_is_resampy_kaiser_best(rate):
    resampy = pytest.importorskip("resampy")
    import scipy.signal
    y = synthetic(1.0, rate).astype(np.float64)
    ref = resampy.resample(y, rate, 44100, filter="sinc_window", num_zeros=64, precision=9,
                           rolloff=KAISER_BEST["rolloff"],
                           window=lambda m: scipy.signal.windows.kaiser(m, KAISER_BEST["beta"]))
    ours = resample(y, rate, 44100)
    n = int(np.ceil(len(y) * 44100 / rate))    # librosa pads resampy's floor length to this
    assert len(ours) == n and len(ref) == int(len(y) * 44100 / rate)
    assert not ours[len(ref):].any()
    # the same weights in another order of additions
    assert np.abs(ours[:len(ref)] - ref).max() < 1e-9
