"""`vaanet inspect DIR`: what a preprocessed directory holds; --verify: does it read back."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np

from pipeline import format as fmt


def load_index(root) -> dict:
    root = Path(root)
    path = root / fmt.INDEX
    if not path.exists():
        raise FileNotFoundError(f"no {fmt.INDEX} in {root}: not a preprocessed directory "
                                "(make one with `vaanet preprocess`)")
    index = fmt.read_json(path)
    fmt.check_version(index.get("format_version"), str(path))
    return index


def records(root) -> list[dict]:
    """One dict per video (ok and failed), as in index.json: the --json output."""
    return load_index(root)["videos"]


def _size(root: Path) -> tuple[int, int]:
    shards = list(root.glob(fmt.SHARD_GLOB))
    return len(shards), sum(p.stat().st_size for p in root.iterdir() if p.is_file())


def summary(root) -> str:
    root = Path(root)
    index = load_index(root)
    videos = index["videos"]
    classes, splits = index["classes"], index["splits"]
    ok = [v for v in videos if v["status"] == fmt.OK]
    failed = [v for v in videos if v["status"] == fmt.FAILED]
    n_shards, size = _size(root)
    lines = [f"{root}: dataset {index['dataset']}, format version {index['format_version']}",
             f"videos: {len(videos)} ({len(ok)} ok, {len(failed)} failed); "
             f"{sum(not v['has_audio'] for v in ok)} ok videos without audio (zero MFCC)",
             f"size on disk: {size / 1e6:.1f} MB in {n_shards} shards"
             + (f" ({size / len(ok) / 1e6:.2f} MB per video)" if ok else "")]
    # per class: ok / failed, and train/test of the first split
    first = splits[0] if splits else None
    head = f"  {'label':>5}  {'class':<16}{'polarity':<10}{'ok':>6}{'failed':>8}"
    if first is not None:
        head += f"{'train':>8}{'test':>7}   (split {first})"
    lines += ["per class:", head]
    for label, cls in enumerate(classes):
        mine = [v for v in videos if v["label"] == label]
        good = [v for v in mine if v["status"] == fmt.OK]
        polarity = "positive" if index["polarity"][label] else "negative"
        row = (f"  {label:>5}  {cls:<16}{polarity:<10}"
               f"{len(good):>6}{len(mine) - len(good):>8}")
        if first is not None:
            parts = Counter(v["splits"].get(first) for v in good)
            row += f"{parts['train']:>8}{parts['test']:>7}"
        lines.append(row)
    if splits:
        lines.append("splits (ok videos, train/test): " + ", ".join(
            f"{s}: {sum(v['splits'].get(s) == 'train' for v in ok)}/"
            f"{sum(v['splits'].get(s) == 'test' for v in ok)}" for s in splits))
    if failed:
        lines.append(f"failures ({len(failed)}; ffmpeg's last lines in {root / fmt.FAILURES}):")
        for reason, n in Counter(v["reason"] for v in failed).most_common():
            examples = [v["id"] for v in failed if v["reason"] == reason]
            lines.append(f"  {n} x {reason}: {', '.join(examples[:5])}"
                         + (" ..." if len(examples) > 5 else ""))
    state = index.get("run")
    if state is not None and not state.get("complete", True):
        lines.append(f"unfinished: {max(0, state['expected'] - len(videos))} of "
                     f"{state['expected']} videos not done yet (the preprocess run did not finish; "
                     "run the same `vaanet preprocess` command to complete it)")
    elif state is None:
        lines.append("completion: not recorded (made by an older vaanet); complete if every "
                     "listed shard is present")
    shards = sorted({v["shard"] for v in ok})
    missing = [s for s in shards if not (root / s).is_file()]
    if missing:
        lines.append(f"missing shards: {len(missing)} of {len(shards)} listed in {fmt.INDEX} "
                     f"({', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''}): "
                     f"{sum(v['shard'] in missing for v in ok)} videos unreadable; run the same "
                     "`vaanet preprocess` command to decode them again")
    pending = fmt.read_jsonl(root / fmt.JOURNAL)
    if pending or list(root.glob("*" + fmt.PARTIAL_SUFFIX)):
        lines.append(f"unfinished run: {len(pending)} videos in a partial shard, not listed yet "
                     "(run the same `vaanet preprocess` command to complete it)")
    lines.append("parameters: " + ", ".join(f"{k}={v}" for k, v in index["params"].items()))
    return "\n".join(lines)


def verify(root, progress: bool = False) -> list[str]:
    """Read every sample back and recompute every array's checksum; return the problems found
    (empty: all good)."""
    import h5py
    from tqdm import tqdm
    from pipeline.reader import ShardReader
    root = Path(root)
    problems = []
    with ShardReader(root) as r:
        p = r.params
        want = [r.records[i]["shard"] for i in r.ids]
        on_disk = {q.name for q in root.glob(fmt.SHARD_GLOB)}
        for name in sorted(set(want) - on_disk):
            problems.append(f"{name}: listed in the index, missing on disk")
        for name in sorted(on_disk - set(want)):
            problems.append(f"{name}: on disk, not in the index")
        for name in sorted(set(want) & on_disk):
            try:
                with h5py.File(root / name, "r") as f:
                    if int(f.attrs["format_version"]) != r.format_version:
                        problems.append(f"{name}: format version {f.attrs['format_version']}")
                    if json.loads(f.attrs["params"]) != p.to_dict():
                        problems.append(f"{name}: parameters differ from index.json")
            except Exception as e:
                problems.append(f"{name}: cannot be opened: {e}")
        # the metadata checks train/evaluate/ablate run (shapes and dtypes: _check says them)
        entry = {vid: why for _, vid, why in r.damaged_entries()
                 if " has shape " not in why and " has dtype " not in why}
        for vid in tqdm(r.ids, unit="video", desc="verify", disable=not progress):
            m = r.meta(vid)
            why = entry.get(vid)
            if why:
                problems.append(f"{vid}: its entry in {m['shard']} is damaged: {why}")
                if why.endswith(" is missing") or why.startswith("cannot be read"):
                    continue   # nothing more reads
            try:   # the stored bytes first: damage there explains any decoding error after it
                damaged = fmt.checksum_problems(r._group(vid))
            except Exception as e:
                problems.append(f"{vid}: cannot be read from {m['shard']}: {type(e).__name__}: {e}")
                continue
            problems += [f"{vid}: {name} does not match its checksum in {m['shard']}: the "
                         "stored data is damaged" for name in damaged]
            try:
                frames, mfcc = r.frames(vid), r.mfcc(vid)
            except Exception as e:
                if not damaged:   # else the checksum line says why
                    problems.append(f"{vid}: cannot be read: {type(e).__name__}: {e}")
                continue
            problems += [f"{vid}: {msg}" for msg in _check(frames, mfcc, m, p)]
    return problems


def _check(frames, mfcc, m, p) -> list[str]:
    bad = []
    if frames.dtype != np.uint8:
        bad.append(f"frames dtype {frames.dtype}, expected uint8")
    if list(frames.shape) != m["frames_shape"]:
        bad.append(f"frames shape {list(frames.shape)}, index says {m['frames_shape']}")
    if frames.ndim != 6 or tuple(frames.shape[:3]) != (p.snippets, p.segments, p.frames) \
            or frames.shape[5] != 3:
        bad.append(f"frames shape {list(frames.shape)}, expected "
                   f"[{p.snippets}, {p.segments}, {p.frames}, H, W, 3]")
    elif min(frames.shape[3:5]) != p.short_side or max(frames.shape[3:5]) > p.max_long_side:
        bad.append(f"frame size {frames.shape[3]}x{frames.shape[4]}, expected short side "
                   f"{p.short_side} and long side <= {p.max_long_side}")
    if mfcc.dtype != np.float32:
        bad.append(f"mfcc dtype {mfcc.dtype}, expected float32")
    if list(mfcc.shape) != m["mfcc_shape"] or mfcc.ndim != 2 or mfcc.shape[1] != p.n_mfcc:
        bad.append(f"mfcc shape {list(mfcc.shape)}, index says {m['mfcc_shape']}, "
                   f"n_mfcc {p.n_mfcc}")
    if not np.isfinite(mfcc).all():
        bad.append("mfcc has non-finite values")
    if not m["has_audio"] and np.any(mfcc):
        bad.append("no audio but non-zero mfcc")
    return bad
