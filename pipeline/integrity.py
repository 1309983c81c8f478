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
        return read_error(e)
    return None


def entry_problem(f, rec: dict, codec: str, videos=None) -> str | None:
    """Metadata of the video `rec` (an index.json record) in the open shard `f`. `videos`: the
    shard's `video_groups(f)`, listed once per shard (every HDF5 lookup costs, so links and
    attributes are listed once per group rather than looked up one by one)."""
    try:
        group, names = videos if videos is not None else video_groups(f)
        name = fmt.video_key(rec["id"]).split("/", 1)[1]
        if name not in names:
            return "its group is missing"
        g = group[name]
        attrs = set(g.attrs.keys())
        missing = [a for a in GROUP_ATTRS if a not in attrs]
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
        present = set(g.keys())
        summed = []
        for dname, (dtype, shape) in want.items():
            if dname not in present:
                return f"dataset {dname} is missing"
            ds = g[dname]
            if ds.dtype != dtype:
                return f"dataset {dname} has dtype {ds.dtype}, expected {np.dtype(dtype)}"
            if shape is not None and ds.shape != shape:
                return f"dataset {dname} has shape {list(ds.shape)}, expected {list(shape)}"
            if dname == fmt.JPEG and ds.ndim != 1:
                return f"dataset {dname} has shape {list(ds.shape)}, expected one dimension"
            if fmt.CHECKSUM in ds.attrs.keys():
                summed.append(dname)
        # outputs made before checksums have none; a video with some but not all lost one
        if summed and len(summed) != len(want):
            lost = sorted(set(want) - set(summed))
            return f"the {fmt.CHECKSUM} attribute of {', '.join(lost)} is missing"
    except Exception as e:
        return read_error(e)
    return None


def video_groups(f):
    """(the shard's /videos group, the set of its members' names), for `entry_problem`."""
    group = f[fmt.VIDEOS_GROUP]
    return group, set(group.keys())


def data_problem(f, rec: dict) -> str | None:
    """Reads the video's arrays: the first whose bytes differ from their recorded crc32."""
    try:
        bad = fmt.checksum_problems(f[fmt.video_key(rec["id"])])
    except Exception as e:
        return read_error(e)
    return f"{bad[0]} does not match its checksum" if bad else None


def read_error(e: Exception) -> str:
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"cannot be read ({type(e).__name__}{': ' + text if text else ''})"
