"""`vaanet preprocess --profile official`: the authors' data, step by step, against their commands."""
import subprocess
import wave

import numpy as np
import pytest
from click.testing import CliRunner

from cli import main
from pipeline import ffmpeg_bin
from pipeline.extract import extract_video
from pipeline.params import OFFICIAL, PreprocessParams, official_params
from pipeline.video import output_size, plan_snippets
from tests import videos
from trainer.sampling import audio_official

P = official_params(short_side=32, max_long_side=48)


def stereo_clip(tmp_path, seconds=2.0, rate=48000):
    """A counter video with a 48 kHz stereo AAC soundtrack (other content in each channel)."""
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * rate)) / rate
    left = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(len(t))
    right = 0.2 * np.sin(2 * np.pi * (200 + 1500 * t) * t) * (t < seconds / 2)
    wav = tmp_path / "in.wav"
    with wave.open(str(wav), "wb") as f:
        f.setnchannels(2), f.setsampwidth(2), f.setframerate(rate)
        f.writeframes((np.stack([left, right], 1) * 32767).astype(np.int16).tobytes())
    silent = videos.write_video(tmp_path / "v.mp4", videos.counter_frames(int(seconds * 25), 64, 48))
    out = tmp_path / "clip.mp4"
    subprocess.run([ffmpeg_bin.ffmpeg_exe(), "-v", "error", "-y", "-i", str(silent), "-i", str(wav),
                    "-c:v", "copy", "-c:a", "aac", str(out)], check=True)
    return out


@pytest.mark.parametrize("T", [1, 255, 4095, 4096, 4097, 9000])
def test_audio_tiling_is_the_authors_np_tile(T):
    mfcc = np.random.default_rng(T).standard_normal((T, 32)).astype(np.float32)
    k = 4096 // T + 1                      # their loader: np.tile, then the first 4096 frames
    theirs = np.tile(mfcc, (k, 1))[:4096].reshape(16, 256, 32)
    np.testing.assert_array_equal(audio_official(mfcc, 16, 256), theirs)


def test_profile_fixes_the_authors_values():
    assert (P.segments, P.frames, P.sample_rate, P.n_mfcc, P.nfft, P.mfcc) == \
        (12, 16, 44100, 32, 2048, "librosa")
    assert round(P.winstep * P.sample_rate) == 512 and round(P.winlen * P.sample_rate) == 2048
    with pytest.raises(ValueError, match="segments 10 \\(needs 12\\)"):
        official_params(segments=10)
    with pytest.raises(ValueError, match="mfcc must be one of"):
        PreprocessParams(mfcc="htk")
    with pytest.raises(ValueError, match="window is nfft"):
        PreprocessParams(mfcc="librosa")          # winlen 0.025 s is not 512 samples
    # a params.json written before these fields existed still loads, as the paper profile
    old = {k: v for k, v in PreprocessParams().to_dict().items() if k not in ("profile", "mfcc")}
    assert PreprocessParams.from_dict(old) == PreprocessParams()
    assert PreprocessParams.from_dict(P.to_dict()) == P


def test_cli_refuses_to_change_what_the_profile_fixes(tmp_path):
    r = CliRunner().invoke(main, ["preprocess", "--dataset", "folder", "--root", str(tmp_path),
                                  "--profile", "official", "--segments", "10"])
    assert r.exit_code == 2 and "segments 10 (needs 12)" in r.output
    r = CliRunner().invoke(main, ["preprocess", "--dataset", "folder", "--root", str(tmp_path),
                                  "--profile", "official", "--mfcc", "psf"])
    assert r.exit_code == 2 and "mfcc psf (needs librosa)" in r.output


def test_frames_are_the_authors_jpegs_scaled(tmp_path):
    path = stereo_clip(tmp_path, seconds=2.0)
    ex = extract_video(path, P)
    assert ex.frames.shape == (P.snippets, 12, 16) + ex.frames.shape[3:]
    # the authors' command, to files; every file scaled as the ETL scales
    jpg = tmp_path / "jpg"
    jpg.mkdir()
    exe = ffmpeg_bin.ffmpeg_exe()
    subprocess.run([exe, "-v", "error", "-i", str(path), "-vf", "scale=-1:240", str(jpg / "%06d.jpg")],
                   check=True)
    n = len(list(jpg.iterdir()))
    assert n == 50
    sw, sh, ow, oh = output_size(round(64 * 240 / 48), 240, P)
    raw = subprocess.run([exe, "-v", "error", "-i", str(jpg / "%06d.jpg"), "-vf",
                          f"scale={sw}:{sh}:flags=area,crop={ow}:{oh}", "-f", "rawvideo",
                          "-pix_fmt", "rgb24", "-"], capture_output=True, check=True).stdout
    theirs = np.frombuffer(raw, np.uint8).reshape(n, oh, ow, 3)
    idx = plan_snippets(n, P)[..., None] + np.arange(16)
    np.testing.assert_array_equal(ex.frames, theirs[idx])
    assert [videos.read_counter(f) for f in ex.frames[0, :, 0]] == list(idx[0, :, 0])


def test_audio_is_the_authors_mp3_librosa_chain(tmp_path):
    librosa = pytest.importorskip("librosa")
    resampy = pytest.importorskip("resampy")
    import scipy.signal
    from pipeline.official_audio import KAISER_BEST
    path = stereo_clip(tmp_path, seconds=3.0)
    ex = extract_video(path, P)
    # their chain, step by step: ffmpeg -i VIDEO X.mp3; 16-bit decode; / 32768; channel mean;
    # resampy's kaiser_best (0.2.2's filter); librosa.feature.mfcc(y, sr, n_mfcc=32)
    exe = ffmpeg_bin.ffmpeg_exe()
    mp3 = tmp_path / "x.mp3"
    subprocess.run([exe, "-v", "error", "-i", str(path), str(mp3)], check=True)
    raw = subprocess.run([exe, "-v", "error", "-i", str(mp3), "-f", "s16le", "-ac", "2", "-"],
                         capture_output=True, check=True).stdout
    y = (np.frombuffer(raw, np.int16).astype(np.float32) / 32768).reshape(-1, 2).mean(1)
    y = resampy.resample(y, 48000, 44100, filter="sinc_window", num_zeros=64, precision=9,
                         rolloff=KAISER_BEST["rolloff"],
                         window=lambda m: scipy.signal.windows.kaiser(m, KAISER_BEST["beta"]))
    y = librosa.util.fix_length(y, size=int(np.ceil(len(raw) // 4 * 44100 / 48000)))
    ref = librosa.feature.mfcc(y=y, sr=44100, n_mfcc=32, pad_mode="reflect").T
    assert ex.info["has_audio"] and ex.mfcc.shape == ref.shape
    inner = slice(4, -4)
    corr = [np.corrcoef(ex.mfcc[inner, i], ref[inner, i])[0, 1] for i in range(32)]
    assert min(corr) >= 0.999999
    assert np.abs(ex.mfcc[inner] - ref[inner]).max() <= 0.01   # float rounding only
    assert ex.mfcc[:, 0].mean() < -100    # librosa's scale (dB through an ortho DCT), not psf's


def test_profile_and_recipe_are_recorded_in_params_json(tmp_path):
    import json
    from pipeline import preprocess
    root = tmp_path / "videos" / "joy"
    root.mkdir(parents=True)
    (tmp_path / "make").mkdir()
    stereo_clip(tmp_path / "make", seconds=1.0).rename(root / "a.mp4")
    out = tmp_path / "out"
    res = preprocess.run("folder", root.parent, out, P, jobs=1, progress=False, echo=lambda *a: None)
    assert res.ok_total == 1
    params = json.loads((out / "params.json").read_text())["params"]
    assert params["profile"] == "official" and params["mfcc"] == "librosa"
    assert {k: params[k] for k in OFFICIAL} == OFFICIAL


def test_an_output_made_before_the_profile_fields_still_resumes(tmp_path):
    import json
    from pipeline.preprocess import OutputRefused, check_output
    params = PreprocessParams()
    old = {k: v for k, v in params.to_dict().items() if k not in ("profile", "mfcc")}
    (tmp_path / "params.json").write_text(json.dumps({"dataset": "e6", "params": old}))
    check_output(tmp_path, "e6", params, overwrite=False)         # the same settings: resumes
    with pytest.raises(OutputRefused, match="mfcc psf -> librosa"):
        check_output(tmp_path, "e6", params.replace(mfcc="librosa", winlen=512 / 16000), False)


def test_official_shards_are_centre_cropped_by_the_authors_rounding(tmp_path):
    from types import SimpleNamespace
    from pipeline.reader import ShardReader
    from pipeline.writer import ShardWriter
    from pipeline.datasets import Video
    from trainer.loader import ClipDataset
    rng = np.random.default_rng(0)
    for profile, x0 in (("official", 2), ("paper", 1)):   # margin 35 - 32 = 3: 1.5
        params = P if profile == "official" else PreprocessParams(
            segments=12, snippets=1, frames=16, short_side=32, max_long_side=48)
        out = tmp_path / profile
        w = ShardWriter(out, params, dataset="demo", classes=["a", "b"], polarity=[0, 1],
                        membership={}, split_names=["given"]).open()
        frames = rng.integers(0, 256, (params.snippets, 12, 16, 32, 35, 3), dtype=np.uint8)
        w.add(Video("a/v", 0, "a", tmp_path / "v.mp4"), frames, np.zeros((5, 32), np.float32),
              {"fps": 25.0}, sha1="h")
        w.close()
        r = ShardReader(out)
        cfg = SimpleNamespace(segments=12, frames=16, crop=32, audio_len=8, n_mfcc=32,
                              streams="visual")
        got = ClipDataset(r, r.ids, cfg, train=False)[0]["visual"].numpy()
        stored = r.frames("a/v")
        assert np.array_equal(got, stored[params.snippets // 2, :, :, :, x0:x0 + 32])
        r.close()


def test_jpeg_route_reads_frames_into_their_places():
    """Each decoded frame is copied to every slot that wants it; a stream that ends early
    (here: mid-frame) counts only whole frames."""
    import io

    from pipeline.official_video import _read_into
    idx = np.array([[0, 1, 2], [2, 3, 4]])            # frame 2 is wanted twice
    wanted = np.unique(idx)
    slot = np.searchsorted(wanted, idx).ravel()
    order = np.argsort(slot, kind="stable")
    first = np.searchsorted(slot[order], np.arange(len(wanted) + 1))
    frames = np.arange(5 * 2 * 3 * 3, dtype=np.uint8).reshape(5, 2, 3, 3)
    out = np.zeros((6, 2, 3, 3), np.uint8)
    assert _read_into(io.BytesIO(frames.tobytes()), out, order, first) == 5
    np.testing.assert_array_equal(out, frames[idx.ravel()])
    out[:] = 0
    assert _read_into(io.BytesIO(frames[:3].tobytes() + b"\x01" * 7), out, order, first) == 3
    np.testing.assert_array_equal(out[:4], frames[[0, 1, 2, 2]])
