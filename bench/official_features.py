"""How close `--profile official` comes to the features the authors' code computed.

    python bench/official_features.py [--old-ffmpeg PATH] [--seconds 20]

Makes a clip with real-ish content (a 48 kHz stereo AAC soundtrack: tones, noise, a chirp and
bursts, different in the two channels; a moving test pattern), then computes its MFCC
  - as the authors' code does: `ffmpeg -i VIDEO X.mp3`, librosa.load(X.mp3, sr=44100) as
    librosa 0.6.1 ran it (audioread's ffmpeg decoder, int16 / 32768, mean of the channels,
    resampy's kaiser_best of resampy 0.2.2: its sinc_window with 64 zero crossings, a table of
    2**9 steps per crossing, Kaiser beta 14.7697, roll-off 0.9476), librosa.feature.mfcc with
    n_mfcc 32 and reflect padding (librosa 0.6.1's);
  - with vaanet's official profile (pipeline/extract.py), and with the paper profile's recipe
    at the authors' frame grid (python_speech_features, the README's earlier advice);
and prints per-coefficient correlation and the interior-frame maximum absolute difference.
Two parts of the remaining difference are measured on their own: the resampler (the authors'
chain with vaanet's resampler in place of resampy) and the encoder version (the authors' chain
with an older ffmpeg for the MP3, --old-ffmpeg, e.g. ffmpeg 4.2.2 from imageio-ffmpeg 0.4.2).
The frames: the network's evaluation input (the centre 112 x 112) from the official profile's
shards and from frames decoded straight from the source, against the authors' validation
input made from their JPEG files with PIL, for the same frames.

Needs librosa, resampy, audioread and pillow (pip install librosa resampy pillow).
"""
from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import tempfile
import wave
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline import ffmpeg_bin  # noqa: E402
from pipeline.extract import extract_video  # noqa: E402
from pipeline.official_audio import KAISER_BEST, resample  # noqa: E402
from pipeline.params import official_params  # noqa: E402
from pipeline.probe import probe  # noqa: E402
from pipeline.video import decode_snippets, plan_snippets  # noqa: E402
from trainer.sampling import crop_origin  # noqa: E402

EDGE = 4  # frames left out at both ends (padding and filter edges)


def soundtrack(seconds: float, rate: int = 48000, seed: int = 0) -> np.ndarray:
    """int16 [n, 2]: tones, a chirp, noise and bursts, other in each channel."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    chirp = np.sin(2 * np.pi * (100 * t + 0.5 * (8000 - 100) / seconds * t ** 2))
    bursts = (np.sin(2 * np.pi * 1.3 * t) > 0.6) * np.sin(2 * np.pi * 2500 * t) * 0.4
    left = 0.25 * np.sin(2 * np.pi * 220 * t) + 0.2 * chirp + 0.04 * rng.standard_normal(len(t))
    right = 0.2 * np.sin(2 * np.pi * 660 * t) * (1 + 0.5 * np.sin(2 * np.pi * 0.5 * t)) + bursts \
        + 0.04 * rng.standard_normal(len(t))
    return np.clip(np.stack([left, right], 1) * 32767, -32768, 32767).astype(np.int16)


def make_clip(path: Path, seconds: float) -> Path:
    wav = path.with_suffix(".wav")
    with wave.open(str(wav), "wb") as f:
        f.setnchannels(2), f.setsampwidth(2), f.setframerate(48000)
        f.writeframes(soundtrack(seconds).tobytes())
    subprocess.run([ffmpeg_bin.ffmpeg_exe(), "-v", "error", "-y", "-f", "lavfi", "-i",
                    f"testsrc2=size=480x270:rate=25:duration={seconds}", "-i", str(wav),
                    "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "192k",
                    "-shortest", str(path)], check=True)
    wav.unlink()
    return path


def authors_mfcc(video: Path, tmp: Path, ffmpeg_exe: str, resampler: str = "resampy") -> np.ndarray:
    """[T, 32] as the authors' code computes it (see the module docstring)."""
    import audioread.ffdec
    import librosa
    import resampy
    import scipy.signal

    mp3 = tmp / f"authors-{Path(ffmpeg_exe).name}.mp3"
    subprocess.run([ffmpeg_exe, "-v", "error", "-y", "-i", str(video), str(mp3)], check=True)
    # audioread runs `ffmpeg` from PATH: this one, as `ffmpeg`
    bindir = tmp / "bin"
    bindir.mkdir(exist_ok=True)
    link = bindir / "ffmpeg"
    link.unlink(missing_ok=True)
    link.symlink_to(ffmpeg_bin.ffmpeg_exe())   # decoding: the current ffmpeg in every case
    env_path = os.environ["PATH"]
    os.environ["PATH"] = f"{bindir}{os.pathsep}{env_path}"
    try:
        with audioread.ffdec.FFmpegAudioFile(str(mp3)) as f:
            sr, ch = f.samplerate, f.channels
            raw = b"".join(f)
    finally:
        os.environ["PATH"] = env_path
    y = (np.frombuffer(raw, "<i2").astype(np.float32) / 32768).reshape(-1, ch).T
    y = np.mean(y, axis=0)   # librosa 0.6.1's to_mono (float32)
    if resampler == "resampy":
        n = int(math.ceil(len(y) * 44100 / sr))
        y = resampy.resample(y, sr, 44100, filter="sinc_window", num_zeros=KAISER_BEST["num_zeros"],
                             precision=9, rolloff=KAISER_BEST["rolloff"],
                             window=lambda m: scipy.signal.windows.kaiser(m, KAISER_BEST["beta"]))
        y = librosa.util.fix_length(y, size=n)
    else:
        y = resample(y, sr, 44100).astype(np.float32)
    return librosa.feature.mfcc(y=y, sr=44100, n_mfcc=32, pad_mode="reflect").T


def list_frames(p):
    from pipeline.probe import frame_table
    return frame_table(p).times


def authors_frames(video: Path, tmp: Path, starts: np.ndarray, k: int = 16) -> np.ndarray:
    """uint8 [t, k, 112, 112, 3]: their JPEGs (`ffmpeg -i VIDEO -vf scale=-1:240 %06d.jpg`)
    through their validation transform: PIL, short side to 112 (bilinear), centre crop 112."""
    from PIL import Image
    jpg = tmp / "jpg"
    jpg.mkdir(exist_ok=True)
    subprocess.run([ffmpeg_bin.ffmpeg_exe(), "-v", "error", "-i", str(video), "-vf", "scale=-1:240",
                    str(jpg / "%06d.jpg")], check=True)
    out = np.empty((len(starts), k, 112, 112, 3), np.uint8)
    for i, s in enumerate(starts):
        for j in range(k):
            img = Image.open(jpg / f"{s + j + 1:06d}.jpg").convert("RGB")
            w, h = img.size
            ow, oh = (112, int(112 * h / w)) if w < h else (int(112 * w / h), 112)
            img = img.resize((ow, oh), Image.BILINEAR)
            x1, y1 = int(round((ow - 112) / 2.0)), int(round((oh - 112) / 2.0))
            out[i, j] = np.asarray(img.crop((x1, y1, x1 + 112, y1 + 112)))
    return out


def frame_diff(name: str, ours: np.ndarray, theirs: np.ndarray):
    d = np.abs(ours.astype(np.int16) - theirs.astype(np.int16))
    mse = np.mean(d.astype(np.float64) ** 2)
    print(f"  {name:<52} mean |diff| {d.mean():5.2f}  max {d.max():3d}  "
          f"PSNR {10 * np.log10(255 ** 2 / mse):5.1f} dB")


def compare(name: str, ours: np.ndarray, ref: np.ndarray) -> dict:
    n = min(len(ours), len(ref))
    a, b = ours[EDGE:n - EDGE].astype(np.float64), ref[EDGE:n - EDGE].astype(np.float64)
    corr = np.array([np.corrcoef(a[:, i], b[:, i])[0, 1] for i in range(a.shape[1])])
    r = dict(frames=f"{len(ours)}/{len(ref)}", corr_min=corr.min(), corr_median=np.median(corr),
             max_abs=np.abs(a - b).max(), range=f"[{a.min():.0f}, {a.max():.0f}]")
    print(f"{name:<46} frames {r['frames']:>11}  corr min {r['corr_min']:.6f} median "
          f"{r['corr_median']:.6f}  interior max |diff| {r['max_abs']:9.3g}  range {r['range']}")
    return r


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--old-ffmpeg", default=None, help="an older ffmpeg for the encoder-version part")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="vaanet-bench-") as d:
        tmp = Path(d)
        video = make_clip(tmp / "clip.mp4", args.seconds)
        exe = ffmpeg_bin.ffmpeg_exe()
        print(f"clip: {args.seconds:g} s, 48 kHz stereo AAC, 480x270 25 fps; ffmpeg {exe}")
        ref = authors_mfcc(video, tmp, exe)
        params = official_params()
        ex = extract_video(video, params)
        print(f"reference: the authors' chain, [T, 32] = {ref.shape}, range "
              f"[{ref.min():.0f}, {ref.max():.0f}]")
        compare("vaanet --profile official", ex.mfcc, ref)
        compare("  resampler only (ours in the authors' chain)", authors_mfcc(video, tmp, exe, "ours"), ref)
        if args.old_ffmpeg:
            compare(f"  encoder: MP3 by {Path(args.old_ffmpeg).name}",
                    authors_mfcc(video, tmp, args.old_ffmpeg), ref)
        psf = extract_video(video, official_params().replace(
            profile="paper", mfcc="psf", n_filt=40, winlen=0.0464399, winstep=0.0116100))
        compare("paper recipe (psf) at 2048/512, 44.1 kHz", psf.mfcc, ref)

        p = probe(str(video), packets=True)
        direct = decode_snippets(p, params)[0]
        theirs = authors_frames(video, tmp, plan_snippets(len(list_frames(p)), params)[0])
        print(f"frames: the network's 112 x 112 input (evaluation: centre crop) against the "
              f"authors' (their JPEGs, PIL bilinear resize, centre crop), {theirs.shape}:")
        h, w = ex.frames.shape[3:5]
        x_round = crop_origin(h, w, 112, None, centre="round")[1]   # the loader's rule for these shards
        x_floor = crop_origin(h, w, 112, None, centre="floor")[1]
        for name, frames, x in (("official profile (JPEG at 240, the authors' crop rounding)", ex.frames[0], x_round),
                                ("official profile, crop by the paper profile's rule (floor)", ex.frames[0], x_floor),
                                ("straight from the source (paper profile's decode)", direct[0], x_floor)):
            frame_diff(name, frames[..., :, x:x + 112, :], theirs)


if __name__ == "__main__":
    main()
