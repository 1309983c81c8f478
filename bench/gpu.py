"""GPU benchmark: VAANet's training path on one GPU, end to end, in one command.

    python bench/gpu.py                   # CUDA: about 5-8 min on one GPU; writes bench/results/gpu.md + gpu.json
    python bench/gpu.py --dry             # the same code path at tiny sizes on CPU (see bench/README.md)
    python bench/gpu.py --peak-tflops 989 --no-compile --out /tmp/gpu-bench

What it measures, side by side, in one run:

1. data: synthetic demo videos (a few made with pipeline.demo, copied to --videos files),
   preprocessed by `pipeline.preprocess.run` (what `vaanet preprocess` runs) at the paper's
   geometry: t = 10 segments x k = 16 frames, short side 112;
2. training samples/s from inputs already on the device of `paper` (3D ResNet-101 trained end
   to end) and `official` (frozen backbone), batch 32, bf16, each with and without
   channels_last_3d and with and without torch.compile (compile time reported apart),
   cudnn.benchmark on; peak GPU memory per configuration; the achieved model FLOP/s (FLOPs per
   training sample counted with torch.utils.flop_counter) as a share of the GPU's bf16 peak
   (a table of published dense figures by device name, or --peak-tflops);
3. the largest batch of `paper` that fits;
4. the streaming loader alone with the workers the trainer would use (samples/s, CPU ms per
   sample) and the ratio loader / training rate (target >= 3x); the same with `--decode
   device` (JPEG decoded on the GPU by nvJPEG, when TorchCodec or torchvision for this torch
   is installed);
5. a real `vaanet train` of 2 epochs on those shards (subprocess): data-wait fraction per epoch
   from its metrics.jsonl, then evaluation throughput of its best.pt; the same with --gpus 2
   when two GPUs are visible, and with `--decode device` when nvJPEG is usable.

Compiled configurations run last and are skipped (and named so) once --budget-s is spent.
This file is not part of the package: it only uses it (model.build, model.config, trainer.*,
pipeline.*).
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

from model.build import build_model  # noqa: E402
from model.config import preset  # noqa: E402
from model.losses import build_loss  # noqa: E402
from pipeline import preprocess  # noqa: E402
from pipeline.demo import make_demo_videos  # noqa: E402
from pipeline.params import PreprocessParams  # noqa: E402
from trainer.device import (autocast, channels_last_3d, default_workers, resolve_amp,  # noqa: E402
                            resolve_device)
from trainer.batch_slots import release_batch  # noqa: E402
from trainer.device_decode import check_device_decode  # noqa: E402
from trainer.errors import RunError  # noqa: E402
from trainer.loader import ClipDataset, make_loader, to_device_batch  # noqa: E402

# published dense (no sparsity) bf16 tensor-core peaks, TFLOP/s; the first name found in the
# device name wins, so the specific variants come before the generic ones
PEAK_BF16_TFLOPS = [
    ("H200 NVL", 835), ("H200", 989), ("GH200", 989), ("H100 NVL", 835), ("H100 PCIe", 756),
    ("H100", 989), ("H800", 989), ("B200", 2250), ("B100", 1750), ("A100", 312), ("A800", 312),
    ("L40S", 362), ("L40", 181), ("L4", 121), ("A10", 125), ("RTX 4090", 165),
]

# tiny sizes of --dry: the demo network (3D ResNet-10) on 2 segments of 4 frames at 32 px
DRY_MODEL = dict(segments=2, frames=4, crop=32, audio_segments=2, audio_len=16,
                 visual_channels=32, audio_channels=16)
DRY_PARAMS = PreprocessParams(segments=2, snippets=1, frames=4, short_side=32, max_long_side=48)
PAPER_PARAMS = PreprocessParams()  # t = 10, S = 1, k = 16, short side 112: the paper's clip


def peak_tflops(device_name: str, override: float | None) -> tuple[float | None, str]:
    if override:
        return override, "--peak-tflops"
    for key, value in PEAK_BF16_TFLOPS:
        if key.lower() in device_name.lower():
            return float(value), f"published dense bf16 peak of {key}"
    return None, "unknown device: pass --peak-tflops"


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ---- data ----------------------------------------------------------------------------------

def make_data(work: Path, videos: int, duration: float, dry: bool, jobs: int) -> Path:
    """Shards of `videos` synthetic videos: a few distinct demo videos (4 classes), each copied
    (hard link) under several names, then preprocessed once each like any other video."""
    distinct = make_demo_videos(work / "distinct", seed=0, per_class=2 if dry else 4,
                                duration=duration, size=(80, 60) if dry else (320, 180))
    root = work / f"videos-{videos}"
    sources = sorted(distinct.glob("*/*.mp4"))
    for i in range(videos):
        src = sources[i % len(sources)]
        dst = root / src.parent.name / f"v{i:04d}.mp4"
        if not dst.exists():
            dst.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(src, dst)
            except OSError:
                shutil.copy(src, dst)
    out = work / f"shards-{videos}"
    # the work folder is this script's cache: shards of other settings (an older format) are redone
    res = preprocess.run("demo", root, out, DRY_PARAMS if dry else PAPER_PARAMS, jobs=jobs,
                         overwrite=True, progress=False, echo=lambda *a: None)
    if res.ok_total != videos:
        raise SystemExit(f"preprocess: {res.ok_total} of {videos} videos ok")
    return out


def model_configs(dry: bool) -> dict:
    """The two configurations compared: trained end to end (`paper`) and frozen (`official`)."""
    if dry:
        return {"paper": preset("demo", freeze_visual=False, **DRY_MODEL),
                "official": preset("demo", freeze_visual=True, **DRY_MODEL)}
    return {"paper": preset("paper", num_classes=4), "official": preset("official", num_classes=4)}


# ---- training steps from inputs on the device ------------------------------------------------

def synthetic_batch(cfg, batch: int, device) -> dict:
    """A batch as the loader hands it over (uint8 clips channels-last [B, t, k, H, W, 3])."""
    g = torch.Generator().manual_seed(0)
    visual = torch.randint(0, 256, (batch, cfg.segments, cfg.frames, cfg.crop, cfg.crop, 3),
                           dtype=torch.uint8, generator=g)
    audio = torch.randn(batch, cfg.audio_segments, cfg.audio_len, cfg.n_mfcc, generator=g)
    b = {"visual": visual, "audio": audio, "label": torch.randint(0, cfg.num_classes, (batch,), generator=g),
         "index": torch.arange(batch)}
    return {k: (v.to(device) if k != "index" else v) for k, v in b.items()}


def trainer_step(cfg, device, amp: str, channels_last: bool, compile_backend: str | None):
    """(model, step(batch) -> loss): the trainer's step (to_device_batch with its flip,
    autocast forward, PCCE, backward, Adam) on a fresh model."""
    torch.manual_seed(0)
    model = build_model(cfg).to(device).train()
    if channels_last:
        channels_last_3d(model)
    run = torch.compile(model, backend=compile_backend) if compile_backend else model
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=2e-4)
    loss_fn = build_loss("pcce", [0, 0, 1, 1]).to(device)
    flips = torch.Generator(device=device).manual_seed(0)

    def step(batch):
        b = to_device_batch(batch, device, train=True, generator=flips, channels_last=channels_last)
        with autocast(device, amp):
            logits = run(b["visual"], b["audio"]).logits
        loss = loss_fn(logits.float(), b["label"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss
    return model, step


def time_config(cfg, device, batch: int, amp: str, channels_last: bool, compile_backend,
                warmup: int, steps: int) -> dict:
    """samples/s (median step), first-step time (compile included), peak memory."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    data = synthetic_batch(cfg, batch, device)
    model, step = trainer_step(cfg, device, amp, channels_last, compile_backend)
    times = []
    for i in range(warmup + steps):
        sync(device)
        t0 = time.perf_counter()
        step(data)
        sync(device)
        times.append(time.perf_counter() - t0)
    step_s = statistics.median(times[warmup:])
    out = {"samples_per_s": batch / step_s, "step_s": step_s, "first_step_s": times[0],
           "compile_s": max(0.0, sum(times[:warmup]) - warmup * step_s) if compile_backend else None,
           "peak_mem_gib": (torch.cuda.max_memory_allocated(device) / 2**30
                            if device.type == "cuda" else None)}
    del model, step, data
    gc.collect()
    return out


def flops_per_sample(cfg, device, amp: str, batch: int = 2) -> float:
    """FLOPs of one training step (forward + backward) per sample, counted by
    torch.utils.flop_counter on an uncompiled model (convolutions and matrix products)."""
    from torch.utils.flop_counter import FlopCounterMode
    data = synthetic_batch(cfg, batch, device)
    _, step = trainer_step(cfg, device, amp, False, None)
    step(data)  # lazy initialisation outside the count
    with FlopCounterMode(display=False) as counter:
        step(data)
    return counter.get_total_flops() / batch


def largest_batch(cfg, device, amp: str, channels_last: bool, start: int, dry: bool) -> dict:
    """The largest batch of the candidates (doubling-ish from `start`) whose training step runs
    without running out of GPU memory; --dry tries `start` only."""
    candidates = [start] if dry else [start, 48, 64, 96, 128, 160, 192, 256, 384, 512]
    candidates = sorted({c for c in candidates if c >= start})
    fits, failed = None, None
    for b in candidates:
        try:
            r = time_config(cfg, device, b, amp, channels_last, None, warmup=0 if dry else 1, steps=1)
            fits = {"batch": b, "peak_mem_gib": r["peak_mem_gib"], "samples_per_s": r["samples_per_s"]}
        except torch.cuda.OutOfMemoryError:
            failed = b
            break
        finally:
            gc.collect()
            if device.type == "cuda":
                torch.cuda.empty_cache()
    return {"largest": fits, "first_failing": failed, "tried": candidates}


# ---- the loader alone -----------------------------------------------------------------------

def measure_loader(shards: Path, cfg, batch: int, workers: int, samples: int, device,
                   decode: str = "workers") -> dict:
    """Samples/s of the streaming loader in training mode with `workers` (first batch left out:
    worker start-up), batches copied to the device as the trainer does (with decode "device"
    the JPEG frames are decoded there: nvJPEG on CUDA); CPU ms per sample of all processes (main
    + workers, start-up included), read once the workers have exited."""
    from pipeline.reader import ShardReader
    reader = ShardReader(shards)
    ids = list(reader.ids) * max(1, -(-samples // len(reader.ids)))
    ds = ClipDataset(reader, ids[:samples], cfg, train=True, seed=0, decode=decode)
    loader = make_loader(ds, batch, train=True, workers=workers, seed=0, device=device)
    cpu0, t0 = os.times(), time.perf_counter()
    it = iter(loader)
    first = next(it)
    n_first = len(to_device_batch(first, device, train=True)["label"])
    release_batch(first)
    sync(device)
    t1, n = time.perf_counter(), 0
    for batch_ in it:
        n += len(to_device_batch(batch_, device, train=True)["label"])
        release_batch(batch_)   # as the trainer does after its step
    sync(device)
    t2 = time.perf_counter()
    del it, loader
    gc.collect()
    cpu1 = os.times()
    reader.close()
    cpu = sum(cpu1[k] - cpu0[k] for k in range(4))  # user, system, children user, children system
    return {"workers": workers, "batch": batch, "decode": decode, "samples_per_s": n / max(t2 - t1, 1e-9),
            "cpu_ms_per_sample": 1e3 * cpu / (n + n_first), "first_batch_s": t1 - t0,
            "samples": n + n_first}


# ---- a real `vaanet train` and evaluation ------------------------------------------------------

def run_training(shards: Path, run_dir: Path, dry: bool, batch: int, gpus: int, device,
                 decode: str = "workers") -> dict:
    """`vaanet train` for 2 epochs (subprocess, the trainer's defaults on this device), then
    the data-wait fraction and samples/s per epoch from RUN_DIR/metrics.jsonl."""
    shutil.rmtree(run_dir, ignore_errors=True)
    cmd = [sys.executable, "-m", "cli", "train", "--data", str(shards), "--out", str(run_dir),
           "--epochs", "2", "--batch-size", str(batch), "--device", device.type]
    if dry:
        tiny = run_dir.with_name(run_dir.name + "-model.json")
        tiny.write_text(json.dumps({"model": DRY_MODEL, "freeze_visual": False, "lr": 1e-3}))
        cmd += ["--preset", "demo", "--config", str(tiny)]
    else:
        cmd += ["--preset", "paper"]
    if gpus > 1:
        cmd += ["--gpus", str(gpus)]
    if decode != "workers":
        cmd += ["--decode", decode]
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    t0 = time.perf_counter()
    p = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        return {"error": f"exit {p.returncode}: {(p.stdout + p.stderr)[-1500:]}", "command": cmd}
    records = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    epochs = [{"epoch": r["epoch"], "data_wait_fraction": r.get("speed", {}).get("data_wait_fraction"),
               "samples_per_s": r.get("speed", {}).get("samples_per_s"), "epoch_s": r.get("epoch_s"),
               "train_n": r.get("train", {}).get("n")} for r in records if "epoch" in r]
    used = json.loads((run_dir / "config.json").read_text())
    return {"command": " ".join(cmd[3:]), "gpus": gpus, "wall_s": wall, "epochs": epochs,
            "amp": used.get("amp"), "workers": used.get("workers"),
            "channels_last": used.get("channels_last")}


def eval_throughput(run_dir: Path, device, batch: int) -> dict:
    """Videos/s of the trainer's evaluation (trainer.evaluate.predict) on the run's test split
    with its best.pt, at `vaanet evaluate`'s defaults (workers by the rule, amp auto); the
    second of two passes is timed (the first starts cuDNN and the page cache)."""
    from model.config import ModelConfig
    from trainer import checkpoint
    from trainer.data import open_data, split_ids
    from trainer.device import default_workers_here, resolve_amp
    from trainer.evaluate import EvalSet, predict
    ckpt = checkpoint.load(run_dir / "best.pt")
    reader = open_data(ckpt["run_config"]["data"])
    ids = split_ids(reader, ckpt["split"], "test")
    cfg = ModelConfig.from_dict(ckpt["model_config"])
    model = build_model(cfg)
    model.load_state_dict(ckpt["model"])
    model.to(device)
    amp = resolve_amp("auto", device)
    evalset = EvalSet(reader, ids, cfg, batch, default_workers_here())
    predict(model, evalset, device, amp)
    t0 = time.perf_counter()
    predict(model, evalset, device, amp)
    sync(device)
    dt = time.perf_counter() - t0
    reader.close()
    return {"videos": len(ids), "videos_per_s": len(ids) / dt, "batch": batch, "amp": amp,
            "workers": default_workers_here()}


# ---- report ---------------------------------------------------------------------------------

def fmt(v, spec=".3g", none="-"):
    return none if v is None else format(v, spec)


def markdown(rec: dict) -> str:
    """bench/results/gpu.md from the record written to gpu.json."""
    peak = rec["peak_tflops"]
    lines = ["# GPU benchmark (`bench/gpu.py`)", "",
             f"On {rec['device_name']} ({rec['cpu']}); torch {rec['torch']}; {rec['when']}."
             + (" **Dry run: tiny sizes on CPU, to check the code path; these figures say nothing "
                "about a GPU.**" if rec["dry"] else ""), "",
             f"Training from inputs already on the device, batch {rec['batch']}, amp {rec['amp']}, "
             f"cudnn.benchmark on; peak {fmt(peak)} TFLOP/s ({rec['peak_source']}); FLOPs per "
             "training sample (forward + backward, torch.utils.flop_counter): "
             + ", ".join(f"{k} {v / 1e12:.3g} TFLOP" for k, v in rec["flops_per_sample"].items()) + ".", "",
             "| preset | channels_last_3d | torch.compile | samples/s | step (ms) | compile (s) | "
             "TFLOP/s | share of peak | peak memory (GiB) |", "|---" * 9 + "|"]
    for r in rec["train"]:
        if "skipped" in r:
            lines.append(f"| {r['preset']} | {r['channels_last']} | {r['compile']} | skipped: "
                         f"{r['skipped']} | | | | | |")
            continue
        tf = r["samples_per_s"] * rec["flops_per_sample"][r["preset"]] / 1e12
        share = f"{100 * tf / peak:.1f}%" if peak else "-"
        lines.append(f"| {r['preset']} | {r['channels_last']} | {r['compile']} | {r['samples_per_s']:.1f} | "
                     f"{1e3 * r['step_s']:.1f} | {fmt(r['compile_s'], '.1f')} | {tf:.3g} | {share} | "
                     f"{fmt(r['peak_mem_gib'], '.2f')} |")
    lb = rec["largest_batch"]
    big = lb["largest"]
    lines += ["", f"Largest `paper` batch that fits ({'channels_last_3d' if lb['channels_last'] else 'NCDHW'}, "
              f"amp {rec['amp']}): " + (f"{big['batch']} ({fmt(big['peak_mem_gib'], '.1f')} GiB, "
                                         f"{big['samples_per_s']:.1f} samples/s)" if big else "none")
              + (f"; {lb['first_failing']} runs out of memory" if lb["first_failing"] else
                 f"; every candidate tried ran ({', '.join(map(str, lb['tried']))})"), ""]
    ld = rec["loader"]
    lines += [f"Streaming loader alone ({ld['workers']} workers, the trainer's default here; batch "
              f"{ld['batch']}; batches copied to the device): {ld['samples_per_s']:.0f} samples/s, "
              f"{ld['cpu_ms_per_sample']:.1f} CPU ms per sample (all processes, start-up included).", ""]
    for name, ratio in rec["loader_over_training"].items():
        lines.append(f"- loader / fastest `{name}` training rate: {ratio:.1f}x (target >= 3x: "
                     + ("met" if ratio >= 3 else "NOT met: the loader limits training") + ")")
    lines.append("")
    dd = rec.get("loader_device_decode") or {"skipped": "not measured"}
    if "skipped" in dd:
        lines += [f"Loader with `--decode device`: not measured ({dd['skipped']}).", ""]
    else:
        via = dd["decoder"] if dd["decoder"] == "libjpeg-turbo" else f"nvJPEG through {dd['decoder']}"
        lines += [f"Loader with `--decode device` (workers read the JPEG files, {via} decodes "
                  f"them on the device; nothing else on the GPU meanwhile): {dd['samples_per_s']:.0f} "
                  f"samples/s, {dd['cpu_ms_per_sample']:.1f} CPU ms per sample (all processes).", ""]
        for name, ratio in rec["device_decode_over_training"].items():
            # decoding and training share the device: if the device's decoding limited the rate
            # measured alone, it would take 1 / (ratio + 1) of the time of both together
            lines.append(f"- with `--decode device` / fastest `{name}` training rate: {ratio:.1f}x "
                         f"(target >= 3x: {'met' if ratio >= 3 else 'NOT met'}); decoding takes at "
                         f"most {100 / (ratio + 1):.0f}% of the device's time beside that training")
        lines.append("")
    for run in rec["runs"]:
        if "error" in run:
            lines += [f"`vaanet train` failed: {run['error']}", ""]
            continue
        lines += [f"`vaanet {run['command']}` ({run['gpus']} process(es), amp {run['amp']}, "
                  f"{run['workers']} workers per process, channels-last {run['channels_last']}; "
                  f"{run['wall_s']:.0f} s wall):", "",
                  "| epoch | data wait | samples/s | epoch (s) | training videos |", "|---|---|---|---|---|"]
        lines += [f"| {e['epoch']} | {fmt(e['data_wait_fraction'] and 100 * e['data_wait_fraction'], '.1f')}% | "
                  f"{fmt(e['samples_per_s'], '.1f')} | {fmt(e['epoch_s'], '.1f')} | {e['train_n']} |"
                  for e in run["epochs"]]
        ev = run.get("eval")
        if ev:
            lines += ["", f"Evaluation of its best.pt on the test split: {ev['videos_per_s']:.1f} "
                          f"videos/s ({ev['videos']} videos, batch {ev['batch']}, amp {ev['amp']}, "
                          f"{ev['workers']} workers; second pass)."]
        lines.append("")
    if not any(r.get("gpus", 1) > 1 for r in rec["runs"]):
        lines += ["`--gpus 2`: not run (fewer than two GPUs visible).", ""]
    lines += [f"Command: `{rec['command']}`; total {rec['total_s']:.0f} s.", ""]
    return "\n".join(lines)


# ---- the run --------------------------------------------------------------------------------

def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dry", action="store_true",
                    help="tiny sizes on CPU (demo network, 2 x 4 frames at 32 px): checks the code path")
    ap.add_argument("--out", default=str(HERE / "results"), help="folder for gpu.md and gpu.json")
    ap.add_argument("--work", default=None, help="videos and shards (kept and reused) "
                    "[default: $TMPDIR/vaanet-bench-gpu[-dry]]")
    ap.add_argument("--videos", type=int, default=None, help="[default: 512; dry: 16]")
    ap.add_argument("--duration", type=float, default=None, help="seconds per video [default: 8; dry: 2]")
    ap.add_argument("--batch", type=int, default=None, help="[default: 32; dry: 2]")
    ap.add_argument("--steps", type=int, default=None, help="timed steps [default: 10; dry: 1]")
    ap.add_argument("--warmup", type=int, default=None, help="untimed steps [default: 3; dry: 0]")
    ap.add_argument("--peak-tflops", type=float, default=None, help="the GPU's dense bf16 peak")
    ap.add_argument("--no-compile", action="store_true", help="leave out the torch.compile rows")
    ap.add_argument("--compile-backend", default=None,
                    help="[default: inductor; dry: eager (no code generation on a CPU test)]")
    ap.add_argument("--budget-s", type=float, default=None,
                    help="no compiled configuration starts after this many seconds [default: 360; "
                         "dry: no limit, so that every path runs]")
    args = ap.parse_args(argv)
    dry = args.dry
    for name, full, tiny in (("videos", 512, 16), ("duration", 8.0, 2.0), ("batch", 32, 2),
                             ("steps", 10, 1), ("warmup", 3, 0), ("budget_s", 360.0, float("inf"))):
        if getattr(args, name) is None:
            setattr(args, name, tiny if dry else full)
    args.compile_backend = args.compile_backend or ("eager" if dry else "inductor")
    args.work = Path(args.work or Path(tempfile.gettempdir()) / f"vaanet-bench-gpu{'-dry' if dry else ''}")
    return args


def main(argv=None):
    t_start = time.perf_counter()
    args = parse_args(argv)
    device = resolve_device("cpu" if args.dry else "auto")
    if device.type != "cuda" and not args.dry:
        raise SystemExit("no CUDA device here: run `python bench/gpu.py --dry` to check the code path")
    torch.backends.cudnn.benchmark = True      # the trainer's setting for training
    amp = resolve_amp("auto", device)          # bf16 on a CUDA device that has it; none on CPU
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    peak, peak_source = peak_tflops(name, args.peak_tflops) if device.type == "cuda" else (None, "CPU: none")
    cores = os.cpu_count() or 1
    print(f"{name}, {cores} cores; work folder {args.work}", flush=True)

    shards = make_data(args.work, args.videos, args.duration, args.dry, jobs=cores)
    print(f"data: {args.videos} videos preprocessed in {shards} ({time.perf_counter() - t_start:.0f} s)",
          flush=True)
    configs = model_configs(args.dry)
    rows = [(p, cl, False) for p in configs for cl in (False, True)]
    rows += [(p, cl, True) for p in configs for cl in (False, True)] if not args.no_compile else []
    train = []
    for i, (p, cl, comp) in enumerate(rows):
        if i == len(configs) * 2:  # the uncompiled rows are done: the other measurements first
            extras = measure_rest(args, device, amp, configs, shards, train)
        row = {"preset": p, "channels_last": cl, "compile": comp}
        if comp and time.perf_counter() - t_start > args.budget_s:
            train.append({**row, "skipped": f"time budget ({args.budget_s:.0f} s) spent"})
            continue
        try:
            r = time_config(configs[p], device, args.batch, amp, cl, args.compile_backend if comp else None,
                            args.warmup + (2 if comp else 0), args.steps)
        except Exception as e:  # noqa: BLE001 - a compiler failure is a result, not the end of the run
            if not comp:
                raise
            msg = " ".join(str(e).split())[:200].replace("|", "/")
            train.append({**row, "skipped": f"torch.compile failed: {type(e).__name__}: {msg}"})
            continue
        train.append({**row, **r})
        print(f"  {p:8s} channels_last={cl!s:5s} compile={comp!s:5s}: {r['samples_per_s']:.1f} samples/s"
              + (f", compile {r['compile_s']:.1f} s" if comp else ""), flush=True)
    if args.no_compile:
        extras = measure_rest(args, device, amp, configs, shards, train)

    best = {p: max(r["samples_per_s"] for r in train if r["preset"] == p and "skipped" not in r)
            for p in configs}
    rec = {"dry": args.dry, "device_name": name, "cpu": f"{platform.machine()}, {cores} cores",
           "torch": torch.__version__, "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
           "batch": args.batch, "amp": amp, "peak_tflops": peak, "peak_source": peak_source,
           "train": train, **extras,
           "loader_over_training": {p: extras["loader"]["samples_per_s"] / v for p, v in best.items()},
           "device_decode_over_training": ({p: extras["loader_device_decode"]["samples_per_s"] / v
                                            for p, v in best.items()}
                                           if "skipped" not in extras["loader_device_decode"] else {}),
           "command": "python bench/gpu.py " + " ".join(argv if argv is not None else sys.argv[1:]),
           "total_s": time.perf_counter() - t_start}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu.json").write_text(json.dumps(rec, indent=1) + "\n")
    text = markdown(rec)
    (out / "gpu.md").write_text(text)
    print("\n" + text + f"\nwritten to {out / 'gpu.md'} and {out / 'gpu.json'}")


def measure_rest(args, device, amp, configs, shards, train) -> dict:
    """FLOPs per sample, the largest batch, the loader alone and the real training runs."""
    flops = {p: flops_per_sample(cfg, device, amp) for p, cfg in configs.items()}
    paper_rows = [r for r in train if r["preset"] == "paper"]
    cl = max(paper_rows, key=lambda r: r["samples_per_s"])["channels_last"]
    largest = {**largest_batch(configs["paper"], device, amp, cl, args.batch, args.dry), "channels_last": cl}
    print(f"  largest paper batch: {largest['largest'] and largest['largest']['batch']}", flush=True)
    workers = default_workers(os.cpu_count() or 1, 1)
    loader = measure_loader(shards, configs["paper"], args.batch, workers,
                            max(4 * args.batch, 64 if args.dry else 2048), device)
    print(f"  loader: {loader['samples_per_s']:.0f} samples/s with {workers} workers", flush=True)
    try:   # the JPEG frames decoded on the device instead (nvJPEG on CUDA)
        decoder = check_device_decode(device)
        loader_dev = {**measure_loader(shards, configs["paper"], args.batch, workers,
                                       max(4 * args.batch, 64 if args.dry else 2048), device,
                                       decode="device"), "decoder": decoder}
        print(f"  loader, --decode device ({decoder}): {loader_dev['samples_per_s']:.0f} samples/s",
              flush=True)
    except RunError as e:
        loader_dev = {"skipped": str(e)}
    runs = []
    # one GPU; two when visible; one GPU with the frames decoded on it (nvJPEG) when it can
    plan = [(1, "workers"), (2, "workers"), (1, "device")]
    for gpus, decode in plan:
        if gpus == 2 and (device.type != "cuda" or torch.cuda.device_count() < 2):
            continue
        if decode == "device" and (device.type != "cuda" or "skipped" in loader_dev):
            continue
        run_dir = args.work / f"run-{gpus}gpu-{decode}"
        run = run_training(shards, run_dir, args.dry, args.batch, gpus, device, decode)
        if "error" not in run and decode == "workers":
            run["eval"] = eval_throughput(run_dir, device, 32 if not args.dry else args.batch)
        runs.append(run)
        print(f"  vaanet train --gpus {gpus} --decode {decode}: " + (run.get("error") or ", ".join(
            f"epoch {e['epoch']} data wait {fmt(e['data_wait_fraction'], '.1%')}" for e in run["epochs"])),
            flush=True)
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return {"flops_per_sample": flops, "largest_batch": largest, "loader": loader,
            "loader_device_decode": loader_dev, "runs": runs}


if __name__ == "__main__":
    main()
