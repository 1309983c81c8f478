"""The training loop: HDF5 shards -> VAANet, one run of one split.

    cfg = run_config.resolve({"data": "data/processed/demo", "preset": "demo"})
    summary = train(cfg)

Reads top to bottom: processes and seeds, data and the validation carve-out, model and
optimizer, resume, the epoch loop (train, validate, log, checkpoint), then the test split
evaluated with the best and the last model. Several processes (torchrun) share the same code:
each trains on its part of every batch (DistributedDataParallel), metrics are summed over all of
them, and only rank 0 writes files.

RUN_DIR receives: config.json (the resolved configuration), last.pt and best.pt (atomic),
metrics.jsonl (one JSON record per epoch, then one per final test), predictions-{best,last}-test.csv,
results.json and results.md (the final table), and TensorBoard events when tensorboard is installed.
"""
from __future__ import annotations

import json
import math
import os
import random
import time
from pathlib import Path

import numpy as np
import torch

from trainer import checkpoint, distributed, run_config
from trainer.data import carve_validation, check_split, open_data, split_ids
from trainer.device import autocast, resolve_device, to_channels_last
from trainer.evaluate import EvalSet, predict, report, write_predictions
from trainer.metrics import format_report


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def model_config_for(cfg: run_config.RunConfig, classes: list[str]):
    """The ModelConfig of this run: the preset with the number of classes of the data, the config
    file's `model` overrides, then --attn and --freeze-visual."""
    from model.config import parse_attention, preset
    overrides = {"num_classes": len(classes), **cfg.model}
    if cfg.attn is not None:
        overrides["attention"] = parse_attention(cfg.attn)
    if cfg.freeze_visual is not None:
        overrides["freeze_visual"] = bool(cfg.freeze_visual)
    return preset(cfg.preset, **overrides)


def load_pretrained(model, cfg: run_config.RunConfig, log) -> None:
    from model.weights import load_hara, load_image_backbone, load_torchvision
    if cfg.visual_weights:
        if not model.cfg.visual:
            raise ValueError("--visual-weights given but the model has no visual stream")
        log(str(load_hara(model.backbone, cfg.visual_weights)))
    if cfg.audio_weights:
        if not model.cfg.audio:
            raise ValueError("--audio-weights given but the model has no audio stream")
        log(str(load_torchvision(model.audio_backbone, cfg.audio_weights)))
    for kind, path, what in (("object", cfg.object_weights, "ImageNet"),
                             ("scene", cfg.scene_weights, "Places365")):
        if path:
            backbone = getattr(model, f"{kind}_backbone", None)
            if backbone is None:
                raise ValueError(f"--{kind}-weights given but the model has no {kind} stream "
                                 "(a DFAN preset with that feature kind is needed)")
            log(str(load_image_backbone(backbone, path, what)))


class MetricsLog:
    """metrics.jsonl (always) and TensorBoard scalars (when tensorboard is installed)."""

    def __init__(self, run_dir: Path, enabled: bool):
        self.path = run_dir / "metrics.jsonl"
        self.enabled = enabled
        self.tb = None
        if enabled:
            try:
                from torch.utils.tensorboard import SummaryWriter
                self.tb = SummaryWriter(str(run_dir / "tensorboard"))
            except ImportError:  # optional: pip install tensorboard
                pass

    def write(self, record: dict) -> None:
        if not self.enabled:
            return
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        if self.tb is not None and "epoch" in record:
            for group in ("train", "val", "speed"):
                for k, v in record.get(group, {}).items():
                    if isinstance(v, (int, float)) and v is not None and math.isfinite(v):
                        self.tb.add_scalar(f"{group}/{k}", v, record["epoch"])
            self.tb.flush()

    def close(self):
        if self.tb is not None:
            self.tb.close()


def brief(r: dict) -> dict:
    """The scalar part of a metrics report (for logs)."""
    keys = ("loss", "accuracy", "mean_class_accuracy", "polarity_accuracy", "macro_f1", "n")
    return {k: r[k] for k in keys}


def train(cfg: run_config.RunConfig, quiet: bool = False) -> dict:
    from tqdm import tqdm

    from model.losses import build_loss
    from model.build import build_model
    from trainer.loader import ClipDataset, DataWaitMeter, make_loader, to_device_batch

    # ---- processes, device, seeds ---------------------------------------------------------------
    with run_config.user_errors():
        device = resolve_device(cfg.device)
        if cfg.amp == "fp16" and device.type != "cuda":
            raise ValueError("--amp fp16 needs CUDA; on CPU use --amp bf16 or none")
    dist = distributed.setup(device.type)
    if dist.enabled and device.type == "cuda":
        device = torch.device("cuda", dist.local_rank)
    main = dist.is_main
    log = (lambda msg: tqdm.write(msg)) if main and not quiet else (lambda msg: None)
    seed_everything(cfg.seed)  # the same on every process: identical initial weights

    # everything the user gave (data, split, options, checkpoint) is checked before training starts
    with run_config.user_errors():
        # ---- data: the split, a seeded validation carve-out, the test part ---------------------------
        reader = open_data(cfg.data)
        classes, polarity = list(reader.classes), list(reader.polarity)
        split = check_split(reader, cfg.split)
        train_ids = split_ids(reader, split, "train")
        test_ids = split_ids(reader, split, "test")
        if cfg.select_on_test:  # the authors' code did this; optimistic, so named in every output
            val_ids, val_name = test_ids, "test[selection-on-test]"
            selection = "the TEST split (--select-on-test: selection on the test set, optimistic)"
        else:
            train_ids, val_ids = carve_validation(reader, train_ids, cfg.val_fraction, cfg.seed)
            val_name = "val"
            selection = (f"validation ({len(val_ids)} videos held out of the training split)" if val_ids
                         else "last epoch (no validation set)")
        log(f"run folder {cfg.out}")
        log(f"data {cfg.data}: split {split}: {len(train_ids)} train, {len(val_ids)} {val_name}, "
            f"{len(test_ids)} test videos; classes {', '.join(classes)}")

        # ---- model, loss, optimizer -------------------------------------------------------------------
        model_cfg = model_config_for(cfg, classes)
        model = build_model(model_cfg)
        load_pretrained(model, cfg, log)
        to_channels_last(model.to(device), device, cfg.channels_last)  # NDHWC 3D convs on CUDA
        criterion = build_loss(cfg.loss, polarity, cfg.lam).to(device)
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.Adam(params, lr=cfg.lr)  # the paper: Adam, no weight decay, no schedule
        scaler = torch.amp.GradScaler(device.type, enabled=cfg.amp == "fp16")
        log(f"model: preset {cfg.preset}, attention {model_cfg.attention_spec}, streams {model_cfg.streams}, "
            f"{sum(p.numel() for p in params) / 1e6:.2f}M trainable parameters; loss {cfg.loss}"
            + (f" (lambda {cfg.lam})" if cfg.loss == "pcce" else "") + f"; device {device}"
            + (f" x {dist.world_size} processes" if dist.enabled else "") + f"; amp {cfg.amp}")

        # ---- resume from RUN_DIR/last.pt -------------------------------------------------------------
        run_dir = Path(cfg.out)
        best = {"metric": "accuracy, then loss, on the selection set", "value": None, "epoch": None}
        start_epoch = 0
        if cfg.resume:
            ckpt = checkpoint.load(run_dir / "last.pt")
            checkpoint.check_compatible(ckpt, classes, model_cfg.to_dict(), what="checkpoint in RUN_DIR")
            if ckpt.get("split") != split:
                raise ValueError(f"cannot resume: the run trained on split {ckpt.get('split')!r}, "
                                 f"now split {split!r}")
            model.load_state_dict(ckpt["model"])
            optimizer.load_state_dict(ckpt["optimizer"])
            if ckpt.get("scaler"):
                scaler.load_state_dict(ckpt["scaler"])
            start_epoch, best = int(ckpt["epoch"]), ckpt["best"]
            checkpoint.set_rng_state(ckpt["rng"])
            # killed between saving last.pt and linking best.pt: last.pt is the best, link it now
            best_pt = run_dir / "best.pt"
            if main and best.get("epoch") == start_epoch and not (
                    best_pt.exists() and os.path.samefile(best_pt, run_dir / "last.pt")):
                checkpoint.duplicate(run_dir / "last.pt", best_pt)
            log(f"resumed from {run_dir / 'last.pt'} after epoch {start_epoch}")
        elif (run_dir / "last.pt").exists():
            raise ValueError(f"{run_dir} already holds a run (last.pt): pass --resume to continue it "
                             "or choose another --out")
        # the samples: checks that the shards hold what the model needs (frames, crop, MFCC)
        train_ds = ClipDataset(reader, train_ids, model_cfg, train=True, seed=cfg.seed)
    if main:
        run_config.save(cfg, run_dir, resolved_model=model_cfg.to_dict())
    distributed.barrier()
    ddp_model = distributed.wrap(model, dist, device)

    # ---- loaders: train shuffled per epoch (seeded), val/test deterministic ----------------------
    per_process_batch = max(1, cfg.batch_size // dist.world_size)  # --batch-size is the global batch
    per_process_n = math.ceil(len(train_ds) / dist.world_size)
    # a last batch of one sample would break BatchNorm in train mode: drop it
    train_loader = make_loader(train_ds, per_process_batch, train=True, workers=cfg.workers, seed=cfg.seed,
                               distributed=dist.enabled, drop_last=per_process_n % per_process_batch == 1)
    val_set = EvalSet(reader, val_ids, model_cfg, per_process_batch, cfg.workers) if val_ids else None
    meter = DataWaitMeter()
    mlog = MetricsLog(run_dir, enabled=main)

    def save(name, epoch):
        checkpoint.save(run_dir / name, model=model.state_dict(), optimizer=optimizer.state_dict(),
                        scaler=scaler.state_dict() if scaler.is_enabled() else None, epoch=epoch,
                        rng=checkpoint.rng_state(), model_config=model_cfg.to_dict(),
                        run_config=cfg.to_dict(), classes=classes, polarity=polarity, split=split,
                        best=best)

    # ---- the epoch loop --------------------------------------------------------------------------
    for epoch in range(start_epoch, cfg.epochs):
        t0 = time.perf_counter()
        ddp_model.train()
        train_loader.sampler.set_epoch(epoch)
        flips = torch.Generator(device=device).manual_seed(cfg.seed * 1_000_003 + epoch)
        meter.reset()
        loss_sum, correct, seen = 0.0, 0, 0
        bar = tqdm(meter.wrap(train_loader), total=len(train_loader), leave=False, disable=not main or quiet,
                   desc=f"epoch {epoch + 1}/{cfg.epochs}", dynamic_ncols=True)
        for batch in bar:
            b = to_device_batch(batch, device, train=True, generator=flips, channels_last=cfg.channels_last)
            with autocast(device, cfg.amp):
                logits = ddp_model(b["visual"], b["audio"]).logits
            loss = criterion(logits.float(), b["label"])
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            n = len(b["label"])
            loss_sum += loss.item() * n  # .item() synchronises: the meter's step time is complete
            correct += int((logits.argmax(1) == b["label"]).sum())
            seen += n
            bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{100 * correct / seen:.1f}%")
        wait = meter.summary()
        loss_sum, correct, seen, wait_s, step_s, samples = distributed.all_reduce_sum(
            [loss_sum, correct, seen, wait["wait_s"], wait["step_s"], wait["samples"]], device)
        train_m = {"loss": loss_sum / max(seen, 1), "accuracy": correct / max(seen, 1), "n": int(seen)}
        speed = {"data_wait_fraction": wait_s / max(step_s, 1e-12),
                 "samples_per_s": samples / max(step_s / dist.world_size, 1e-12),
                 "first_batch_wait_s": wait["first_wait_s"]}

        # validation: model selection on accuracy, ties broken by the lower loss; evaluation uses
        # the bare model (no DDP collectives), so processes may hold uneven shares of the videos.
        # Each process updated its BatchNorm statistics on its own batches: rank 0's, the ones
        # saved, are used everywhere so that the scores belong to the checkpoint
        if dist.enabled:
            for buffer in model.buffers():
                torch.distributed.broadcast(buffer, 0)
        val_r = report(predict(model, val_set, device, cfg.amp, criterion), polarity) if val_set else None
        key = (val_r["accuracy"], -val_r["loss"]) if val_r else (epoch,)
        improved = best["value"] is None or tuple(key) > tuple(best["value"])
        if improved:
            best = {**best, "value": list(key), "epoch": epoch + 1}
        if main:
            save("last.pt", epoch + 1)
            if improved:
                checkpoint.duplicate(run_dir / "last.pt", run_dir / "best.pt")
        distributed.barrier()

        record = {"epoch": epoch + 1, "train": train_m, "val": val_r and brief(val_r), "val_set": val_name,
                  "speed": speed, "best_epoch": best["epoch"], "lr": cfg.lr,
                  "epoch_s": time.perf_counter() - t0}
        if val_r:
            record["val_detail"] = {k: val_r[k] for k in ("per_class_accuracy", "confusion")}
        mlog.write(record)
        log(f"epoch {epoch + 1:3d}/{cfg.epochs}  train loss {train_m['loss']:.3f} "
            f"acc {100 * train_m['accuracy']:5.1f}%"
            + (f"  {val_name} loss {val_r['loss']:.3f} acc {100 * val_r['accuracy']:5.1f}%" if val_r else "")
            + f"  best epoch {best['epoch']}  data wait {100 * speed['data_wait_fraction']:.1f}%"
            f"  {speed['samples_per_s']:.1f} samples/s  {record['epoch_s']:.1f}s")

    # ---- test split with the best and the last model ---------------------------------------------
    test_set = EvalSet(reader, test_ids, model_cfg, per_process_batch, cfg.workers)
    results = {"split": split, "classes": classes, "selection": selection}
    for which in ("last", "best"):
        ckpt = checkpoint.load(run_dir / f"{which}.pt", map_location=device)
        if ckpt["epoch"] != results.get("last_epoch"):  # else best is last: same predictions
            model.load_state_dict(ckpt["model"])
            pred = predict(model, test_set, device, cfg.amp, criterion)
        results[f"{which}_epoch"] = ckpt["epoch"]
        r = report(pred, polarity)
        results[f"test_{which}"] = r
        if main:
            write_predictions(run_dir / f"predictions-{which}-test.csv", pred, classes, polarity)
            mlog.write({"final": f"test with {which} model (epoch {ckpt['epoch']})", "split": split, **r})
    mlog.close()
    reader.close()

    if main:
        write_results(run_dir, results)
        if not quiet:
            print(results_table(results))
            print(f"\nrun folder: {run_dir} (checkpoints, metrics.jsonl, predictions, results.md); "
                  f"vaanet evaluate --run {run_dir}")
    return results


def results_table(results: dict) -> str:
    """Markdown: per-class test accuracy of the best and last models, then the summary metrics."""
    classes = results["classes"]
    sel = results["selection"]
    lines = [f"Test split {results['split']!r}: best model = epoch {results['best_epoch']} "
             f"(selected on {sel}), last model = epoch {results['last_epoch']}", "",
             "| model | " + " | ".join(classes) + " | accuracy | mean class acc | polarity acc | macro-F1 |",
             "|---" * (len(classes) + 5) + "|"]
    for which in ("best", "last"):
        r = results[f"test_{which}"]
        cells = ["-" if a is None else f"{100 * a:.1f}" for a in r["per_class_accuracy"]]
        lines.append(f"| {which} | " + " | ".join(cells) + f" | {100 * r['accuracy']:.1f} | "
                     f"{100 * r['mean_class_accuracy']:.1f} | {100 * r['polarity_accuracy']:.1f} | "
                     f"{100 * r['macro_f1']:.1f} |")
    lines += ["", format_report(results["test_best"], classes, "Best model on the test split:")]
    return "\n".join(lines)


def write_results(run_dir: Path, results: dict) -> None:
    (run_dir / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    (run_dir / "results.md").write_text(results_table(results) + "\n")
