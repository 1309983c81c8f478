"""The training loop: HDF5 shards -> VAANet, one run of one split.

    cfg = run_config.resolve({"data": "data/processed/demo", "preset": "demo"})
    summary = train(cfg)

`train` reads as the algorithm: set_up (processes, device, seeds), open_split (data, validation
carve-out), build (model, loss, optimizer), resume, prepare (config.json, loaders), then per
epoch train_epoch, validate, select, save, log_epoch, and at the end final_test (the test split
with the best and the last model) and finish (the result files); `Run` holds the state they
share. Every check of user input raises run_config.RunError (a usage error) before the first
epoch; any other exception is a bug and keeps its traceback. Several processes (torchrun) share
the same code: each trains on its part of every batch (DistributedDataParallel), metrics are
summed over all of them, and only rank 0 writes files. Messages go through `logging`, progress
through tqdm; the command line prints the final table (`results_table`).

RUN_DIR receives: config.json (the resolved configuration), last.pt and best.pt (atomic),
metrics.jsonl (one JSON record per epoch, then one per final test), predictions-{best,last}-test.csv,
results.json and results.md (the final table), and TensorBoard events when tensorboard is installed.
"""
from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline import atomic
from trainer import checkpoint, distributed, run_config
from trainer.data import carve_validation, check_split, open_data, split_ids
from trainer.device import autocast, resolve_device, to_channels_last
from trainer.evaluate import EvalSet, predict, report, write_predictions
from trainer.metrics import format_report
from trainer.errors import DiskFullError, RunError, is_disk_full
from trainer.run_config import user_input

logger = logging.getLogger(__name__)
POSTFIX_EVERY = 20  # training steps between progress-bar updates of loss and accuracy (a host sync)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def model_config_for(cfg: run_config.RunConfig, classes: list[str]):
    """The ModelConfig of this run: the preset with the number of classes of the data, the config
    file's `model` overrides, then --attn and --freeze-visual."""
    from model.config import parse_attention, preset
    with user_input():  # --attn, --config's `model` block
        overrides = {"num_classes": len(classes), **cfg.model}
        if cfg.attn is not None:
            overrides["attention"] = parse_attention(cfg.attn)
        if cfg.freeze_visual is not None:
            overrides["freeze_visual"] = bool(cfg.freeze_visual)
        return preset(cfg.preset, **overrides)


def load_pretrained(model, cfg: run_config.RunConfig, log) -> None:
    """The weight files the user gave; a missing, unreadable or mismatching file is a RunError."""
    from model.weights import load_hara, load_image_backbone, load_torchvision
    loads = []
    if cfg.visual_weights:
        if not model.cfg.visual:
            raise RunError("--visual-weights given but the model has no visual stream")
        loads.append((load_hara, model.backbone, cfg.visual_weights, ()))
    if cfg.audio_weights:
        if not model.cfg.audio:
            raise RunError("--audio-weights given but the model has no audio stream")
        loads.append((load_torchvision, model.audio_backbone, cfg.audio_weights, ()))
    for kind, path, what in (("object", cfg.object_weights, "ImageNet"),
                             ("scene", cfg.scene_weights, "Places365")):
        if path:
            backbone = getattr(model, f"{kind}_backbone", None)
            if backbone is None:
                raise RunError(f"--{kind}-weights given but the model has no {kind} stream "
                               "(a DFAN preset with that feature kind is needed)")
            loads.append((load_image_backbone, backbone, path, (what,)))
    for load, backbone, path, extra in loads:
        if not Path(path).is_file():
            raise RunError(f"no such weight file: {path}")
        with user_input():  # the file's contents: unreadable, or not the network it is given for
            log(str(load(backbone, path, *extra)))


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
        # an append-only log (a crash loses at most its last line): appended, not rewritten
        # through pipeline/atomic.py; open() creates it with the umask's permissions
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
    """`_train`; a run that fails before it has saved a checkpoint leaves no folder of its own."""
    with unused_run_dir_discarded(cfg.out):
        return _train(cfg, quiet)


@contextlib.contextmanager
def unused_run_dir_discarded(out):
    """On a failure inside, remove the run folder `out` if this command created it and it holds
    only what setup wrote (discard_unused_run_dir); rank 0 alone touches files."""
    run_dir = Path(out).absolute()
    made = [d for d in (run_dir, *run_dir.parents) if not d.exists()]   # by this run, if any
    try:
        yield
    except BaseException:
        if made and distributed.rank() == 0:
            discard_unused_run_dir(run_dir, made)
        raise


# what setup writes into RUN_DIR before the first checkpoint: nothing worth keeping on its own
SETUP_ONLY = {"config.json", "metrics.jsonl", "tensorboard"}


def discard_unused_run_dir(run_dir: Path, made: list[Path]) -> None:
    """Remove a RUN_DIR this run created (`made`: it and the parents it created) when it holds
    only what setup wrote (a run that failed before its first checkpoint would otherwise leave
    a folder holding only config.json), then those parents left empty; a folder with anything
    else in it, or one that existed before, is left as it is."""
    import shutil
    try:
        if run_dir.is_dir() and {p.name for p in run_dir.iterdir()} <= SETUP_ONLY:
            shutil.rmtree(run_dir)
            for d in made[1:]:
                d.rmdir()   # OSError when not empty: stop there
    except OSError:   # the original error matters more
        pass


def _train(cfg: run_config.RunConfig, quiet: bool = False) -> dict:
    """Train one run on one split, then test its best and last models; returns the test results
    (also written to RUN_DIR). Messages go through logging (the caller configures it); `quiet`
    turns the progress bars off."""
    run = set_up(cfg, quiet)
    open_split(run)
    build(run)
    resume(run)
    prepare(run)
    for epoch in range(run.start_epoch, cfg.epochs):
        t0 = time.perf_counter()
        train_m, speed = train_epoch(run, epoch)
        val_r = validate(run)
        improved = select(run, epoch, val_r)
        save(run, epoch, improved)
        log_epoch(run, epoch, train_m, speed, val_r, time.perf_counter() - t0)
    results = final_test(run)
    finish(run, results)
    return results


@dataclass
class Run:
    """The state of one training run, filled in by the steps of `train` in their order."""
    cfg: run_config.RunConfig
    quiet: bool
    device: torch.device
    dist: distributed.DistInfo
    batch: int                      # per process: --batch-size / processes
    run_dir: Path
    # open_split: the data, the split's parts and what selects the best epoch
    reader: Any = None
    classes: list = field(default_factory=list)
    polarity: list = field(default_factory=list)
    split: str | None = None
    train_ids: list = field(default_factory=list)
    val_ids: list = field(default_factory=list)
    test_ids: list = field(default_factory=list)
    val_name: str = "val"
    selection: str = ""
    # build: the network, its loss and optimizer
    model_cfg: Any = None
    model: Any = None
    criterion: Any = None
    optimizer: Any = None
    scaler: Any = None
    # resume: where the epochs start and the best epoch so far
    start_epoch: int = 0
    best: dict = field(default_factory=lambda: {"metric": "accuracy, then loss, on the selection set",
                                                "value": None, "epoch": None})
    resumed: list = field(default_factory=list)  # config.json's record of every --resume
    # prepare: the model as trained (DDP or bare), loaders, meters
    ddp_model: Any = None
    train_loader: Any = None
    val_set: Any = None
    meter: Any = None
    mlog: Any = None

    def log(self, msg: str) -> None:
        if self.dist.is_main:
            logger.info(msg)


def per_process_batch(batch_size: int, processes: int) -> int:
    """--batch-size is the global batch, split evenly over the processes (GPUs). One that does
    not divide is refused with the nearest batch sizes that do, rather than silently training
    with a smaller global batch (30 instead of 32 on 3 GPUs)."""
    if batch_size % processes == 0:
        return batch_size // processes
    lower = batch_size // processes * processes
    options = [str(v) for v in (lower, lower + processes) if v >= processes]
    raise RunError(f"--batch-size {batch_size} is the global batch and must divide evenly over "
                   f"{processes} processes (--gpus {processes}): use --batch-size "
                   f"{' or '.join(options)}")


# ---- set-up: processes, device, seeds; the data; the model; resume; loaders --------------------

def set_up(cfg: run_config.RunConfig, quiet: bool) -> Run:
    device = resolve_device(cfg.device)
    if cfg.amp == "fp16" and device.type != "cuda":
        raise RunError("--amp fp16 needs CUDA; on CPU use --amp bf16 or none")
    dist = distributed.setup(device.type)
    if dist.enabled and device.type == "cuda":
        device = torch.device("cuda", dist.local_rank)
    if device.type == "cuda":
        # fixed input shapes: let cuDNN pick its fastest convolutions; the validation and test
        # passes turn it off again (trainer/device.py: cudnn_autotune) to stay deterministic
        torch.backends.cudnn.benchmark = True
    batch = per_process_batch(cfg.batch_size, dist.world_size)
    seed_everything(cfg.seed)  # the same on every process: identical initial weights
    return Run(cfg=cfg, quiet=quiet, device=device, dist=dist, batch=batch, run_dir=Path(cfg.out))


def open_split(run: Run) -> None:
    """The data, the split, a seeded validation carve-out of its training part, its test part."""
    cfg = run.cfg
    run.reader = reader = open_data(cfg.data)
    run.classes, run.polarity = list(reader.classes), list(reader.polarity)
    run.split = check_split(reader, cfg.split)
    run.train_ids = split_ids(reader, run.split, "train")
    run.test_ids = split_ids(reader, run.split, "test")
    if cfg.select_on_test:  # the authors' code did this; optimistic, so named in every output
        run.val_ids, run.val_name = run.test_ids, "test[selection-on-test]"
        run.selection = "the TEST split (--select-on-test: selection on the test set, optimistic)"
    else:
        run.train_ids, run.val_ids = carve_validation(reader, run.train_ids, cfg.val_fraction, cfg.seed)
        run.val_name = "val"
        run.selection = (f"validation ({len(run.val_ids)} videos held out of the training split)"
                         if run.val_ids else "last epoch (no validation set)")
    warn_empty_classes(run)
    run.log(f"run folder {cfg.out}")
    run.log(f"data {cfg.data}: split {run.split}: {len(run.train_ids)} train, {len(run.val_ids)} "
            f"{run.val_name}, {len(run.test_ids)} test videos; classes {', '.join(run.classes)}")


def warn_empty_classes(run: Run) -> None:
    """A class without a training video cannot be learnt: say which, before epoch 1."""
    present = {int(run.reader.meta(vid)["label"]) for vid in run.train_ids}
    missing = [c for i, c in enumerate(run.classes) if i not in present]
    if missing and run.dist.is_main:
        logger.warning("no training video for class%s %s in split %s: the model cannot learn %s",
                       "es" if len(missing) > 1 else "", ", ".join(missing), run.split,
                       "them" if len(missing) > 1 else "it")


def fitting_preset(run: Run) -> str | None:
    """'are S x K frames at P px: use --preset NAME' when the shards were made for another
    preset than the run's (its segments, frames and crop as the short side); else None."""
    from model.config import preset
    p = run.reader.params
    family = "dfan" if run.cfg.preset.startswith("dfan") else ""
    for name in PRESET_ORDER:
        m = preset(name)
        if (name.startswith("dfan") == bool(family) and name != run.cfg.preset
                and (m.segments, m.frames, m.crop) == (p.segments, p.frames, p.short_side)):
            return (f"are {p.segments} x {p.frames} frames at {p.short_side} px: use --preset "
                    f"{name}")
    return None


PRESET_ORDER = ("demo", "paper", "official", "dfan-demo", "dfan")


def steps_per_epoch(n: int, batch: int, world_size: int) -> tuple[int, bool]:
    """(optimisation steps per epoch, drop_last) for n training videos. A last batch of one
    sample would break BatchNorm in train mode, so it is dropped."""
    per_process_n = math.ceil(n / world_size)
    drop_last = per_process_n % batch == 1
    return (per_process_n // batch if drop_last else math.ceil(per_process_n / batch)), drop_last


def build(run: Run) -> None:
    """The network (with any pretrained weights), its loss, the optimizer and the fp16 scaler."""
    from model.build import build_model
    from model.losses import build_loss
    cfg, device = run.cfg, run.device
    run.model_cfg = model_config_for(cfg, run.classes)
    run.model = build_model(run.model_cfg)
    load_pretrained(run.model, cfg, run.log)
    to_channels_last(run.model.to(device), device, cfg.channels_last)  # NDHWC 3D convs on CUDA
    run.criterion = build_loss(cfg.loss, run.polarity, cfg.lam).to(device)
    params = [p for p in run.model.parameters() if p.requires_grad]
    run.optimizer = torch.optim.Adam(params, lr=cfg.lr)  # the paper: Adam, no weight decay, no schedule
    run.scaler = torch.amp.GradScaler(device.type, enabled=cfg.amp == "fp16")
    run.log(f"model: preset {cfg.preset}, attention {run.model_cfg.attention_spec}, streams "
            f"{run.model_cfg.streams}, {sum(p.numel() for p in params) / 1e6:.2f}M trainable parameters; "
            f"loss {cfg.loss}" + (f" (lambda {cfg.lam})" if cfg.loss == "pcce" else "") + f"; device {device}"
            + (f" x {run.dist.world_size} processes" if run.dist.enabled else "") + f"; amp {cfg.amp}")


def resume(run: Run) -> None:
    """Continue from RUN_DIR/last.pt with --resume (weights, optimizer, random states, best
    epoch); without it, refuse a folder that holds a run already."""
    last = run.run_dir / "last.pt"
    if not run.cfg.resume:
        if last.exists():
            raise RunError(f"{run.run_dir} already holds a run (last.pt): pass --resume to continue it "
                           "or choose another --out")
        return
    ckpt = checkpoint.load(last)
    check_same_run(run, ckpt)
    checkpoint.check_compatible(ckpt, run.classes, run.model_cfg.to_dict(), what="checkpoint in RUN_DIR")
    if ckpt.get("split") != run.split:
        raise RunError(f"cannot resume: the run trained on split {ckpt.get('split')!r}, "
                       f"now split {run.split!r}")
    run.model.load_state_dict(ckpt["model"])
    run.optimizer.load_state_dict(ckpt["optimizer"])
    if ckpt.get("scaler"):
        run.scaler.load_state_dict(ckpt["scaler"])
    run.start_epoch, run.best = int(ckpt["epoch"]), ckpt["best"]
    checkpoint.set_rng_state(ckpt["rng"])
    # killed between saving last.pt and linking best.pt: last.pt is the best, link it now
    best_pt = run.run_dir / "best.pt"
    with distributed.agreement(run.device):  # rank 0 writes: every process learns how it went
        if run.dist.is_main and run.best.get("epoch") == run.start_epoch and not (
                best_pt.exists() and os.path.samefile(best_pt, last)):
            with disk_full_says(run, best_pt, run.start_epoch):
                checkpoint.duplicate(last, best_pt)
    run.log(f"resumed from {last} after epoch {run.start_epoch}")


def check_same_run(run: Run, ckpt: dict) -> None:
    """--resume continues the same run: an option that changes what it computes (lr, loss,
    batch size, seed, validation fraction, model, data, ...) is refused with every difference
    listed; the ones that may change (more epochs, workers, device, amp, channels-last) are
    recorded in config.json under `resumed`."""
    saved, cfg = ckpt.get("run_config") or {}, run.cfg
    diffs = run_config.resume_differences(saved, cfg) if saved else {}
    if diffs:
        listed = "; ".join(f"{k}: run {old!r}, now {new!r}" for k, (old, new) in diffs.items())
        raise RunError(f"cannot resume {run.run_dir}: these options differ from the run's "
                       f"({listed}). --resume continues the same run: give the same options "
                       f"(or --config {run.run_dir / 'config.json'}), changing only --epochs, "
                       "--workers, --device, --amp or --channels-last; or start a new run in "
                       "another --out")
    done = int(ckpt["epoch"])
    if cfg.epochs < done:
        raise RunError(f"cannot resume {run.run_dir} with --epochs {cfg.epochs}: it has trained "
                       f"{done} epochs already; give --epochs {done} or more")
    try:  # the record of earlier resumes, carried on
        run.resumed = list(json.loads((run.run_dir / "config.json").read_text()).get("resumed") or [])
    except (OSError, ValueError, AttributeError):
        run.resumed = []
    run.resumed.append({"after_epoch": done, "changed": run_config.resume_changes(saved, cfg)})


def prepare(run: Run) -> None:
    """The training samples (the last check of user input: the shards must hold what the model
    needs), RUN_DIR/config.json, DistributedDataParallel, the loaders: train shuffled per epoch
    (seeded), validation deterministic."""
    from trainer.loader import ClipDataset, DataWaitMeter, make_loader
    cfg = run.cfg
    if cfg.decode == "device":
        from trainer.device_decode import check_device_decode
        check_device_decode(run.device)
    try:
        with user_input():
            train_ds = ClipDataset(run.reader, run.train_ids, run.model_cfg, train=True, seed=cfg.seed,
                                   decode=cfg.decode)
    except RunError as e:
        hint = fitting_preset(run)
        raise RunError(f"{e}; or, as these shards {hint}" if hint else str(e)) from None
    steps, drop_last = steps_per_epoch(len(train_ds), run.batch, run.dist.world_size)
    if steps == 0:
        raise RunError(f"the training part of split {run.split} holds {len(train_ds)} video(s): "
                       f"not one optimisation step with --batch-size {cfg.batch_size} (a last batch "
                       "of one video is dropped, BatchNorm needs two); add training videos, lower "
                       "--batch-size or --val-fraction")
    with distributed.agreement(run.device):  # rank 0 writes: every process learns how it went
        if run.dist.is_main:
            with disk_full_says(run, run.run_dir / "config.json", run.start_epoch):
                run_config.save(cfg, run.run_dir, resolved_model=run.model_cfg.to_dict(), resumed=run.resumed)
    run.ddp_model = distributed.wrap(run.model, run.dist, run.device, sync_bn=cfg.sync_bn)
    run.train_loader = make_loader(train_ds, run.batch, train=True, workers=cfg.workers, seed=cfg.seed,
                                   distributed=run.dist.enabled, drop_last=drop_last)
    run.val_set = (EvalSet(run.reader, run.val_ids, run.model_cfg, run.batch, cfg.workers, cfg.decode)
                   if run.val_ids else None)
    run.meter = DataWaitMeter()
    run.mlog = MetricsLog(run.run_dir, enabled=run.dist.is_main)


# ---- one epoch: train, validate, select, save, log ----------------------------------------------

class EpochTally:
    """Loss sum and correct count of one epoch, kept as tensors on the device: adding a step's
    values queues device work and waits for nothing, so the host can queue the next step (a
    `.item()` per step would stall it until the device catches up). `totals()` converts once."""

    def __init__(self, device):
        self.loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        self.correct = torch.zeros((), dtype=torch.int64, device=device)
        self.seen = 0  # batch sizes are known on the host

    def add(self, loss: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> None:
        n = len(labels)
        self.loss_sum += loss.detach().double() * n
        self.correct += (logits.detach().argmax(1) == labels).sum()
        self.seen += n

    def totals(self) -> tuple[float, int, int]:
        """(loss sum, correct, seen) as Python numbers: one host-device sync."""
        return float(self.loss_sum), int(self.correct), self.seen


def train_step(run: Run, b: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimizer step on a device batch; returns (loss, logits), still on the device."""
    with autocast(run.device, run.cfg.amp):
        logits = run.ddp_model(b["visual"], b["audio"]).logits
    loss = run.criterion(logits.float(), b["label"])
    run.optimizer.zero_grad(set_to_none=True)
    run.scaler.scale(loss).backward()
    run.scaler.step(run.optimizer)  # fp16 only: the scaler's inf check syncs once per step
    run.scaler.update()
    return loss, logits


def train_epoch(run: Run, epoch: int) -> tuple[dict, dict]:
    """One pass over the training part; returns its metrics (summed over processes) and speed.

    Step times are measured at the loader boundary (trainer/loader.py: DataWaitMeter): from one
    `next()` on the loader to the following one. Without a per-step sync the host runs ahead of
    the device by the steps it can queue, so a step's time is the host's; over the epoch they add
    up to its time but for the device's tail after the last batch, which `totals()` then waits for.
    """
    from tqdm import tqdm

    from trainer.batch_slots import release_batch
    from trainer.loader import to_device_batch
    cfg, device = run.cfg, run.device
    run.ddp_model.train()
    run.train_loader.sampler.set_epoch(epoch)
    flips = torch.Generator(device=device).manual_seed(cfg.seed * 1_000_003 + epoch)
    run.meter.reset()
    tally = EpochTally(device)
    bar = tqdm(run.meter.wrap(run.train_loader), total=len(run.train_loader), leave=False,
               disable=not run.dist.is_main or run.quiet, desc=f"epoch {epoch + 1}/{cfg.epochs}",
               dynamic_ncols=True)
    for step, batch in enumerate(bar, 1):
        b = to_device_batch(batch, device, train=True, generator=flips, channels_last=cfg.channels_last)
        loss, logits = train_step(run, b)
        tally.add(loss, logits, b["label"])
        # the step is queued (CUDA: its inputs were copied from pinned memory) or done (CPU):
        # the loader worker may refill this batch's shared buffers
        release_batch(batch)
        if not bar.disable and step % POSTFIX_EVERY == 0:  # a host sync: only every N steps
            loss_sum, correct, seen = tally.totals()
            bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{100 * correct / seen:.1f}%")
    wait = run.meter.summary()
    loss_sum, correct, seen = tally.totals()
    loss_sum, correct, seen, wait_s, step_s, samples = distributed.all_reduce_sum(
        [loss_sum, correct, seen, wait["wait_s"], wait["step_s"], wait["samples"]], device)
    train_m = {"loss": loss_sum / max(seen, 1), "accuracy": correct / max(seen, 1), "n": int(seen)}
    speed = {"data_wait_fraction": wait_s / max(step_s, 1e-12),
             "samples_per_s": samples / max(step_s / run.dist.world_size, 1e-12),
             "first_batch_wait_s": wait["first_wait_s"]}
    return train_m, speed


def validate(run: Run) -> dict | None:
    """Metrics of the model on the selection set (None without one).

    Evaluation uses the bare model (no DDP collectives), so processes may hold uneven shares of
    the videos. Each process updated its BatchNorm statistics on its own batches: rank 0's, the
    ones saved, are used everywhere so that the scores belong to the checkpoint."""
    if run.dist.enabled:
        for buffer in run.model.buffers():
            torch.distributed.broadcast(buffer, 0)
    if run.val_set is None:
        return None
    return report(predict(run.model, run.val_set, run.device, run.cfg.amp, run.criterion), run.polarity)


def select(run: Run, epoch: int, val_r: dict | None) -> bool:
    """Model selection: the best accuracy, ties broken by the lower loss; without a validation
    set, the last epoch. Returns whether this epoch is the new best."""
    key = (val_r["accuracy"], -val_r["loss"]) if val_r else (epoch,)
    improved = run.best["value"] is None or tuple(key) > tuple(run.best["value"])
    if improved:
        run.best = {**run.best, "value": list(key), "epoch": epoch + 1}
    return improved


@contextlib.contextmanager
def disk_full_says(run: Run, path: Path, epochs_done: int):
    """A full disk while writing `path` becomes DiskFullError (exit status 3): one sentence
    naming the file, what is intact and how to go on, instead of a traceback."""
    try:
        yield
    except (OSError, RuntimeError) as e:
        if not is_disk_full(e):
            raise
        last = run.run_dir / "last.pt"
        intact = (f"{last} from epoch {epochs_done} is intact: free space, then run the same "
                  "command with --resume to continue from it" if epochs_done and last.exists()
                  else "no checkpoint was saved yet: free space, then run the same command again")
        raise DiskFullError(f"no space left on the device while writing {path} ({e}); {intact}") from None


def save(run: Run, epoch: int, improved: bool) -> None:
    """RUN_DIR/last.pt (rank 0), and best.pt as a link to it when this epoch is the best; every
    process learns whether it was written (a failure stops them all, distributed.agreement)."""
    with distributed.agreement(run.device):
        if run.dist.is_main:
            with disk_full_says(run, run.run_dir / "last.pt", epoch):
                save_checkpoints(run, epoch, improved)


def save_checkpoints(run: Run, epoch: int, improved: bool) -> None:
    """last.pt, and best.pt as a hard link of it when this epoch is the best (rank 0)."""
    checkpoint.save(run.run_dir / "last.pt", model=run.model.state_dict(),
                    optimizer=run.optimizer.state_dict(),
                    scaler=run.scaler.state_dict() if run.scaler.is_enabled() else None,
                    epoch=epoch + 1, rng=checkpoint.rng_state(), model_config=run.model_cfg.to_dict(),
                    run_config=run.cfg.to_dict(), classes=run.classes, polarity=run.polarity,
                    split=run.split, best=run.best, data_params=run.reader.params.to_dict())
    if improved:
        checkpoint.duplicate(run.run_dir / "last.pt", run.run_dir / "best.pt")


def log_epoch(run: Run, epoch: int, train_m: dict, speed: dict, val_r: dict | None, epoch_s: float) -> None:
    """One metrics.jsonl record (and TensorBoard scalars) and one log line."""
    cfg = run.cfg
    record = {"epoch": epoch + 1, "train": train_m, "val": val_r and brief(val_r), "val_set": run.val_name,
              "speed": speed, "best_epoch": run.best["epoch"], "lr": cfg.lr, "epoch_s": epoch_s}
    if val_r:
        record["val_detail"] = {k: val_r[k] for k in ("per_class_accuracy", "confusion")}
    with distributed.agreement(run.device), disk_full_says(run, run.mlog.path, epoch + 1):
        run.mlog.write(record)  # rank 0 only (MetricsLog.enabled)
    run.log(f"epoch {epoch + 1:3d}/{cfg.epochs}  train loss {train_m['loss']:.3f} "
            f"acc {100 * train_m['accuracy']:5.1f}%"
            + (f"  {run.val_name} loss {val_r['loss']:.3f} acc {100 * val_r['accuracy']:5.1f}%" if val_r else "")
            + f"  best epoch {run.best['epoch']}  data wait {100 * speed['data_wait_fraction']:.1f}%"
            f"  {speed['samples_per_s']:.1f} samples/s  {epoch_s:.1f}s")


# ---- the final test and the result files --------------------------------------------------------

def final_test(run: Run) -> dict:
    """The test split with the last and the best model: metrics.jsonl records, predictions CSVs."""
    test_set = EvalSet(run.reader, run.test_ids, run.model_cfg, run.batch, run.cfg.workers, run.cfg.decode)
    results = {"split": run.split, "classes": run.classes, "selection": run.selection}
    for which in ("last", "best"):
        # read on the CPU: only the weights go to the device, not the optimizer state
        ckpt = checkpoint.load(run.run_dir / f"{which}.pt", map_location="cpu")
        if ckpt["epoch"] != results.get("last_epoch"):  # else best is last: same predictions
            run.model.load_state_dict(ckpt["model"])
            pred = predict(run.model, test_set, run.device, run.cfg.amp, run.criterion)
        results[f"{which}_epoch"] = ckpt["epoch"]
        r = report(pred, run.polarity)
        results[f"test_{which}"] = r
        with distributed.agreement(run.device):  # rank 0 writes: every process learns how it went
            if run.dist.is_main:
                with disk_full_says(run, run.run_dir / f"predictions-{which}-test.csv", run.cfg.epochs):
                    write_predictions(run.run_dir / f"predictions-{which}-test.csv", pred, run.classes,
                                      run.polarity)
                with disk_full_says(run, run.mlog.path, run.cfg.epochs):
                    run.mlog.write({"final": f"test with {which} model (epoch {ckpt['epoch']})",
                                    "split": run.split, **r})
    run.mlog.close()
    run.reader.close()
    return results


def finish(run: Run, results: dict) -> None:
    """results.json and results.md (rank 0), and a one-line summary in the log."""
    with distributed.agreement(run.device):  # rank 0 writes: every process learns how it went
        if run.dist.is_main:
            with disk_full_says(run, run.run_dir / "results.json", run.cfg.epochs):
                write_results(run.run_dir, results)
            from trainer.report import try_write_report
            try_write_report(run.run_dir)  # plots and report.html
    run.log(f"test split {run.split}: best model (epoch {results['best_epoch']}) accuracy "
            f"{100 * results['test_best']['accuracy']:.1f}%, last model (epoch {results['last_epoch']}) "
            f"{100 * results['test_last']['accuracy']:.1f}%; {run.run_dir / 'results.md'}")


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
    atomic.write_json(run_dir / "results.json", results)
    atomic.write_text(run_dir / "results.md", results_table(results) + "\n")
