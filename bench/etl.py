"""ETL benchmark: our decode-once ETL against a bare full decode and the authors' frame-folder recipe.

    python bench/etl.py                  # 4 generated 60 s 640x360 H.264+AAC videos
    python bench/etl.py --videos 1 --seconds 20 --configs 8:jpeg   # quick look

Per video, side by side:
  (a)  `vaanet preprocess --dataset folder --jobs 1` on a folder holding just that video (a fresh
       process: interpreter start, probe, decode, MFCC, shard write, index), when the command
       exists; (a') the same work in this process: extract_video + writing the arrays with h5py.
  (b)  a bare full decode: `ffmpeg -threads 1 -i V -f null -` (video and audio, nothing kept).
  (c)  the frame-folder baseline of the authors' code: every frame to JPEG at short side 240
       (`-vf scale=-1:240 image_%05d.jpg`, as in their extraction script) + the audio to mp3.
Every ffmpeg runs with -threads 1. Times are wall seconds and CPU seconds (user + sys of this
process and its children), of the run with the least CPU of `--repeat` (3): ffmpeg >= 7 runs demuxer,
decoders and filters in their own threads even at -threads 1, and this machine may be shared, so
CPU time is the steadier measure of work. The least CPU of each column may come from different
moments of a shared machine; `--pairs` (5) runs of (a') and (b) alternated, each (a') right
before its (b), give the median of their CPU ratios and its range, which such drift moves less.
Bytes on disk per video for shards and for JPEG folders are scaled to Ekman-6 (1,637 videos,
mean 112 s): frames are fixed-size per video, MFCC and JPEG folders grow with duration.
Content: animation-like clips from ffmpeg's sources, one kind per video in turn (testsrc2,
mandelbrot zoom, cellauto, life), with film grain: JPEG sizes depend on content, so the
projection is the mean over these kinds. `--configs` lists S:codec pairs measured in-process
(default: the new default 8:jpeg, 8:raw, and the former default 1:raw).
Per video also the single-pass route's decode variants (pipeline/video.py) when it applies
(videos of more than 2 x S*t*k frames, e.g. `--seconds 112`, the Ekman-6 mean).
Results are printed and written to bench/results/etl.md (`--out`); notes after the line
KEEP_MARK in the previous file are kept.
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.extract import extract_video  # noqa: E402
from pipeline.ffmpeg_bin import ffmpeg_exe  # noqa: E402
from pipeline.params import PreprocessParams  # noqa: E402
from pipeline.probe import frame_table, probe  # noqa: E402
from pipeline.video import (FULL_DECODE_RATIO, _single_pass, _single_pass_ranges, decode_at,  # noqa: E402
                            plan_snippets, reference_frames, seek_times)

E6_VIDEOS, E6_MEAN_S = 1637, 112.0
KEEP_MARK = "<!-- kept by bench/etl.py: notes written by hand below -->"
LIMIT_GB = 30


def cpu_now() -> float:
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def timed(fn, repeat: int = 1):
    """(result, wall s, cpu s) of the fastest of `repeat` runs."""
    best = None
    for _ in range(repeat):
        c0, t0 = cpu_now(), time.perf_counter()
        out = fn()
        wall, cpu = time.perf_counter() - t0, cpu_now() - c0
        if best is None or cpu < best[2]:
            best = (out, wall, cpu)
    return best


def _pair_text(ratios: list[float]) -> str:
    return f"{np.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f})"


def sh(*args: str):
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-v", "error", "-y", *args], check=True)


SOURCES = ("testsrc2=s=640x360:r=25", "mandelbrot=s=640x360:r=25",
           "cellauto=s=640x360:r=25:rule=110", "life=s=640x360:r=25:mold=10:ratio=0.3:"
           "life_color=#40c040:death_color=#802020")


def make_video(path: Path, seconds: float, seed: int):
    """640x360, 25 fps, keyframe every 2 s (-g 50), x264 crf 26 (~650 kb/s, like web video),
    AAC 128 kb/s stereo at 44.1 kHz. An animation-like source (SOURCES, by seed) with film grain,
    a tone with noise."""
    src = SOURCES[seed % len(SOURCES)]
    sh("-f", "lavfi", "-i", f"{src},noise=alls=4:allf=t:all_seed={seed}",
       "-f", "lavfi", "-i", f"sine=f={300 + 50 * seed}:sample_rate=44100",
       "-f", "lavfi", "-i", f"anoisesrc=a=0.05:r=44100:seed={seed}",
       "-filter_complex", "[1:a][2:a]amix=inputs=2,pan=stereo|c0=c0|c1=c0[a]",
       "-map", "0:v", "-map", "[a]", "-t", str(seconds),
       "-c:v", "libx264", "-preset", "veryfast", "-crf", "26", "-g", "50", "-pix_fmt", "yuv420p",
       "-c:a", "aac", "-b:a", "128k", str(path))


def folder_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def bare_decode(video: Path):
    sh("-threads", "1", "-i", str(video), "-f", "null", "-")


def frame_folder(video: Path, out: Path):
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    sh("-threads", "1", "-i", str(video), "-threads", "1", "-filter_threads", "1",
       "-vf", "scale=-1:240", str(out / "image_%05d.jpg"))
    sh("-threads", "1", "-i", str(video), "-vn", "-threads", "1", str(out / "audio.mp3"))


def ours_in_process(video: Path, params: PreprocessParams, out: Path) -> tuple[int, float | None]:
    """Decode, encode (codec jpeg) and write one video as the ETL does; (bytes, PSNR dB of the
    stored frames against the decoded ones, None for raw)."""
    import h5py
    from pipeline.codec import decode_into, encode_frames, psnr
    ex = extract_video(video, params)
    quality = None
    with h5py.File(out, "w") as f:
        g = f.create_group("videos/v")
        if params.codec == "jpeg":
            enc = encode_frames(ex.frames, params.quality)
            g.create_dataset("jpeg", data=enc.data)
            g.create_dataset("jpeg_offsets", data=enc.offsets)
        else:
            g.create_dataset("frames", data=ex.frames)
        g.create_dataset("mfcc", data=ex.mfcc)
    if params.codec == "jpeg":   # timed with the rest, so only every 37th frame (a few ms)
        flat = ex.frames.reshape(-1, *ex.frames.shape[-3:])
        some = np.arange(0, len(flat), 37)
        back = np.empty((len(some), *flat.shape[1:]), np.uint8)
        for j, i in enumerate(some):
            a, b = enc.offsets[i], enc.offsets[i + 1]
            decode_into(enc.data[a:b], np.array([0, b - a]), back[j:j + 1])
        quality = psnr(back, flat[some])
    return out.stat().st_size, quality


SINGLE_PASS = {"one output per snippet": dict(one_output=False),
               "one output": dict(one_output=True),
               "one output, H.264 non-reference pre-roll left out": dict(one_output=True, reference=True)}


def single_pass_variants(video: Path, params: PreprocessParams) -> dict[str, tuple[float, float]] | None:
    """(wall s, CPU s) of the single-pass route's video decode (pipeline/video.py) per variant, the
    same frames each time; None when the video is decoded whole instead (too short)."""
    p = probe(video, packets=True)
    table = frame_table(p)
    k = params.frames
    if table is None or len(table.times) <= FULL_DECODE_RATIO * params.snippets * params.segments * k:
        return None
    starts = plan_snippets(len(table.times), params, table.keyframes).ravel()
    ranges = _single_pass_ranges(table, starts, k)
    if ranges is None:
        return None
    out, first = {}, None
    for name, kw in SINGLE_PASS.items():
        def run():
            ref = reference_frames(p, table) if kw.get("reference") else None  # its listing counts
            return _single_pass(p, params, table, starts, ranges, one_output=kw["one_output"], reference=ref)
        (frames, counts), wall, cpu = timed(run)
        assert (counts == k).all(), f"{video.name}: {name} gave {counts.tolist()} frames per snippet"
        if first is None:
            first = frames
        assert np.array_equal(frames, first), f"{video.name}: {name} gave other pixels"
        out[name] = (wall, cpu)
    return out


def has_preprocess() -> bool:
    try:
        r = subprocess.run(["vaanet", "preprocess", "--help"], capture_output=True, text=True)
    except FileNotFoundError:
        return False
    return r.returncode == 0 and "folder" in r.stdout


def ours_preprocess(videos: list[Path], work: Path) -> int:
    root, out = work / "root", work / "out"
    shutil.rmtree(work, ignore_errors=True)
    (root / "bench").mkdir(parents=True)
    for v in videos:
        os.symlink(v, root / "bench" / v.name)
    subprocess.run(["vaanet", "preprocess", "--dataset", "folder", "--root", str(root), "--out",
                    str(out), "--jobs", "1", "-q"], check=True, capture_output=True)
    return sum(p.stat().st_size for p in out.glob("shard-*.h5"))


def compression_check(video: Path, params: PreprocessParams, work: Path) -> list[str]:
    """Bytes and read time of one video's frames stored raw, with lzf and with gzip level 1."""
    import h5py
    frames = extract_video(video, params).frames
    rows = []
    for name, opts in (("none", {}), ("lzf", dict(compression="lzf", chunks=frames.shape)),
                       ("gzip-1", dict(compression="gzip", compression_opts=1, chunks=frames.shape))):
        path = work / f"c-{name}.h5"
        with h5py.File(path, "w") as f:
            f.create_dataset("frames", data=frames, **opts)
        with h5py.File(path, "r") as f:
            _, wall, _ = timed(lambda: f["frames"][()], repeat=3)
        rows.append(f"| {name} | {path.stat().st_size / 1e6:.2f} | {wall * 1e3:.1f} |")
        path.unlink()
    return rows


def main():
    # long on purpose: a benchmark script reads top to bottom in the order it measures
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--videos", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--configs", default="8:jpeg,8:raw,1:raw",
                    help="S:codec pairs to measure in-process")
    ap.add_argument("--work", help="keep generated videos here (reused when present)")
    ap.add_argument("--repeat", type=int, default=3,
                    help="runs of (a), (a'), (b) and (c) each; the one with the least CPU is kept")
    ap.add_argument("--pairs", type=int, default=5,
                    help="alternated runs of (a') and (b) per video, for the median CPU ratio")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "etl.md"))
    args = ap.parse_args()
    s_values = [(int(c.split(":")[0]), c.split(":")[1]) for c in args.configs.split(",")]
    base = PreprocessParams()
    base_key = (base.snippets, base.codec)
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="vaanet-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    use_cli = has_preprocess()
    lines: list[str] = []

    def say(line: str = ""):
        print(line, flush=True)
        lines.append(line)

    t_start = time.perf_counter()
    vids = []
    for i in range(args.videos):
        v = work / f"bench{i}_{int(args.seconds)}s.mp4"
        if not v.exists():
            make_video(v, args.seconds, i)
        vids.append(v)
    print(f"videos ready in {time.perf_counter() - t_start:.1f} s under {work}", flush=True)

    rows, per_s = [], {s: [] for s in s_values}
    method = {"one ffmpeg, one input per snippet": [], "one ffmpeg per snippet": []}
    for v in vids:
        r = {"video": v.name, "mb": v.stat().st_size / 1e6}
        _, r["b_wall"], r["b_cpu"] = timed(lambda: bare_decode(v), repeat=args.repeat)
        jpg = work / "jpg"
        _, r["c_wall"], r["c_cpu"] = timed(lambda: frame_folder(v, jpg), repeat=args.repeat)
        r["jpg_bytes"] = folder_size(jpg)
        r["jpg_files"] = len(list(jpg.glob("*.jpg")))
        shutil.rmtree(jpg)
        for s in s_values:
            p = base.replace(snippets=s[0], codec=s[1])
            (size, q), wall, cpu = timed(lambda: ours_in_process(v, p, work / "one.h5"), repeat=args.repeat)
            per_s[s].append(dict(wall=wall, cpu=cpu, bytes=size, psnr=q))
        own = per_s[base_key][-1] if base_key in per_s else None
        if own is None:
            (size, _), own_wall, own_cpu = timed(lambda: ours_in_process(v, base, work / "one.h5"),
                                                 repeat=args.repeat)
            own = dict(wall=own_wall, cpu=own_cpu, bytes=size)
        r["a2_wall"], r["a2_cpu"], r["shard_bytes"] = own["wall"], own["cpu"], own["bytes"]
        pr = probe(v)
        table = frame_table(pr)
        one_snippet = base.replace(snippets=1)
        seeks = seek_times(table.times, plan_snippets(len(table.times), one_snippet, table.keyframes).ravel(),
                           table.keyframes)
        for name, one in (("one ffmpeg, one input per snippet", True), ("one ffmpeg per snippet", False)):
            _, wall, cpu = timed(lambda: decode_at(pr, one_snippet, seeks, one_process=one))
            method[name].append((wall, cpu))
        r["single_pass"] = single_pass_variants(v, base)
        r["pairs"] = []   # (a' CPU, b CPU), alternated
        for _ in range(args.pairs):
            a2 = timed(lambda: ours_in_process(v, base, work / "one.h5"))[2]
            r["pairs"].append((a2, timed(lambda: bare_decode(v))[2]))
        rows.append(r)
        print(f"  {v.name}: done", flush=True)

    if use_cli:  # the real command over all videos: interpreter start and index writes included
        shard_total, a_wall, a_cpu = timed(lambda: ours_preprocess(vids, work / "pre"), repeat=args.repeat)
        for r in rows:
            r["a_wall"], r["a_cpu"] = a_wall / len(rows), a_cpu / len(rows)
            r["shard_bytes"] = shard_total / len(rows)
    compression = compression_check(vids[0], base.replace(snippets=1, codec="raw"), work)

    # ---- report -------------------------------------------------------------------------
    say("## ETL benchmark results")
    say()
    say(f"{len(vids)} generated videos, {args.seconds:g} s, 640x360, 25 fps, H.264 (x264 veryfast "
        "crf 26, keyframe every 50 frames = 2 s) + AAC 128 kb/s stereo 44.1 kHz. "
        f"Machine: {os.cpu_count()} cores (shared; load average at start "
        f"{os.getloadavg()[0]:.1f}). ffmpeg: {ffmpeg_exe()}.")
    say(f"Parameters (the defaults): segments {base.segments}, snippets {base.snippets}, frames "
        f"{base.frames}, codec {base.codec} (quality {base.quality}), short side {base.short_side}, "
        f"max long side {base.max_long_side}, {base.n_mfcc} MFCC at {base.sample_rate} Hz. Sources: "
        + ", ".join(SOURCES[i % len(SOURCES)].split("=")[0] for i in range(len(vids))) + ".")
    a_name = ("(a) `vaanet preprocess --dataset folder --jobs 1` over all the videos, divided by "
              "their number (interpreter start, index and shard writes included)" if use_cli else
              "(a) not measured: `vaanet preprocess` is not available")
    say(f"{a_name}; (a') extract_video + h5py write in this process; (b) `ffmpeg -threads 1 -i V "
        f"-f null -`; (c) JPEG frames at short side 240 + mp3. Seconds as wall / CPU, each the run "
        f"with the least CPU of {args.repeat}.")
    say()
    say("| video | MB | (a) | (a') | (b) bare decode | (c) frame folder | a/b | a'/b | a/c | a'/c | shard MB | JPEG folder MB |")
    say("|---|---|---|---|---|---|---|---|---|---|---|---|")

    def ratio(x, y):
        return f"{x / y:.2f}"

    for r in rows:
        a = f"{r['a_wall']:.2f} / {r['a_cpu']:.2f}" if use_cli else "n/a"
        ab = f"{ratio(r['a_wall'], r['b_wall'])} / {ratio(r['a_cpu'], r['b_cpu'])}" if use_cli else "n/a"
        ac = f"{ratio(r['a_wall'], r['c_wall'])} / {ratio(r['a_cpu'], r['c_cpu'])}" if use_cli else "n/a"
        say(f"| {r['video']} | {r['mb']:.1f} | {a} | {r['a2_wall']:.2f} / {r['a2_cpu']:.2f} | "
            f"{r['b_wall']:.2f} / {r['b_cpu']:.2f} | {r['c_wall']:.2f} / {r['c_cpu']:.2f} | {ab} | "
            f"{ratio(r['a2_wall'], r['b_wall'])} / {ratio(r['a2_cpu'], r['b_cpu'])} | {ac} | "
            f"{ratio(r['a2_wall'], r['c_wall'])} / {ratio(r['a2_cpu'], r['c_cpu'])} | "
            f"{r['shard_bytes'] / 1e6:.2f} | {r['jpg_bytes'] / 1e6:.1f} ({r['jpg_files']} files) |")
    mean = {k: float(np.mean([r[k] for r in rows])) for k in rows[0] if isinstance(rows[0][k], (int, float))}
    say()
    say("Means (wall / CPU): " + ", ".join(
        ([f"a/b {ratio(mean['a_wall'], mean['b_wall'])} / {ratio(mean['a_cpu'], mean['b_cpu'])}",
          f"a/c {ratio(mean['a_wall'], mean['c_wall'])} / {ratio(mean['a_cpu'], mean['c_cpu'])}"]
         if use_cli else []) +
        [f"a'/b {ratio(mean['a2_wall'], mean['b_wall'])} / {ratio(mean['a2_cpu'], mean['b_cpu'])}",
         f"a'/c {ratio(mean['a2_wall'], mean['c_wall'])} / {ratio(mean['a2_cpu'], mean['c_cpu'])}"]))
    if args.pairs:
        say()
        say(f"Alternated pairs ((a') then (b), {args.pairs} times per video; CPU a'/b, median and "
            "range): " + "; ".join(_pair_text([x / y for x, y in r["pairs"]]) + f" {r['video']}"
                                     for r in rows)
            + "; all videos (sums of each round): "
            + _pair_text([sum(r["pairs"][i][0] for r in rows) / sum(r["pairs"][i][1] for r in rows)
                          for i in range(args.pairs)]) + ".")
    say()
    say("Frames of one video at S = 1, raw, stored in HDF5 with HDF5's own filters (information "
        "for the shard format):")
    say()
    say("| compression | MB | read all frames, ms |")
    say("|---|---|---|")
    for line in compression:
        say(line)
    say()
    say("Snippet decoding, S = 1 (the frames only, wall / CPU s per video): " + "; ".join(
        f"{name} {np.mean([w for w, _ in m]):.2f} / {np.mean([c for _, c in m]):.2f}"
        for name, m in method.items()))
    say()
    passes = [r["single_pass"] for r in rows if r["single_pass"]]
    if passes:
        say(f"Single-pass route of the defaults (S = {base.snippets}: {base.snippets * base.segments} snippets "
            "from one decoder; the frames only, the same pixels each, wall / CPU s per video, mean of "
            f"{len(passes)}): " + "; ".join(
                f"{name} {np.mean([x[name][0] for x in passes]):.2f} / {np.mean([x[name][1] for x in passes]):.2f}"
                for name in SINGLE_PASS) + ".")
    else:
        say("Single-pass route: not taken (the videos have fewer than "
            f"{FULL_DECODE_RATIO:g} x S*t*k frames and are decoded whole).")
    say()

    # ---- disk: measured bytes per video, scaled to Ekman-6 --------------------------------
    scale = E6_MEAN_S / args.seconds
    mfcc_bytes = (int(args.seconds * 100) - 1) * base.n_mfcc * 4
    say(f"### Disk for Ekman-6 ({E6_VIDEOS} videos, mean {E6_MEAN_S:g} s), from the measured bytes")
    say()
    say("| S (snippets) | codec | ETL wall / CPU s per video (a') | CPU vs (b) | PSNR dB (min / mean) | "
        "shard MB per video (measured; min / max) | MB per 112 s video | Ekman-6 GB |")
    say("|---|---|---|---|---|---|---|---|")
    for s in s_values:
        m = per_s[s]
        sizes = [x["bytes"] for x in m]
        measured = float(np.mean(sizes))
        at_e6 = measured - mfcc_bytes + mfcc_bytes * scale  # frames fixed, MFCC grows with duration
        q = [x["psnr"] for x in m if x["psnr"] is not None]
        say(f"| {s[0]} | {s[1]} | {np.mean([x['wall'] for x in m]):.2f} / {np.mean([x['cpu'] for x in m]):.2f} | "
            f"{np.mean([x['cpu'] for x in m]) / mean['b_cpu']:.2f} | "
            f"{f'{min(q):.1f} / {np.mean(q):.1f}' if q else 'lossless'} | {measured / 1e6:.2f} "
            f"({min(sizes) / 1e6:.1f} / {max(sizes) / 1e6:.1f}) | "
            f"{at_e6 / 1e6:.2f} | {at_e6 * E6_VIDEOS / 1e9:.1f} |")
    jpg = mean["jpg_bytes"] * scale
    say(f"| JPEG folders | | | | | {mean['jpg_bytes'] / 1e6:.1f} | {jpg / 1e6:.1f} | {jpg * E6_VIDEOS / 1e9:.1f} |")
    say()
    say(f"Total bench time {time.perf_counter() - t_start:.0f} s.")

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    # hand-written notes after KEEP_MARK in the previous results are kept
    old = out.read_text() if out.exists() else ""
    kept = old[old.index(KEEP_MARK):] if KEEP_MARK in old else ""
    out.write_text("\n".join(lines) + "\n" + ("\n" + kept if kept else ""))
    print(f"\nwritten to {out}")
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
