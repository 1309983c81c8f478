"""The on-disk format of a preprocessed dataset: ONE definition shared by writer and reader.

A preprocessed directory holds:

    params.json          {"format_version", "dataset", "root", "params": PreprocessParams.to_dict()}
    splits.json          {"kind", "seed", "splits": {name: {"train": [ids], "test": [ids]}}}
    index.json           one record per video (see `video_record`), the only file a reader needs
                         to list videos; rewritten atomically (pipeline/atomic.py)
    failures.jsonl       one JSON line per failed video: id, path, reason, log_tail (ffmpeg output)
    shard-00000.h5 ...   HDF5 files, many videos each, about params.shard_size_mb each
    shard-00003.h5.partial   the shard being written (never listed in index.json)
    journal.jsonl        fsync'ed records of the videos already safely inside the .partial shard

Inside a shard, file attrs `format_version` and `params` (JSON); one group per video under
/videos, named by the quoted id (no "/" inside), with two contiguous datasets:

    frames  uint8   [S, t, k, H, W, 3]  snippet-major: frames[s] is one contiguous read
    mfcc    float32 [T, n_mfcc]         the whole soundtrack (zeros when there is no audio)

and attrs `id`, `label`, `class`, `source`, `sha1`, `fps`, `duration`, `has_audio`, `info` (JSON).
"""
from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import quote

from pipeline.params import FORMAT_VERSION

# ---- file names ----
PARAMS = "params.json"
SPLITS = "splits.json"
INDEX = "index.json"
FAILURES = "failures.jsonl"
JOURNAL = "journal.jsonl"
SHARD_GLOB = "shard-*.h5"
PARTIAL_SUFFIX = ".partial"
# a .partial found after a crash is renamed to this while its videos are copied out
SALVAGE_SUFFIX = ".salvage"

# ---- inside a shard ----
VIDEOS_GROUP = "videos"
FRAMES = "frames"
MFCC = "mfcc"
FRAMES_DTYPE = "uint8"
MFCC_DTYPE = "float32"

# ---- hash of the source file recorded per video ----
HASH_NAME = "sha1"   # full-file SHA-1 computed by the worker while it decodes

# status of a video in the index
OK, FAILED = "ok", "failed"


def shard_name(i: int) -> str:
    return f"shard-{i:05d}.h5"


def shard_number(name: str) -> int:
    return int(Path(name).name.split(".")[0].split("-")[1])


def video_key(video_id: str) -> str:
    """HDF5 path of a video's group: ids are "class/name", and "/" would nest groups."""
    return f"{VIDEOS_GROUP}/{quote(video_id, safe='')}"


def video_record(*, id, label, cls, polarity, source, status, shard=None, frames_shape=None,
                 mfcc_shape=None, fps=None, duration=None, has_audio=None, sha1=None,
                 splits=None, reason=None, notes=None) -> dict:
    """One entry of index.json. Keys are the contract of `ShardReader.meta`."""
    return {"id": id, "label": label, "class": cls, "polarity": polarity,
            "splits": splits or {}, "status": status, "shard": shard,
            "frames_shape": list(frames_shape) if frames_shape is not None else None,
            "mfcc_shape": list(mfcc_shape) if mfcc_shape is not None else None,
            "fps": fps, "duration": duration, "has_audio": has_audio,
            "source": source, HASH_NAME: sha1, "reason": reason, "notes": notes or []}


# ---- small files: written through pipeline/atomic.py (temp file, fsync, rename, umask) ----

def read_jsonl(path: Path) -> list[dict]:
    """Read a JSON-lines file; a torn last line (crash mid-append) is ignored."""
    out = []
    if not Path(path).exists():
        return out
    for line in Path(path).read_text().splitlines():
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return out


def check_version(found, where: str):
    if found != FORMAT_VERSION:
        raise ValueError(f"{where}: format version {found}, this vaanet reads version "
                         f"{FORMAT_VERSION}; preprocess again with --overwrite")
