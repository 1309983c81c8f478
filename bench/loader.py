"""Loader benchmark: the streaming shard loader (JPEG frames, the default, and raw frames)
against a frame-folder loader like the authors', side by side in one run.

Same videos, same number of workers, same clip geometry (t = 10 segments x 16 frames x 112 x 112):

  jpeg      HDF5 shards made by `vaanet preprocess` with the defaults (8 snippets per segment,
            JPEG frames): per sample, per segment the drawn snippet's 16 JPEGs read in one
            contiguous range and decoded (libjpeg-turbo), a crop by slicing, uint8 tensors out.
  raw       the same with `--codec raw`: one contiguous uint8 read per segment, no decode.
  undecoded the JPEG shards with `--decode device`: the drawn frames' JPEG files read and handed
            over as they are; the training process would decode them on the GPU (nvJPEG), which
            is not timed here (bench/gpu.py measures it on a GPU).
  baseline  the authors' layout: every frame a JPEG (short side 240) in a folder per video and the
            sound track in a file; per sample t * k JPEGs opened with PIL, a corner crop resized
            to 112, ToTensor floats, and 32 MFCC computed from the audio (python_speech_features,
            2048-sample windows, hop 512 at 44.1 kHz, tiled/cut to 4096 frames) on every access.
            The audio is read from WAV (the authors decode an mp3 each time: slower still).

    python bench/loader.py                                   # 8 videos x 20 s 320x240, 2 workers
    python bench/loader.py --videos 32 --duration 60 --workers 8 --samples 1024 --baseline-samples 128

Videos, shards and frame folders are kept in --workdir (reused by the next run). Results go to
bench/results/loader.md and loader.json (bench/train.py reads the latter).

GPU estimate: the paper preset's training FLOPs per sample (forward + backward, counted by
torch.utils.flop_counter on meta tensors, no compute) against one GPU's published dense bf16
throughput at a stated utilisation gives the samples/s a GPU would consume; the loader's
per-core rate (1000 / CPU ms per sample, measured here) times 16 workers is set against it.
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
from trainer.batch_slots import release_batch  # noqa: E402
from trainer.loader import ClipDataset, make_loader  # noqa: E402
from pipeline.params import PreprocessParams  # noqa: E402
from pipeline.reader import ShardReader  # noqa: E402

SEGMENTS, FRAMES, CROP = 10, 16, 112           # the paper's clip
AUDIO_RATE, WIN, HOP, N_MFCC = 44100, 2048, 512, 32
AUDIO_FRAMES, AUDIO_SEGMENTS = 4096, 16        # the official code's audio input
# one modern GPU: NVIDIA H100 / H200 SXM, dense bf16 tensor throughput from NVIDIA's datasheet
GPU_NAME, GPU_BF16_TFLOPS = "H100/H200 SXM", 989.0
GPU_UTILISATION = 0.4   # a stated assumption: 3D convolutions at batch 32 in bf16
LOADER_WORKERS = 16


def train_flops_per_sample(cfg) -> float:
    """FLOPs of one training sample of the model (forward + backward), counted on meta tensors."""
    from torch.utils.flop_counter import FlopCounterMode
    from model.vaanet import VAANet
    with torch.device("meta"):
        model = VAANet(cfg).train()
        visual = torch.zeros(2, cfg.segments, 3, cfg.frames, cfg.crop, cfg.crop)
        audio = torch.zeros(2, cfg.audio_segments, cfg.audio_len, cfg.n_mfcc)
    with FlopCounterMode(display=False) as counter:
        model(visual, audio).logits.sum().backward()
    return counter.get_total_flops() / 2


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

def decode_floor_ms(reader, repeats: int = 3) -> float:
    """CPU ms to decode one sample's t * k stored JPEG frames and nothing else (libjpeg-turbo
    through simplejpeg, this process, the frames' bytes already in memory): the least a worker
    that decodes on the CPU spends per sample, whatever else it saves."""
    import simplejpeg
    from pipeline import format as fmt
    per_frame = []
    for vid in reader.ids:
        g = reader._group(vid)
        data, offsets = g[fmt.JPEG][()], g[fmt.JPEG_OFFSETS][()]
        frames = [data[a:b].tobytes() for a, b in zip(offsets[:-1], offsets[1:])]
        t0 = time.process_time()
        for _ in range(repeats):
            for f in frames:
                simplejpeg.decode_jpeg(f, colorspace="RGB")
        per_frame.append((time.process_time() - t0) / (repeats * len(frames)))
    return 1e3 * float(np.mean(per_frame)) * SEGMENTS * FRAMES


def measure(loader) -> dict:
    """Iterate the whole loader once. samples/s leaves out the first batch (worker start-up);
    CPU ms per sample counts every process (main + workers) over all samples, so the loader must
    be dropped (workers joined) before the children's CPU time can be read: see `finish`."""
    cpu0 = os.times()
    t0 = time.perf_counter()
    it = iter(loader)
    first = next(it)["label"].shape[0]
    t1 = time.perf_counter()
    n = 0
    for batch in it:
        n += batch["label"].shape[0]
        release_batch(batch)   # as the trainer does after its step (no-op for the baseline)
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
    # long on purpose: a benchmark script reads top to bottom in the order it measures
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

    # ours: the ETL with the defaults (t=10, S=8, k=16, short side 112; jpeg) and with raw frames
    params = PreprocessParams()
    shard_dirs, etl = {}, {}
    for codec in ("jpeg", "raw"):
        t = time.perf_counter()
        shard_dirs[codec] = work / f"shards-{codec}-{args.videos}x{args.duration:g}s-{args.size}"
        res = preprocess.run("demo", videos[0].parent.parent, shard_dirs[codec],
                             params.replace(codec=codec), jobs=jobs, progress=False,
                             echo=lambda *a: None)
        etl[codec] = (f"ETL of {res.decoded} videos took {time.perf_counter() - t:.1f} s with "
                      f"{jobs} jobs, once" if res.decoded else "shards reused from an earlier run")
        print(f"ETL (vaanet preprocess --codec {codec}): {etl[codec]}", flush=True)

    t = time.perf_counter()
    folders = make_frame_folders(videos, work / f"frames-{args.videos}x{args.duration:g}s-{args.size}", jobs)
    print(f"frame folders (ffmpeg to JPEG + WAV): {time.perf_counter() - t:.1f} s", flush=True)

    readers = {c: ShardReader(d) for c, d in shard_dirs.items()}
    reader = readers["jpeg"]
    ids = reader.ids
    cfg = preset("paper", num_classes=len(reader.classes))
    by_id = {f"{f.parent.name}/{f.name}": f for f in folders}
    labels = [reader.meta(i)["label"] for i in ids]

    def shard_bytes(r):
        """Bytes read per sample: t of the S*t snippets (as stored) + the MFCC."""
        stored = sum(p.stat().st_size for p in r.root.glob("shard-*.h5")) / len(r.ids)
        mfcc = np.mean([4 * np.prod(r.meta(i)["mfcc_shape"]) for i in r.ids])
        return (stored - mfcc) / r.params.snippets + mfcc, stored
    jpeg = np.mean([p.stat().st_size for f in folders for p in f.glob("image_*.jpg")])
    wav = np.mean([(f / "audio.wav").stat().st_size for f in folders])
    base_bytes = SEGMENTS * FRAMES * jpeg + wav

    load_before = os.getloadavg()[0]
    # training mode (per-segment snippets, random crop); ids repeated to fill the run
    results = {}
    # "undecoded": the JPEG shards with `--decode device`: the workers hand over the JPEG files
    # and the training process would decode them on the GPU (not here: no decoding is timed)
    for name, r, decode in (("jpeg", readers["jpeg"], "workers"), ("raw", readers["raw"], "workers"),
                            ("undecoded", readers["jpeg"], "device")):
        n = args.samples + args.batch
        ds = ClipDataset(r, (ids * n)[:n], cfg, train=True, seed=0, decode=decode)
        loader = make_loader(ds, args.batch, train=True, workers=args.workers, seed=0)
        m = measure(loader)
        del loader
        results[name] = finish(m)
        print(f"{name}: {results[name]['samples_per_s']:8.2f} samples/s over {results[name]['timed']} "
              f"samples, {results[name]['cpu_ms_per_sample']:.1f} CPU ms per sample", flush=True)
    m_ours = results["jpeg"]

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
    (jpeg_read, jpeg_stored), (raw_read, raw_stored) = shard_bytes(readers["jpeg"]), shard_bytes(readers["raw"])
    rows = [("shards, JPEG (default)", results["jpeg"], jpeg_read, jpeg_stored),
            ("shards, raw (`--codec raw`)", results["raw"], raw_read, raw_stored),
            ("shards, JPEG left to the GPU (`--decode device`; decoding not included)",
             results["undecoded"], jpeg_read, jpeg_stored),
            ("frame folders (authors')", m_base, base_bytes, None)]
    table = ["| loader | samples/s | CPU ms per sample | MB read per sample | MB stored per video | first batch (s) |",
             "| --- | --- | --- | --- | --- | --- |"]
    table += [f"| {name} | {m['samples_per_s']:.2f} | {m['cpu_ms_per_sample']:.1f} | {b / 1e6:.2f} | "
              f"{'-' if st is None else f'{st / 1e6:.1f}'} | {m['first_batch_s']:.2f} |"
              for name, m, b, st in rows]
    cpu_ratio = m_base["cpu_ms_per_sample"] / m_ours["cpu_ms_per_sample"]
    verdict = (f"ratio JPEG shards / frame folders: {ratio:.1f}x samples/s (target >= 20x); "
               f"{cpu_ratio:.1f}x less CPU time per sample (all processes). JPEG / raw CPU per sample: "
               f"{results['jpeg']['cpu_ms_per_sample'] / results['raw']['cpu_ms_per_sample']:.1f}x.")

    # GPU estimate against the loader's per-core rate
    flops = train_flops_per_sample(cfg)
    floor_ms = decode_floor_ms(readers["jpeg"])
    gpu_rate = GPU_BF16_TFLOPS * 1e12 * GPU_UTILISATION / flops
    per_core = 1e3 / m_ours["cpu_ms_per_sample"]
    loader_rate = LOADER_WORKERS * per_core
    gpu_lines = [
        f"Paper preset (ResNet-101 trained end to end, 10 x 16 x 112 x 112 + audio 10 x 480 x 32): "
        f"{flops / 1e12:.2f} TFLOP per training sample (forward + backward, torch.utils.flop_counter).",
        f"One {GPU_NAME} ({GPU_BF16_TFLOPS:.0f} TFLOPS dense bf16, published) at an assumed "
        f"{GPU_UTILISATION:.0%} utilisation trains about {gpu_rate:.0f} samples/s.",
        f"{LOADER_WORKERS} loader workers with the JPEG default: {LOADER_WORKERS} x {per_core:.1f} = "
        f"{loader_rate:.0f} samples/s = {loader_rate / gpu_rate:.1f}x that rate (target >= 3x), "
        f"extrapolated from the CPU ms per sample measured here on {os.cpu_count()} cores "
        "(one worker per core; not measured with 16 workers).",
        f"JPEG decoding alone costs {floor_ms:.1f} CPU ms per sample ({SEGMENTS * FRAMES} frames, "
        f"measured in one process): {floor_ms / m_ours['cpu_ms_per_sample']:.0%} of the loader's CPU per "
        f"sample. Even a loader that did nothing else would give {LOADER_WORKERS} x "
        f"{1e3 / floor_ms:.1f} = {LOADER_WORKERS * 1e3 / floor_ms:.0f} samples/s = "
        f"{LOADER_WORKERS * 1e3 / floor_ms / gpu_rate:.1f}x that rate; 3x would need "
        f"{3 * gpu_rate * floor_ms / 1e3:.0f} cores decoding, or the decoding moved off the CPU "
        "(the GPU's nvJPEG), or raw frames: with `--codec raw` (no decoding, "
        f"{raw_stored / jpeg_stored:.0f}x the disk) {LOADER_WORKERS} workers give {LOADER_WORKERS} x "
        f"{1e3 / results['raw']['cpu_ms_per_sample']:.1f} = "
        f"{LOADER_WORKERS * 1e3 / results['raw']['cpu_ms_per_sample']:.0f} samples/s = "
        f"{LOADER_WORKERS * 1e3 / results['raw']['cpu_ms_per_sample'] / gpu_rate:.1f}x.",
        f"With `--decode device` the workers only read the JPEG files ({results['undecoded']['cpu_ms_per_sample']:.1f} "
        f"CPU ms per sample): {LOADER_WORKERS} workers give {LOADER_WORKERS} x "
        f"{1e3 / results['undecoded']['cpu_ms_per_sample']:.1f} = "
        f"{LOADER_WORKERS * 1e3 / results['undecoded']['cpu_ms_per_sample']:.0f} samples/s = "
        f"{LOADER_WORKERS * 1e3 / results['undecoded']['cpu_ms_per_sample'] / gpu_rate:.1f}x that rate "
        f"on the CPU side; the GPU then decodes {SEGMENTS * FRAMES} frames per sample with nvJPEG "
        "beside training, which only a GPU can measure (`bench/gpu.py` does: loader with "
        "`--decode device` against the training rate)."]
    text = "\n".join([
        "# Loader benchmark", "",
        f"Measured on this {cpu} CPU: {len(videos)} videos x {args.duration:g} s at {args.size} "
        f"(H.264 + AAC), {args.workers} workers each, batch {args.batch}, training mode, warm page cache.",
        f"Shards: `vaanet preprocess` with the defaults (t={params.segments}, S={params.snippets}, "
        f"k={params.frames}, short side {params.short_side}) as JPEG q{params.quality} "
        f"({etl['jpeg']}) and raw ({etl['raw']}); uint8 [10,16,112,112,3] (made channels-first on "
        "the device) + MFCC [10,480,32], batches built in shared memory by the workers.",
        "Baseline: JPEG frame folders at short side 240 + WAV; PIL decode, corner crop, resize to 112, "
        "float tensors, MFCC computed per access (4096 x 32, as the authors' code).",
        f"First batch (worker start-up) excluded from the rates; {m_ours['timed']} / "
        f"{results['raw']['timed']} / {results['undecoded']['timed']} / {m_base['timed']} samples timed; CPU ms per sample counts "
        f"every process; load average {load_before:.1f} before / {os.getloadavg()[0]:.1f} after "
        "(other processes on the machine slow every loader).", "",
        *table, "", verdict, "", *gpu_lines, "",
        f"Command: `python bench/loader.py {' '.join(argv if argv is not None else sys.argv[1:])}`".rstrip(), ""])
    print()
    print(text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    record = {"workers": args.workers, "batch": args.batch, "device": cpu, "videos": len(videos),
              "duration": args.duration, "size": args.size, "ratio": ratio,
              "cpu_ratio": cpu_ratio, "load_average": load_before,
              "flops_per_sample": flops, "gpu_estimate_samples_per_s": gpu_rate,
              "loader_16_workers_samples_per_s": loader_rate,
              "jpeg_decode_cpu_ms_per_sample": floor_ms,
              "ours": {**m_ours, "mb_per_s": ours_rate * jpeg_read / 1e6},
              "raw": {**results["raw"], "mb_per_s": results["raw"]["samples_per_s"] * raw_read / 1e6},
              "undecoded": {**results["undecoded"],
                            "mb_per_s": results["undecoded"]["samples_per_s"] * jpeg_read / 1e6},
              "baseline": {**m_base, "mb_per_s": base_rate * base_bytes / 1e6}}
    out.with_suffix(".json").write_text(json.dumps(record, indent=1) + "\n")
    print(f"written to {out} and {out.with_suffix('.json')}")


if __name__ == "__main__":
    main()
