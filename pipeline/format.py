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

Inside a shard, file attrs `format_version`, `codec` and `params` (JSON); one group per video
under /videos, named by the quoted id (no "/" inside), holding its frames in the shard's codec
(params.codec) and its MFCC:

    codec "raw":
    frames        uint8   [S, t, k, H, W, 3]  snippet-major: frames[s, i] is one contiguous read
    codec "jpeg" (pipeline/codec.py):
    jpeg          uint8   [nbytes]            one JPEG per frame, in [S, t, k] order
    jpeg_offsets  int64   [S*t*k + 1]         frame j is jpeg[offsets[j]:offsets[j + 1]]
    both:
    mfcc          float32 [T, n_mfcc]         the whole soundtrack (zeros when there is no audio)

Every array dataset carries attr `crc32`: zlib.crc32 of its bytes as written (C order), which
`vaanet inspect --verify` recomputes (outputs written before it have none and are not checked).
The video group has attrs `id`, `label`, `class`, `source`, `sha1`, `fps`, `duration`, `has_audio`, `info` (JSON).
The index's `frames_shape` is the decoded shape [S, t, k, H, W, 3] whatever the codec.

Versions: 2 added the codec (and `snippets` default 8); a version-1 output holds raw frames and
is read as codec "raw". A writer only appends to an output of its own version.
"""
from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import quote

from pipeline.params import FORMAT_VERSION, READABLE_VERSIONS

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
JPEG = "jpeg"
JPEG_OFFSETS = "jpeg_offsets"
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


class DamagedFile(ValueError):
    """index.json or params.json does not parse: one sentence naming the file and the remedy."""


def read_json(path) -> dict:
    """A small JSON file of an output; a truncated or invalid one raises DamagedFile."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DamagedFile(
            f"{path} is damaged ({type(e).__name__}: {e}); it cannot be repaired in place: run "
            "the same `vaanet preprocess` command with --overwrite to make the output again "
            "(or restore the file from a backup)") from None


CHECKSUM = "crc32"
ARRAYS = (FRAMES, JPEG, JPEG_OFFSETS, MFCC)


def checksum(array) -> int:
    """zlib.crc32 of an array's bytes in C order (the attr `crc32` of every stored array)."""
    import zlib

    import numpy as np
    return zlib.crc32(np.ascontiguousarray(array).data)


def checksum_problems(group) -> list[str]:
    """The arrays of a video group whose bytes no longer match their recorded checksum."""
    bad = []
    for name in ARRAYS:
        if name in group and CHECKSUM in group[name].attrs:
            if checksum(group[name][()]) != int(group[name].attrs[CHECKSUM]):
                bad.append(name)
    return bad


def frames_dataset(group):
    """The dataset holding a video's frames, whatever the codec (the one to check or size)."""
    return group[JPEG] if JPEG in group else group[FRAMES]


def stored_nbytes(group) -> int:
    """Bytes of a video's arrays as stored (the shard-size accounting of the writer)."""
    return sum(group[name].nbytes for name in (FRAMES, JPEG, JPEG_OFFSETS, MFCC) if name in group)


def check_version(found, where: str, write: bool = False):
    """A reader takes every version in READABLE_VERSIONS; a writer appends to its own only."""
    ok = found == FORMAT_VERSION if write else found in READABLE_VERSIONS
    if not ok:
        can = FORMAT_VERSION if write else " or ".join(map(str, READABLE_VERSIONS))
        raise ValueError(f"{where}: format version {found}, this vaanet "
                         f"{'writes' if write else 'reads'} version {can}; run `vaanet "
                         "preprocess --overwrite` (same options) to make it again")
