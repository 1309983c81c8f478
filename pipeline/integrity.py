"""Is a listed video's stored entry intact? Two depths, shared by the writer and the trainer:

- `entry_problem` (cheap: HDF5 metadata only): the video's group, its arrays with the dtypes and
  shapes index.json records, the group's attributes, the checksums' attributes. `vaanet train`,
  `evaluate` and `ablate` run it over every video before any run folder exists, so damaged
  metadata is one sentence instead of a DataLoader worker's traceback mid-epoch.
- `data_problem` (reads every byte of the video's arrays): their crc32 against the recorded one.
  A rerun of `vaanet preprocess` runs both over the videos it keeps (`--no-verify`: the first
  only) and decodes again every video with a problem.

Both return a short reason (str) or None; an exception while reading is a reason too.
"""
from __future__ import annotations

import json

import numpy as np

from pipeline import format as fmt

# written by every vaanet version into each video group (pipeline/writer.py)
GROUP_ATTRS = ("id", "label", "class", "source", "sha1", "fps", "duration", "has_audio", "info")


def shard_problem(f, format_version: int) -> str | None:
    """The shard file's own attributes (a damaged one is reported for all its videos)."""
    try:
        if int(f.attrs["format_version"]) != int(format_version):
            return f"format version {f.attrs['format_version']}, index.json says {format_version}"
        if not isinstance(json.loads(f.attrs["params"]), dict):
            return "attribute params is not a JSON object"
        if fmt.VIDEOS_GROUP not in f:
            return f"group /{fmt.VIDEOS_GROUP} is missing"
    except Exception as e:
        return _reason(e)
    return None


def entry_problem(f, rec: dict, codec: str) -> str | None:
    """Metadata of the video `rec` (an index.json record) in the open shard `f`."""
    try:
        key = fmt.video_key(rec["id"])
        if key not in f:
            return "its group is missing"
        g = f[key]
        missing = [a for a in GROUP_ATTRS if a not in g.attrs]
        if missing:
            return f"attribute {', '.join(missing)} missing"
        if str(g.attrs["id"]) != rec["id"]:
            return f"attribute id says {g.attrs['id']!r}"
        S, t, k = rec["frames_shape"][:3]
        if codec == "jpeg":
            want = {fmt.JPEG: (np.uint8, None), fmt.JPEG_OFFSETS: (np.int64, (S * t * k + 1,))}
        else:
            want = {fmt.FRAMES: (np.uint8, tuple(rec["frames_shape"]))}
        want[fmt.MFCC] = (np.float32, tuple(rec["mfcc_shape"]))
        for name, (dtype, shape) in want.items():
            if name not in g:
                return f"dataset {name} is missing"
            ds = g[name]
            if ds.dtype != dtype:
                return f"dataset {name} has dtype {ds.dtype}, expected {np.dtype(dtype)}"
            if shape is not None and ds.shape != shape:
                return f"dataset {name} has shape {list(ds.shape)}, expected {list(shape)}"
            if name == fmt.JPEG and ds.ndim != 1:
                return f"dataset {name} has shape {list(ds.shape)}, expected one dimension"
        # outputs made before checksums have none; a video with some but not all lost one
        summed = [n for n in want if fmt.CHECKSUM in g[n].attrs]
        if summed and len(summed) != len(want):
            lost = sorted(set(want) - set(summed))
            return f"the {fmt.CHECKSUM} attribute of {', '.join(lost)} is missing"
    except Exception as e:
        return _reason(e)
    return None


def data_problem(f, rec: dict) -> str | None:
    """Reads the video's arrays: the first whose bytes differ from their recorded crc32."""
    try:
        bad = fmt.checksum_problems(f[fmt.video_key(rec["id"])])
    except Exception as e:
        return _reason(e)
    return f"{bad[0]} does not match its checksum" if bad else None


def _reason(e: Exception) -> str:
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"cannot be read ({type(e).__name__}{': ' + text if text else ''})"
