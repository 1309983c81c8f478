"""Loader benchmark: the streaming shard loader against a frame-folder loader like the authors'.

Same videos, same number of workers, same clip geometry (t = 10 segments x 16 frames x 112 x 112):

  ours      HDF5 shards made by `vaanet preprocess` at the paper's parameters; per sample one
            contiguous read of a uint8 snippet, a crop by slicing, uint8 tensors out.
  baseline  the authors' layout: every frame a JPEG (short side 240) in a folder per video and the
            sound track in a file; per sample t * k JPEGs opened with PIL, a corner crop resized
            to 112, ToTensor floats, and 32 MFCC computed from the audio (python_speech_features,
            2048-sample windows, hop 512 at 44.1 kHz, tiled/cut to 4096 frames) on every access.
            The audio is read from WAV (the authors decode an mp3 each time: slower still).

    python bench/loader.py                                   # 8 videos x 20 s 320x240, 2 workers
    python bench/loader.py --videos 32 --duration 60 --workers 8 --samples 1024 --baseline-samples 128

Videos, shards and frame folders are kept in --workdir (reused by the next run). Results go to
bench/results/loader.md and loader.json (bench/train.py reads the latter).
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from model.config import preset  # noqa: E402
from pipeline import preprocess  # noqa: E402
from pipeline.datasets import load_definition  # noqa: E402
from pipeline.ffmpeg_bin import ffmpeg_exe  # noqa: E402
from trainer.loader import ClipDataset, make_loader  # noqa: E402
from pipeline.params import PreprocessParams  # noqa: E402
from pipeline.reader import ShardReader  # noqa: E402

SEGMENTS, FRAMES, CROP = 10, 16, 112           # the paper's clip
AUDIO_RATE, WIN, HOP, N_MFCC = 44100, 2048, 512, 32
AUDIO_FRAMES, AUDIO_SEGMENTS = 4096, 16        # the official code's audio input


# ---- the data, made once -------------------------------------------------------------------

def make_videos(root: Path, n: int, duration: float, size: str, jobs: int) -> list[Path]:
    """n H.264 + AAC videos from ffmpeg's test source with grain (so JPEGs are not trivially small)
    and a tone, spread over the demo classes."""
    classes = load_definition("demo").classes
    jobs_list = []
    for i in range(n):
        path = root / classes[i % len(classes)] / f"v{i:03d}.mp4"
        if not path.exists():
            jobs_list.append((i, path))

    def one(job):
        i, path = job
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}")
        subprocess.run([ffmpeg_exe(), "-loglevel", "error", "-y",
                        "-f", "lavfi", "-i", f"testsrc2=size={size}:rate=25:duration={duration},"
                        f"noise=alls=12:allf=t:all_seed={i}",
                        "-f", "lavfi", "-i", f"sine=frequency={220 + 40 * i}:sample_rate=44100:duration={duration}",
                        "-c:v", "libx264", "-preset", "veryfast", "-threads", "1", "-pix_fmt", "yuv420p",
                        "-c:a", "aac", "-b:a", "64k", "-shortest", "-f", "mp4", str(tmp)], check=True)
        os.replace(tmp, path)
    with ThreadPoolExecutor(jobs) as ex:
        list(ex.map(one, jobs_list))
    return sorted(root.glob("*/v*.mp4"))


def make_frame_folders(videos: list[Path], root: Path, jobs: int) -> list[Path]:
    """The authors' preprocessing: all frames to JPEG at short side 240, the audio to a file."""

    def one(video: Path) -> Path:
        d = root / video.parent.name / video.stem
        if (d / "done").exists():
            return d
        d.mkdir(parents=True, exist_ok=True)
        subprocess.run([ffmpeg_exe(), "-loglevel", "error", "-y", "-i", str(video),
                        "-vf", "scale='if(lt(iw,ih),240,-2)':'if(lt(iw,ih),-2,240)'", "-threads", "1",
                        str(d / "image_%05d.jpg")], check=True)
        subprocess.run([ffmpeg_exe(), "-loglevel", "error", "-y", "-i", str(video), "-vn",
                        "-ac", "1", "-ar", str(AUDIO_RATE), str(d / "audio.wav")], check=True)
        (d / "done").touch()
        return d
    with ThreadPoolExecutor(jobs) as ex:
        return list(ex.map(one, videos))


# ---- the baseline loader -------------------------------------------------------------------

class FrameFolderClips(Dataset):
    """A frame-folder Dataset like the authors': PIL per frame, MFCC per access."""

    def __init__(self, folders: list[Path], labels: list[int], seed: int = 0):
        self.folders, self.labels, self.seed = folders, labels, seed
        self.n_frames = [len(list(f.glob("image_*.jpg"))) for f in folders]  # their annotation file

    def __len__(self):
        return len(self.folders)

    def __getitem__(self, i):
        from PIL import Image
        from python_speech_features import mfcc
        from scipy.io import wavfile
        rng = np.random.default_rng([self.seed, i])
        folder, n = self.folders[i], self.n_frames[i]
        # t equal segments, a random k-frame snippet in each (frames looped when too short)
        bounds = np.linspace(0, n, SEGMENTS + 1).astype(int)
        idx = [(lo + rng.integers(0, max(hi - lo - FRAMES, 0) + 1) + np.arange(FRAMES)) % n + 1
               for lo, hi in zip(bounds[:-1], bounds[1:])]
        pos, flip = rng.integers(5), rng.random() < 0.5   # corner crop position, horizontal flip
        clip = np.empty((SEGMENTS, FRAMES, CROP, CROP, 3), np.uint8)
        for s, seg in enumerate(idx):
            for f, j in enumerate(seg):
                with Image.open(folder / f"image_{j:05d}.jpg") as im:
                    im = im.convert("RGB")
                    w, h = im.size
                    side = min(w, h)
                    x, y = [((w - side) // 2, (h - side) // 2), (0, 0), (w - side, 0),
                            (0, h - side), (w - side, h - side)][pos]
                    im = im.crop((x, y, x + side, y + side)).resize((CROP, CROP), Image.BILINEAR)
                    if flip:
                        im = im.transpose(Image.FLIP_LEFT_RIGHT)
                    clip[s, f] = np.asarray(im)
        visual = torch.from_numpy(clip).permute(0, 4, 1, 2, 3).float().div(255)  # ToTensor
        rate, sig = wavfile.read(folder / "audio.wav")
        feats = mfcc(sig.astype(np.float32), rate, winlen=WIN / rate, winstep=HOP / rate,
                     numcep=N_MFCC, nfilt=40, nfft=WIN).astype(np.float32)
        feats = np.concatenate([feats] * (AUDIO_FRAMES // len(feats) + 1))[:AUDIO_FRAMES]
        audio = torch.from_numpy(feats).view(AUDIO_SEGMENTS, AUDIO_FRAMES // AUDIO_SEGMENTS, N_MFCC)
        return {"visual": visual, "audio": audio, "label": torch.tensor(self.labels[i])}


# ---- measuring -----------------------------------------------------------------------------

def measure(loader) -> dict:
    """Iterate the whole loader once. samples/s leaves out the first batch (worker start-up);
    CPU ms per sample counts every process (main + workers) over all samples, so the loader must
    be dropped (workers joined) before the children's CPU time can be read: see `finish`."""
    cpu0 = os.times()
    t0 = time.perf_counter()
    it = iter(loader)
    first = next(it)["label"].shape[0]
    t1 = time.perf_counter()
    n = sum(batch["label"].shape[0] for batch in it)
    t2 = time.perf_counter()
    del it
    return {"samples_per_s": n / (t2 - t1), "timed": n, "total": n + first, "first_batch_s": t1 - t0,
            "cpu0": cpu0}


def finish(m: dict) -> dict:
    """Add CPU ms per sample once the loader's workers have exited."""
    gc.collect()
    cpu0, cpu1 = m.pop("cpu0"), os.times()
    cpu = sum(cpu1[k] - cpu0[k] for k in range(4))  # user, system, children user, children system
    m["cpu_ms_per_sample"] = 1e3 * cpu / m["total"]
    return m


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--videos", type=int, default=8)
    ap.add_argument("--duration", type=float, default=20.0, help="seconds per video")
    ap.add_argument("--size", default="320x240", help="video width x height")
    ap.add_argument("--workers", type=int, default=2, help="DataLoader workers, for both loaders")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--samples", type=int, default=400, help="samples timed for our loader")
    ap.add_argument("--baseline-samples", type=int, default=40, help="samples timed for the baseline")
    ap.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "vaanet-bench-loader"))
    ap.add_argument("--out", default=str(HERE / "results" / "loader.md"))
    args = ap.parse_args(argv)

    torch.set_num_threads(1)
    work = Path(args.workdir)
    cpu = f"{platform.machine()}, {os.cpu_count()} cores"
    jobs = max(1, min(args.workers, os.cpu_count() or 1))
    print(f"workdir {work} ({cpu})", flush=True)

    t = time.perf_counter()
    videos = make_videos(work / f"videos-{args.videos}x{args.duration:g}s-{args.size}",
                         args.videos, args.duration, args.size, jobs)
    print(f"videos: {len(videos)} x {args.duration:g} s {args.size}  ({time.perf_counter() - t:.1f} s)", flush=True)

    # ours: the ETL at the paper's parameters (a finished output is reused as it is)
    t = time.perf_counter()
    shards = work / f"shards-{args.videos}x{args.duration:g}s-{args.size}"
    params = PreprocessParams()  # t=10, one snippet of k=16, short side 112
    res = preprocess.run("demo", videos[0].parent.parent, shards, params, jobs=jobs, progress=False,
                         echo=lambda *a: None)
    etl = (f"ETL of {res.decoded} videos took {time.perf_counter() - t:.1f} s with {jobs} jobs, once"
           if res.decoded else "shards reused from an earlier run")
    print(f"ETL (vaanet preprocess): {etl}", flush=True)

    t = time.perf_counter()
    folders = make_frame_folders(videos, work / f"frames-{args.videos}x{args.duration:g}s-{args.size}", jobs)
    print(f"frame folders (ffmpeg to JPEG + WAV): {time.perf_counter() - t:.1f} s", flush=True)

    reader = ShardReader(shards)
    ids = reader.ids
    cfg = preset("paper", num_classes=len(reader.classes))
    by_id = {f"{f.parent.name}/{f.name}": f for f in folders}
    labels = [reader.meta(i)["label"] for i in ids]

    # bytes read from storage per sample: one snippet + the MFCC; t*k JPEGs + the audio file
    ours_bytes = np.mean([np.prod(reader.meta(i)["frames_shape"][1:]) + 4 * np.prod(reader.meta(i)["mfcc_shape"])
                          for i in ids])
    jpeg = np.mean([p.stat().st_size for f in folders for p in f.glob("image_*.jpg")])
    wav = np.mean([(f / "audio.wav").stat().st_size for f in folders])
    base_bytes = SEGMENTS * FRAMES * jpeg + wav

    load_before = os.getloadavg()[0]
    # our loader: training mode (random snippet window, random crop); ids repeated to fill the run
    n = args.samples + args.batch
    ours_ds = ClipDataset(reader, (ids * n)[:n], cfg, train=True, seed=0)
    ours = make_loader(ours_ds, args.batch, train=True, workers=args.workers, seed=0)
    m_ours = measure(ours)
    del ours
    m_ours = finish(m_ours)
    print(f"ours:     {m_ours['samples_per_s']:8.2f} samples/s over {m_ours['timed']} samples", flush=True)

    n = args.baseline_samples + args.batch
    base_ds = FrameFolderClips(([by_id[i] for i in ids] * n)[:n], (labels * n)[:n])
    base = DataLoader(base_ds, batch_size=args.batch, shuffle=True, num_workers=args.workers,
                      generator=torch.Generator().manual_seed(0))
    m_base = measure(base)
    del base
    m_base = finish(m_base)
    print(f"baseline: {m_base['samples_per_s']:8.2f} samples/s over {m_base['timed']} samples", flush=True)

    ours_rate, base_rate = m_ours["samples_per_s"], m_base["samples_per_s"]
    ratio = ours_rate / base_rate
    rows = [("streaming shards (ours)", m_ours, ours_bytes), ("frame folders (authors')", m_base, base_bytes)]
    table = ["| loader | samples/s | MB/s read | MB read per sample | CPU ms per sample | first batch (s) |",
             "| --- | --- | --- | --- | --- | --- |"]
    table += [f"| {name} | {m['samples_per_s']:.2f} | {m['samples_per_s'] * b / 1e6:.1f} | {b / 1e6:.2f} | "
              f"{m['cpu_ms_per_sample']:.1f} | {m['first_batch_s']:.2f} |" for name, m, b in rows]
    cpu_ratio = m_base["cpu_ms_per_sample"] / m_ours["cpu_ms_per_sample"]
    verdict = (f"ratio ours / baseline: {ratio:.1f}x samples/s (target >= 20x); "
               f"{cpu_ratio:.1f}x less CPU time per sample (all processes)")
    text = "\n".join([
        "# Loader benchmark", "",
        f"{len(videos)} videos x {args.duration:g} s at {args.size} (H.264 + AAC), {args.workers} "
        f"workers each, batch {args.batch}, training mode, warm page cache; on {cpu}.",
        f"Ours: shards from `vaanet preprocess` at t={params.segments}, k={params.frames}, short side "
        f"{params.short_side} ({etl}); uint8 [10,16,112,112,3] (made channels-first on the device) + MFCC [10,256,32], batches built in shared memory by the workers.",
        "Baseline: JPEG frame folders at short side 240 + WAV; PIL decode, corner crop, resize to 112, "
        "float tensors, MFCC computed per access (4096 x 32, as the authors' code).",
        f"First batch (worker start-up) excluded from the rates; {m_ours['timed']} / {m_base['timed']} "
        "samples timed; "
        f"load average {load_before:.1f} before / {os.getloadavg()[0]:.1f} after (other processes on "
        "the machine slow both loaders).", "",
        *table, "", verdict, "",
        f"Command: `python bench/loader.py {' '.join(argv if argv is not None else sys.argv[1:])}`".rstrip(), ""])
    print()
    print(text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    record = {"workers": args.workers, "batch": args.batch, "device": cpu, "videos": len(videos),
              "duration": args.duration, "size": args.size, "ratio": ratio,
              "cpu_ratio": cpu_ratio, "load_average": load_before,
              "ours": {**m_ours, "mb_per_s": ours_rate * ours_bytes / 1e6},
              "baseline": {**m_base, "mb_per_s": base_rate * base_bytes / 1e6}}
    out.with_suffix(".json").write_text(json.dumps(record, indent=1) + "\n")
    print(f"written to {out} and {out.with_suffix('.json')}")


if __name__ == "__main__":
    main()
