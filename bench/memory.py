"""Peak memory of one preprocess worker against the video's length.

    python bench/memory.py                         # 1, 15 and 60 minutes, this checkout
    python bench/memory.py --minutes 60 --mfcc librosa   # the librosa recipe (rows "60 librosa")
    python bench/memory.py --profile official      # `--profile official` (rows "60 official")
    python bench/memory.py --minutes 1 15 --label before --repo /path/to/other/checkout

Each video is generated once (cached in --cache): 160x120 at 5 fps, testsrc pictures, a 440 Hz
tone as AAC 44.1 kHz stereo (48 kHz for `--profile official`, so that its resampler to 44.1 kHz
has work to do), so a long file costs little to make. Each measurement is a fresh Python
process that imports the pipeline of --repo, runs `extract_video` on one video with the
default parameters (or the official profile's) and reports its own peak resident set size
(`ru_maxrss`; the ffmpeg children are separate processes and not counted, as they are not in
a worker's figure either).
The rows are appended to bench/results/memory.json under --label; bench/results/memory.md is
rewritten with every label side by side.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CHILD = r"""
import resource, sys, time
from pipeline.extract import extract_video
from pipeline.params import PreprocessParams, official_params
t = time.time()
mfcc = sys.argv[2]
params = (official_params() if mfcc == "official" else
          PreprocessParams(mfcc=mfcc, winlen=512 / 16000) if mfcc == "librosa" else PreprocessParams())
ex = extract_video(sys.argv[1], params)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, time.time() - t, ex.mfcc.shape[0])
"""


def make_video(path: Path, seconds: int, rate: int = 44100) -> None:
    from pipeline.ffmpeg_bin import ffmpeg_exe
    if path.exists():
        return
    tmp = path.with_suffix(".part.mp4")
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y",
                    "-f", "lavfi", "-i", f"testsrc=size=160x120:rate=5:duration={seconds}",
                    "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate={rate}:duration={seconds}",
                    "-ac", "2", "-c:v", "libx264", "-preset", "ultrafast", "-g", "50",
                    "-c:a", "aac", "-b:a", "64k", "-shortest", str(tmp)], check=True)
    tmp.rename(path)


def measure(video: Path, repo: Path, mfcc: str) -> tuple[float, float, int]:
    """(peak RSS MB, extract seconds, MFCC frames); mfcc: psf, librosa or official (the profile)."""
    env = dict(os.environ, PYTHONPATH=str(repo))
    out = subprocess.run([sys.executable, "-c", CHILD, str(video), mfcc], env=env, cwd=repo,
                         capture_output=True, text=True, check=True).stdout.split()
    return int(out[0]) / 1024.0, float(out[1]), int(out[2])


def write_md(results: dict, path: Path) -> None:
    labels = sorted(results, key=lambda lab: lab == "after")   # the current figures last
    minutes = sorted({m for rows in results.values() for m in rows},
                     key=lambda m: (m.split()[1:], int(m.split()[0])))
    lines = ["# Peak RSS of one preprocess worker (extract_video, default parameters but the "
             "recipe or profile)", "",
             f"Machine: {platform.machine()} Linux, 2-core CPU shared with other jobs, "
             f"Python {platform.python_version()}; videos 160x120 at 5 fps, H.264 + AAC "
             "44.1 kHz stereo tone, 48 kHz for `official` (bench/memory.py). Peak RSS of the "
             "Python process (ru_maxrss, ffmpeg children not counted), MB; in brackets the wall "
             "seconds of extract_video and, where recorded, the machine's 1-minute load average "
             "when it ended (other jobs share the 2 cores: the wall times vary with it, the "
             "peak RSS does not).", "",
             "| minutes of video (MFCC recipe psf unless named; official: `--profile official`) | "
             + " | ".join(labels) + " |",
             "|---|" + "---|" * len(labels)]
    for m in minutes:
        cells = []
        for lab in labels:
            r = results[lab].get(m)
            load = f", load {r['load1']:.1f}" if r and "load1" in r else ""
            cells.append(f"{r['rss_mb']:.0f} MB ({r['wall_s']:.0f} s{load})" if r else "-")
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    if any("load1" not in r for rows in results.values() for r in rows.values()):
        lines += ["", "No load figure: not recorded (measured before the benchmark recorded it)."]
    lines += ["", "Target: <= 300 MB at 60 minutes."]
    path.write_text("\n".join(lines) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=int, nargs="+", default=[1, 15, 60])
    ap.add_argument("--label", default="after")
    ap.add_argument("--mfcc", choices=["psf", "librosa"], default="psf",
                    help="MFCC recipe (librosa: window = nfft = 512 samples); rows get ' librosa' after the minutes")
    ap.add_argument("--profile", choices=["paper", "official"], default="paper",
                    help="official: `--profile official` (MP3 round trip, resampy's filter, librosa's "
                    "MFCC) on 48 kHz soundtracks; rows get ' official' after the minutes")
    ap.add_argument("--repo", type=Path, default=ROOT, help="checkout whose pipeline is measured")
    ap.add_argument("--cache", type=Path, default=Path("/tmp/vaanet-bench-memory"))
    args = ap.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    res_json = ROOT / "bench" / "results" / "memory.json"
    results = json.loads(res_json.read_text()) if res_json.exists() else {}
    rows = results.setdefault(args.label, {})
    official = args.profile == "official"
    recipe = "official" if official else args.mfcc
    for m in args.minutes:
        video = args.cache / (f"tone48k_{m}min.mp4" if official else f"tone_{m}min.mp4")
        t = time.time()
        make_video(video, m * 60, 48000 if official else 44100)
        rss, wall, n = measure(video, args.repo.resolve(), recipe)
        print(f"{args.label}: {m:3d} min  peak RSS {rss:7.1f} MB  extract {wall:6.1f} s  "
              f"({n} MFCC frames; with generation {time.time() - t:.0f} s)", flush=True)
        rows[str(m) + ("" if recipe == "psf" else " " + recipe)] = dict(
            rss_mb=round(rss, 1), wall_s=round(wall, 1), mfcc_frames=n,
            load1=round(os.getloadavg()[0], 1))   # the shared machine's load, for the wall time
        res_json.write_text(json.dumps(results, indent=1) + "\n")
    write_md(results, ROOT / "bench" / "results" / "memory.md")


if __name__ == "__main__":
    main()
