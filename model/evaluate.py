"""Deterministic evaluation: fixed snippet, centred frame window, centre crop, no flip.

    vaanet evaluate --run runs/demo-demo                 # its best.pt on its test split
    vaanet evaluate --checkpoint best.pt --data DIR --split 3

Writes a per-video predictions CSV (id, label, prediction, polarities, one probability per
class) and the metrics as JSON; the same checkpoint on the same data gives identical files.
The helpers here (opening data, choosing a split, the device and mixed precision, one pass
of predictions) are shared with the trainer.
"""
from __future__ import annotations

import contextlib
import csv
import json
import os
from pathlib import Path

import numpy as np
import torch

from model import checkpoint, distributed, metrics


# ---- data ------------------------------------------------------------------------------------

def open_data(path):
    """A ShardReader over a `vaanet preprocess` output folder, or a ValueError saying what is wrong."""
    from pipeline.reader import ShardReader
    path = Path(path)
    if not path.is_dir():
        raise ValueError(f"data folder not found: {path} (make one with `vaanet preprocess`)")
    if not (path / "index.json").is_file():
        raise ValueError(f"{path} is not a preprocessed dataset folder: no index.json "
                         "(expected the output of `vaanet preprocess --out DIR`)")
    try:
        reader = ShardReader(path)
    except (OSError, KeyError, ValueError) as e:
        raise ValueError(f"cannot read the shards in {path}: {e}") from None
    if not reader.ids:
        raise ValueError(f"{path} holds no successfully preprocessed videos (see failures.jsonl)")
    shards = sorted({reader.meta(i)["shard"] for i in reader.ids})
    missing = [s for s in shards if not (path / s).is_file()]
    if missing:
        raise ValueError(f"{path}: {len(missing)} of {len(shards)} shard files listed in index.json are "
                         f"missing ({', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''}); "
                         "run `vaanet preprocess` again with the same --out to complete them")
    return reader


def check_split(reader, split: str | None) -> str:
    """The split name to use: `split`, or the data's first one; unknown -> ValueError listing them."""
    available = list(reader.splits)
    if split is None:
        if not available:
            raise ValueError("the data defines no train/test split (splits.json is empty)")
        return available[0]
    if str(split) not in available:
        raise ValueError(f"split {split!r} is not in the data; available splits: "
                         f"{', '.join(available)}")
    return str(split)


def split_ids(reader, split: str, part: str) -> list[str]:
    ids = list(reader.split_ids(split, part))
    if not ids:
        raise ValueError(f"split {split!r} has no {part} videos")
    return ids


# ---- model -----------------------------------------------------------------------------------

def autocast(device, amp: str):
    """Mixed precision context: bf16 (CUDA or CPU) or fp16 (CUDA); "none" is full precision."""
    if amp == "none":
        return contextlib.nullcontext()
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[amp]
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for but CUDA is not available (use auto or cpu)")
    return torch.device(name)


# ---- one pass of predictions ----------------------------------------------------------------

class EvalSet:
    """Fixed, deterministic samples of `ids` with a loader that lives as long as the set (its
    workers persist across epochs). With several processes each one holds ids[rank::world]."""

    def __init__(self, reader, ids, model_cfg, batch_size=16, workers=0):
        from pipeline.loader import ClipDataset, make_loader
        self.ids = list(ids)
        self.positions = np.arange(distributed.rank(), len(self.ids), distributed.world_size())
        ds = ClipDataset(reader, [self.ids[i] for i in self.positions], model_cfg, train=False)
        self.loader = make_loader(ds, batch_size, train=False, workers=min(workers, len(ds)))


@torch.no_grad()
def predict(model, evalset: EvalSet, device, amp="none", criterion=None) -> dict:
    """Class probabilities for every id of `evalset`, in its order.

    Each process predicts its share and the shares are gathered, so every process returns the
    full, identically ordered result (no padded duplicates as a DistributedSampler would add).
    Returns dict(ids, labels [N], probs [N, C], loss (mean, when `criterion` is given)).
    """
    from pipeline.loader import to_device_batch
    was_training = model.training
    model.eval()
    positions, labels, probs, loss_sum = [], [], [], 0.0
    for batch in evalset.loader:
        b = to_device_batch(batch, device, train=False)
        with autocast(device, amp):
            logits = model(b["visual"], b["audio"]).logits.float()
        if criterion is not None:
            loss_sum += float(criterion(logits, b["label"])) * len(logits)
        probs.append(torch.softmax(logits, dim=1).cpu().numpy())
        labels.append(batch["label"].numpy())
        positions.append(evalset.positions[batch["index"].numpy()])
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
    path.parent.mkdir(parents=True, exist_ok=True)
    names = {1: "positive", 0: "negative"}
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "label", "prediction", "label_polarity", "predicted_polarity", "correct"]
                   + [f"p_{c}" for c in classes])
        for vid, label, p in zip(pred["ids"], pred["labels"], pred["probs"]):
            guess = int(p.argmax())
            w.writerow([vid, classes[label], classes[guess], names[polarity[label]],
                        names[polarity[guess]], int(guess == label)] + [f"{x:.6f}" for x in p])
    os.replace(tmp, path)
    return path


# ---- `vaanet evaluate` -----------------------------------------------------------------------

def evaluate(run=None, ckpt_path=None, data=None, split=None, part="test", which="best",
             device="auto", batch_size=16, workers=0, amp="none", out=None) -> dict:
    """Load a checkpoint (RUN_DIR/<which>.pt or `ckpt_path`), evaluate it on `part` of `split`
    of `data` (defaults: the run's own data and split) and write predictions + metrics.
    Returns dict(report, predictions (path), metrics (path), split, part)."""
    from model.config import ModelConfig
    from model.build import build_model
    if (run is None) == (ckpt_path is None):
        raise ValueError("give either a run folder (--run) or a checkpoint file (--checkpoint)")
    if run is not None:
        run = Path(run)
        if not run.is_dir():
            raise ValueError(f"run folder not found: {run}")
        ckpt_path = run / f"{which}.pt"
    ckpt = checkpoint.load(ckpt_path)
    run_cfg = ckpt.get("run_config", {})
    data = data if data is not None else run_cfg.get("data")
    if data is None:
        raise ValueError("the checkpoint does not name its data folder; pass --data")
    reader = open_data(data)
    checkpoint.check_compatible(ckpt, reader.classes)
    split = check_split(reader, split if split is not None else ckpt.get("split"))
    ids = split_ids(reader, split, part)

    dev = resolve_device(device)
    model_cfg = ModelConfig.from_dict(ckpt["model_config"])
    model = build_model(model_cfg)
    model.load_state_dict(ckpt["model"])
    model.to(dev)
    pred = predict(model, EvalSet(reader, ids, model_cfg, batch_size, workers), dev, amp)
    r = report(pred, reader.polarity)

    out = Path(out) if out is not None else Path(ckpt_path).parent
    stem = f"{Path(ckpt_path).stem}-split{split}-{part}"
    pred_path = write_predictions(out / f"predictions-{stem}.csv", pred, reader.classes, reader.polarity)
    metrics_path = out / f"eval-{stem}.json"
    metrics_path.write_text(json.dumps({"checkpoint": str(ckpt_path), "data": str(data), "split": split,
                                        "part": part, "epoch": ckpt.get("epoch"), **r}, indent=1) + "\n")
    reader.close()
    return {"report": r, "predictions": pred_path, "metrics": metrics_path, "split": split,
            "part": part, "classes": list(reader.classes)}
