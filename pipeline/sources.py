"""Rerun check of the source videos behind an existing output: which listed videos' files
changed (size or mtime differ, then confirmed by the SHA-1 the index stores) and which are gone.

A changed video is decoded again (its index entry replaced); a gone one is only reported, and
removed from the index with `vaanet preprocess --prune-missing`."""
from __future__ import annotations

import os
from pathlib import Path

from pipeline import format as fmt


def stat_of(path) -> dict:
    """The index's record of a source file's state: size in bytes and mtime in ns."""
    st = os.stat(path)
    return {"source_size": st.st_size, "source_mtime_ns": st.st_mtime_ns}


def check(records: dict[str, dict], videos, sha1) -> tuple[list[str], list[str], list[str]]:
    """(changed, gone, restat): ids of ok videos whose source differs from its SHA-1, ids listed
    (ok or failed) whose source is no longer there, and ids whose file was only touched (same
    SHA-1; their size/mtime in `records` are updated in place). `sha1` hashes a path."""
    path_of = {v.id: Path(v.path) for v in videos}
    changed, gone, restat = [], [], []
    for vid, rec in sorted(records.items()):
        path = path_of.get(vid)
        if path is None:
            if rec.get("source") and not Path(rec["source"]).exists():
                gone.append(vid)
            continue
        if rec["status"] != fmt.OK or not rec.get(fmt.HASH_NAME):
            continue
        try:
            now = stat_of(path)
        except OSError:
            gone.append(vid)
            continue
        if all(rec.get(k) == v for k, v in now.items()):
            continue
        if sha1(path) != rec[fmt.HASH_NAME]:
            changed.append(vid)
        else:
            rec.update(now)
            restat.append(vid)
    return changed, gone, restat
