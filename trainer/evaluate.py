"""Deterministic evaluation: fixed snippet, centred frame window, centre crop, no flip.

    vaanet evaluate --run runs/demo-demo                 # its best.pt on its test split
    vaanet evaluate --checkpoint best.pt --data DIR --split 3

Writes a per-video predictions CSV (id, label, prediction, polarities, one probability per
class) and the metrics as JSON; the same checkpoint on the same data gives identical files.
One pass of predictions (`EvalSet`, `predict`, `report`) is shared with the trainer's validation
and final test.
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch

from pipeline import atomic
from trainer import checkpoint, distributed, metrics
from trainer.data import check_split, open_data, split_ids
from trainer.device import (autocast, cudnn_autotune, default_workers_here, is_channels_last,
                            resolve_amp, resolve_device, to_channels_last)
from trainer.errors import RunError
from trainer.run_config import user_input


# ---- one pass of predictions ----------------------------------------------------------------

class EvalSet:
    """Fixed, deterministic samples of `ids` with a loader that lives as long as the set (its
    workers run only while it is iterated: validation reuses the cores of the idle training
    workers). With several processes each one holds ids[rank::world]."""

    def __init__(self, reader, ids, model_cfg, batch_size=16, workers=0, decode="workers"):
        from trainer.loader import ClipDataset, make_loader
        self.ids = list(ids)
        self.positions = np.arange(distributed.rank(), len(self.ids), distributed.world_size())
        with user_input():  # the shards must hold what the model needs (frames, crop, MFCC)
            ds = ClipDataset(reader, [self.ids[i] for i in self.positions], model_cfg, train=False,
                             decode=decode)
        self.loader = make_loader(ds, batch_size, train=False, workers=min(workers, len(ds)))


@torch.no_grad()
@cudnn_autotune(False)
def predict(model, evalset: EvalSet, device, amp="none", criterion=None) -> dict:
    """Class probabilities for every id of `evalset`, in its order.

    Each process predicts its share and the shares are gathered, so every process returns the
    full, identically ordered result (no padded duplicates as a DistributedSampler would add).
    Returns dict(ids, labels [N], probs [N, C], loss (mean, when `criterion` is given)).
    Deterministic: cuDNN's autotuner is off during the pass (see device.cudnn_autotune).
    """
    from trainer.batch_slots import release_batch
    from trainer.loader import to_device_batch
    was_training = model.training
    model.eval()
    channels_last = is_channels_last(model)
    positions, labels, probs, loss_sum = [], [], [], 0.0
    for batch in evalset.loader:
        b = to_device_batch(batch, device, train=False, channels_last=channels_last)
        with autocast(device, amp):
            logits = model(b["visual"], b["audio"]).logits.float()
        if criterion is not None:
            loss_sum += float(criterion(logits, b["label"])) * len(logits)
        probs.append(torch.softmax(logits, dim=1).cpu().numpy())
        labels.append(batch["label"].numpy())
        positions.append(evalset.positions[batch["index"].numpy()])
        release_batch(batch)   # everything kept above is a copy
    model.train(was_training)
    gathered = distributed.all_gather_object((positions, labels, probs, loss_sum))
    pos = np.concatenate([p for g in gathered for p in g[0]])
    order = np.argsort(pos, kind="stable")
    labels = np.concatenate([x for g in gathered for x in g[1]])[order]
    probs = np.concatenate([x for g in gathered for x in g[2]])[order]
    return {"ids": evalset.ids, "labels": labels, "probs": probs,
            "loss": sum(g[3] for g in gathered) / max(len(evalset.ids), 1)}


def report(pred: dict, polarity: list[int]) -> dict:
    """Metrics (see model/metrics.py) of a `predict` result, plus its mean loss."""
    r = metrics.classification_report(pred["labels"], pred["probs"].argmax(1), polarity)
    r["loss"] = float(pred["loss"])
    return r


def write_predictions(path, pred: dict, classes: list[str], polarity: list[int]) -> Path:
    """Per-video CSV: id, label, prediction, label_polarity, predicted_polarity, correct,
    then p_<class> for every class (6 decimals)."""
    path = Path(path)
    names = {1: "positive", 0: "negative"}
    with atomic.open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "label", "prediction", "label_polarity", "predicted_polarity", "correct"]
                   + [f"p_{c}" for c in classes])
        for vid, label, p in zip(pred["ids"], pred["labels"], pred["probs"]):
            guess = int(p.argmax())
            w.writerow([vid, classes[label], classes[guess], names[polarity[label]],
                        names[polarity[guess]], int(guess == label)] + [f"{x:.6f}" for x in p])
    return path


# ---- `vaanet evaluate` -----------------------------------------------------------------------

def check_profile(ckpt: dict, params, data) -> None:
    """An imported checkpoint of the authors' code (`vaanet import-checkpoint` records
    `imported_from`) was trained on their features: shards of another preprocessing profile
    would feed it numbers on another scale without any error. Raise RunError then."""
    have = getattr(params, "profile", "paper")
    if ckpt.get("imported_from") and have != "official":
        raise RunError(f"this checkpoint was imported from the authors' code "
                         f"({ckpt['imported_from']}) and needs shards preprocessed with "
                         f"`vaanet preprocess --profile official`; {data} has profile {have}")


def evaluate(run=None, ckpt_path=None, data=None, split=None, part="test", which="best",
             device="auto", batch_size=32, workers=None, amp="auto", out=None,
             channels_last=False) -> dict:
    """Load a checkpoint (RUN_DIR/<which>.pt or `ckpt_path`), evaluate it on `part` of `split`
    of `data` (defaults: the run's own data and split) and write predictions + metrics.
    `workers` None: trainer.device.default_workers for this machine; `amp` "auto": bf16 on CUDA.
    Returns dict(report, predictions (path), metrics (path), split, part)."""
    from model.config import ModelConfig
    from model.build import build_model
    ckpt_path = checkpoint.locate(ckpt_path, run, which)
    ckpt = checkpoint.load(ckpt_path)
    run_cfg = ckpt.get("run_config", {})
    data = data if data is not None else run_cfg.get("data")
    if data is None:
        raise RunError("the checkpoint does not name its data folder; pass --data")
    reader = open_data(data)
    check_profile(ckpt, reader.params, data)
    checkpoint.check_geometry(ckpt, reader.params, data)
    checkpoint.check_compatible(ckpt, reader.classes)
    split = check_split(reader, split if split is not None else ckpt.get("split"))
    ids = split_ids(reader, split, part)

    dev = resolve_device(device)
    with user_input():  # a checkpoint of another vaanet version may hold unknown fields
        model_cfg = ModelConfig.from_dict(ckpt["model_config"])
    model = build_model(model_cfg)
    model.load_state_dict(ckpt["model"])
    model.to(dev)
    to_channels_last(model, dev, channels_last)
    workers = default_workers_here() if workers is None else workers
    amp = resolve_amp(amp, dev)
    pred = predict(model, EvalSet(reader, ids, model_cfg, batch_size, workers), dev, amp)
    r = report(pred, reader.polarity)

    out = Path(out) if out is not None else Path(ckpt_path).parent
    stem = f"{Path(ckpt_path).stem}-split{split}-{part}"
    pred_path = write_predictions(out / f"predictions-{stem}.csv", pred, reader.classes, reader.polarity)
    metrics_path = out / f"eval-{stem}.json"
    atomic.write_json(metrics_path, {"checkpoint": str(ckpt_path), "data": str(data), "split": split,
                                     "part": part, "epoch": ckpt.get("epoch"), **r})
    reader.close()
    return {"report": r, "predictions": pred_path, "metrics": metrics_path, "split": split,
            "part": part, "classes": list(reader.classes)}
