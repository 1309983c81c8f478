"""Train/test splits, stored with the shards in splits.json.

A split set maps split names to {"train": [ids], "test": [ids]}:
  - alternating (e6, demo): one split named "alternating"; inside each class, the videos
    sorted by id go train, test, train, test, ... (the rule of a public Ekman-6 follow-up, NOT
    the paper's 819/818 split, which is not shipped with the dataset: pass it as --split-file);
  - random (ve8, folder): splits "0".."9"; run r draws, per class, round(2/3 n) training
    videos with numpy's default_rng([seed, r]) from the id-sorted list (stratified, seeded);
  - a split file (--split-file) replaces either rule.

Split file formats (ids are "class/name"; a file extension on the name is ignored):
  text  one line per video: `train anger/clip01` or `anger/clip01 test` (one split, "given";
        '#' starts a comment; the part may come first or last, so names may contain spaces)
  JSON  {"train": [ids], "test": [ids]} (one split, "given") or
        {"splits": {"0": {"train": [...], "test": [...]}, ...}} (as in splits.json)
"""
from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import numpy as np

from pipeline.datasets import VIDEO_EXTENSIONS

PARTS = ("train", "test")


def alternating(videos) -> dict[str, dict[str, list[str]]]:
    train, test = [], []
    for cls in sorted({v.cls for v in videos}):
        ids = sorted(v.id for v in videos if v.cls == cls)
        train += ids[0::2]
        test += ids[1::2]
    return {"alternating": {"train": sorted(train), "test": sorted(test)}}


def stratified(videos, runs: int = 10, train_fraction: float = 2 / 3, seed: int = 0):
    out = {}
    classes = sorted({v.cls for v in videos})
    for r in range(runs):
        rng = np.random.default_rng([seed, r])
        train, test = [], []
        for cls in classes:
            ids = sorted(v.id for v in videos if v.cls == cls)
            n_train = int(round(train_fraction * len(ids)))
            chosen = set(rng.permutation(len(ids))[:n_train].tolist())
            train += [i for j, i in enumerate(ids) if j in chosen]
            test += [i for j, i in enumerate(ids) if j not in chosen]
        out[str(r)] = {"train": sorted(train), "test": sorted(test)}
    return out


def _normalise_id(raw: str) -> str:
    raw = raw.strip().replace("\\", "/")
    stem, dot, ext = raw.rpartition(".")
    return stem if dot and "." + ext.lower() in VIDEO_EXTENSIONS else raw


def read_split_file(path, videos) -> dict[str, dict[str, list[str]]]:
    """Read a split file (formats in the module docstring) and check it against the videos."""
    path = Path(path)
    text = path.read_text()
    if path.suffix.lower() == ".json":
        d = json.loads(text)
        raw = d["splits"] if "splits" in d else {"given": d}
    else:
        parts = {"train": [], "test": []}
        for n, line in enumerate(text.splitlines(), 1):
            # a comment starts the line or follows white space, so names may hold '#'
            line = re.split(r"(?:^|\s)#", line, maxsplit=1)[0].strip()
            if not line:
                continue
            words = line.split(None, 1)       # any white space separates, tabs too
            head_last = line.rsplit(None, 1)
            if len(words) == 2 and words[0].lower() in PARTS:
                parts[words[0].lower()].append(words[1].strip())
            elif len(head_last) == 2 and head_last[1].lower() in PARTS:
                parts[head_last[1].lower()].append(head_last[0].strip())
            else:
                raise ValueError(f"{path}:{n}: expected 'train|test CLASS/NAME', got {line!r}")
        raw = {"given": parts}
    known = {v.id for v in videos}
    by_lower = {v.id.lower(): v.id for v in videos}
    splits, unknown = {}, set()
    for name, sp in raw.items():
        if set(sp) - set(PARTS):
            raise ValueError(f"{path}: split {name!r} has parts {sorted(sp)}, expected train/test")
        out = {}
        for part in PARTS:
            ids = [_normalise_id(i) for i in sp.get(part, [])]
            # class folders match ignoring case, but an exact id wins (anger/Clip vs anger/clip)
            ids = [i if i in known else by_lower.get(i.lower(), i) for i in ids]
            unknown |= set(ids) - known
            out[part] = sorted(set(ids) & known)
        both = set(out["train"]) & set(out["test"])
        if both:
            raise ValueError(f"{path}: split {name!r} puts {len(both)} videos in train and test, "
                             f"e.g. {sorted(both)[0]}")
        splits[str(name)] = out
    matched = set().union(*(set(s["train"]) | set(s["test"]) for s in splits.values()))
    if not matched:
        raise ValueError(f"{path}: none of its ids matches a video under the root (ids are "
                         f"CLASS/NAME, e.g. {sorted(known)[0]!r})")
    if unknown:
        warnings.warn(f"{path}: {len(unknown)} ids are not under the root, e.g. "
                      f"{sorted(unknown)[0]!r}")
    missing = known - matched
    if missing:
        warnings.warn(f"{path}: {len(missing)} videos are in no split, e.g. {sorted(missing)[0]!r}")
    return splits


def make_splits(videos, dataset, split_file=None, seed=None) -> dict:
    """The splits.json object for a dataset: from the split file, else the definition's rule."""
    if split_file:
        return {"kind": "file", "source": str(split_file),
                "splits": read_split_file(split_file, videos)}
    rule = dataset.split or {"kind": "random"}
    if rule.get("kind") == "alternating":
        return {"kind": "alternating", "splits": alternating(videos)}
    runs = int(rule.get("runs", 10))
    frac = float(rule.get("train_fraction", 2 / 3))
    seed = int(rule.get("seed", 0) if seed is None else seed)
    return {"kind": "random", "runs": runs, "train_fraction": frac, "seed": seed,
            "splits": stratified(videos, runs, frac, seed)}


def membership(splits: dict[str, dict[str, list[str]]]) -> dict[str, dict[str, str]]:
    """id -> {split name: "train" | "test"} (the per-video view stored in the index)."""
    out: dict[str, dict[str, str]] = {}
    for name, sp in splits.items():
        for part in PARTS:
            for i in sp[part]:
                out.setdefault(i, {})[name] = part
    return out
