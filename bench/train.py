"""Training step benchmark: can the loader keep VAANet busy?

Times forward + backward + Adam step of VAANet at paper size (t = 10 segments of 16 x 112 x 112,
3D ResNet-101, audio ResNet-18 on 10 x 256 x 32 MFCC) on the device at hand, from synthetic
uint8 / float32 inputs already on the device, and sets the training rate (samples/s) beside the
streaming loader's rate. Ratio loader / training >= 3 means data waiting cannot limit training.

    python bench/train.py                        # CPU: batch 1, 1 warm-up + 2 timed steps
    python bench/train.py --device cuda --batch 32 --amp bf16 --steps 20
    python bench/train.py --preset official      # the authors' code: frozen 3D backbone
    python bench/train.py --data data/processed/ve8 --workers 8   # loader measured here too

The loader rate comes from --loader-rate, else from a loader run on --data, else from
bench/results/loader.json (written by bench/loader.py).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from model.config import preset  # noqa: E402
from model.losses import build_loss  # noqa: E402
from model.vaanet import VAANet  # noqa: E402
from trainer.device import autocast, resolve_device  # noqa: E402


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(cfg, device, batch: int, steps: int, warmup: int, amp: str | None, seed: int = 0):
    """Seconds per training step (each), after `warmup` untimed steps."""
    torch.manual_seed(seed)
    model = VAANet(cfg).to(device).train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=2e-4)
    polarity = [1] * (cfg.num_classes // 2) + [0] * (cfg.num_classes - cfg.num_classes // 2)
    loss_fn = build_loss("pcce", polarity).to(device)
    g = torch.Generator(device="cpu").manual_seed(seed)
    visual = audio = None
    if cfg.visual:
        visual = torch.randint(0, 256, (batch, cfg.segments, 3, cfg.frames, cfg.crop, cfg.crop),
                               dtype=torch.uint8, generator=g).to(device)
    if cfg.audio:
        audio = torch.randn(batch, cfg.audio_segments, cfg.audio_len, cfg.n_mfcc, generator=g).to(device)
    labels = torch.randint(0, cfg.num_classes, (batch,), generator=g).to(device)
    scaler = torch.amp.GradScaler(device.type, enabled=amp == "fp16")
    times = []
    for i in range(warmup + steps):
        sync(device)
        t0 = time.perf_counter()
        with autocast(device, amp or "none"):
            out = model(visual, audio)
            loss = loss_fn(out.logits.float(), labels)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        loss.item()  # a training loop logs the loss: one synchronisation per step
        sync(device)
        if i >= warmup:
            times.append(time.perf_counter() - t0)
        print(f"  step {i + 1}/{warmup + steps}: {time.perf_counter() - t0:.2f} s"
              + ("  (warm-up)" if i < warmup else ""), flush=True)
    n_params = sum(p.numel() for p in model.parameters())
    n_train = sum(p.numel() for p in params)
    return times, n_params, n_train


def loader_rate_from_data(data: str, cfg, workers: int, batch: int, samples: int) -> float:
    """Samples/s of the streaming loader over the shards in `data` (train mode, this config)."""
    from trainer.batch_slots import release_batch
    from trainer.loader import ClipDataset, make_loader
    from pipeline.reader import ShardReader
    reader = ShardReader(data)
    ids = reader.ids
    reps = -(-samples // len(ids))
    ds = ClipDataset(reader, ids * reps, cfg, train=True, seed=0)
    loader = make_loader(ds, batch, train=True, workers=workers, seed=0)
    it = iter(loader)
    next(it)  # worker start-up is not part of the rate
    t0, n = time.perf_counter(), 0
    for b in it:
        n += b["label"].shape[0]
        release_batch(b)   # as the trainer does after its step
    return n / (time.perf_counter() - t0)


def main(argv=None):
    # long on purpose: a benchmark script reads top to bottom in the order it measures
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", default="paper", choices=["paper", "official", "demo"])
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--batch", type=int, default=None, help="default: 1 on CPU, 32 on CUDA (the paper's)")
    ap.add_argument("--steps", type=int, default=None, help="timed steps (default: 2 on CPU, 20 on CUDA)")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--amp", default="none", choices=["none", "bf16", "fp16"],
                    help="autocast dtype (CUDA)")
    ap.add_argument("--freeze-visual", action="store_true", help="freeze the 3D backbone (official code)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--loader-rate", type=float, default=None, help="loader samples/s to compare with")
    ap.add_argument("--data", default=None, help="shards to measure the loader on (paper-size shards)")
    ap.add_argument("--workers", type=int, default=2, help="loader workers with --data")
    ap.add_argument("--out", default=str(HERE / "results" / "train.md"))
    args = ap.parse_args(argv)

    try:
        device = resolve_device(args.device)
    except ValueError as e:
        raise SystemExit(str(e)) from None
    if args.threads:
        torch.set_num_threads(args.threads)
    batch = args.batch or (32 if device.type == "cuda" else 1)
    steps = args.steps or (20 if device.type == "cuda" else 2)
    amp = None if args.amp == "none" else args.amp
    overrides = {"freeze_visual": True} if args.freeze_visual else {}
    cfg = preset(args.preset, **overrides)
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else \
        f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
    print(f"VAANet preset {args.preset}: t={cfg.segments} k={cfg.frames} crop={cfg.crop} "
          f"visual ResNet-{cfg.visual_depth}{' (frozen)' if cfg.freeze_visual else ''}, "
          f"audio {cfg.audio_segments}x{cfg.audio_len}x{cfg.n_mfcc}; batch {batch} on {device_name}"
          f"{', amp ' + amp if amp else ''}", flush=True)

    load_before = os.getloadavg()[0]
    times, n_params, n_train = time_steps(cfg, device, batch, steps, args.warmup, amp)
    # median: robust to a neighbour's burst on shared cores
    step_s = statistics.median(times)
    train_rate = batch / step_s
    peak = (torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20)

    source = None
    loader_rate = args.loader_rate
    if loader_rate is not None:
        source = "--loader-rate"
    elif args.data:
        loader_rate = loader_rate_from_data(args.data, cfg, args.workers, 4, 64)
        source = f"measured on {args.data} with {args.workers} workers"
    else:
        saved = HERE / "results" / "loader.json"
        if saved.exists():
            rec = json.loads(saved.read_text())
            loader_rate = rec["ours"]["samples_per_s"]
            source = f"bench/results/loader.json ({rec['workers']} workers, {rec['device']})"

    rows = [("training step (fwd+bwd+Adam)", f"{step_s:.3g} s", f"{train_rate:.3g}")]
    if loader_rate is not None:
        rows.append(("streaming loader", "", f"{loader_rate:.3g}"))
    lines = ["| what | time per step | samples/s |", "| --- | --- | --- |"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    verdict = ""
    if loader_rate is not None:
        ratio = loader_rate / train_rate
        verdict = (f"loader / training rate = {ratio:.1f}x (target >= 3x): "
                   + ("data waiting cannot limit training" if ratio >= 3 else
                      "the loader may limit training: add workers"))
        if device.type != "cuda":  # a CPU step says nothing about a GPU's appetite
            verdict = (f"loader / training rate = {ratio:.1f}x, both on CPU: no conclusion about a "
                       "GPU (run bench/gpu.py there)")
    else:
        verdict = "no loader rate: run bench/loader.py first, or pass --data / --loader-rate"
    text = "\n".join([
        "# Train step benchmark", "",
        f"VAANet preset `{args.preset}` (t={cfg.segments}, k={cfg.frames}, crop {cfg.crop}, "
        f"3D ResNet-{cfg.visual_depth}{' frozen' if cfg.freeze_visual else ''}, audio "
        f"{cfg.audio_segments}x{cfg.audio_len}x{cfg.n_mfcc}), {n_params / 1e6:.1f} M parameters "
        f"({n_train / 1e6:.1f} M trained), batch {batch}, amp {amp or 'off'}, on {device_name}; "
        f"median of {len(times)} steps after {args.warmup} warm-up "
        f"(steps: {', '.join(f'{t:.2f}' for t in times)} s); peak memory {peak:.1f} GiB; "
        f"load average {load_before:.1f} before / {os.getloadavg()[0]:.1f} after "
        "(other processes on the machine slow both).", "",
        *lines, "",
        f"Loader rate from {source}." if source else "", "",
        verdict, "",
        f"Command: `python bench/train.py {' '.join(argv if argv is not None else sys.argv[1:])}`".rstrip(),
        ""])
    print()
    print(text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(f"written to {out}")


if __name__ == "__main__":
    main()
