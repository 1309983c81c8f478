"""Read a preprocessed directory: the index in memory, shards opened lazily in each process.

    from pipeline.reader import ShardReader
    r = ShardReader("data/processed/demo")
    frames, mfcc, meta = r.sample(r.ids[0], snippet=0)   # uint8 [t,k,H,W,3], float32 [T,n], dict
    train = r.split_ids(r.splits[0], "train")

h5py handles must not cross a fork, so files are opened on first use and the process id is
remembered: a DataLoader worker (forked or spawned) opens its own. Pickling drops the handles.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from pipeline import format as fmt
from pipeline.params import PreprocessParams


class ShardReader:
    def __init__(self, root):
        self.root = Path(root)
        path = self.root / fmt.INDEX
        if not path.exists():
            raise FileNotFoundError(f"no {fmt.INDEX} in {self.root}: not a preprocessed directory "
                                    "(make one with `vaanet preprocess`)")
        index = json.loads(path.read_text())
        fmt.check_version(index.get("format_version"), str(path))
        self.dataset = index["dataset"]
        self.classes: list[str] = index["classes"]
        self.polarity: list[int] = index["polarity"]
        self.params = PreprocessParams.from_dict(index["params"])
        self.splits: list[str] = list(index["splits"])
        self.records: dict[str, dict] = {r["id"]: r for r in index["videos"]}
        self.ids: list[str] = [r["id"] for r in index["videos"] if r["status"] == fmt.OK]
        self._files: dict[str, object] = {}
        self._pid = os.getpid()

    def __len__(self):
        return len(self.ids)

    # ---- metadata (no shard is opened) ----
    def meta(self, video_id: str) -> dict:
        try:
            return dict(self.records[video_id])
        except KeyError:
            raise KeyError(f"no video {video_id!r} in {self.root} (ids are class/name, "
                           f"e.g. {self.ids[0] if self.ids else 'none here'!r})") from None

    def split_ids(self, split: str, part: str) -> list[str]:
        split = str(split)
        if split not in self.splits:
            raise KeyError(f"unknown split {split!r}; available splits: {', '.join(self.splits)}")
        if part not in ("train", "test"):
            raise ValueError(f"part must be 'train' or 'test', got {part!r}")
        return [i for i in self.ids if self.records[i]["splits"].get(split) == part]

    # ---- arrays ----
    def _group(self, video_id: str):
        rec = self.meta(video_id)
        if rec["status"] != fmt.OK:
            raise KeyError(f"video {video_id!r} failed preprocessing: {rec.get('reason')}")
        if os.getpid() != self._pid:          # a forked child: never touch the parent's handles
            self._files, self._pid = {}, os.getpid()
        f = self._files.get(rec["shard"])
        if f is None:
            import h5py
            f = h5py.File(self.root / rec["shard"], "r")
            self._files[rec["shard"]] = f
        return f[fmt.video_key(video_id)]

    def frames(self, video_id: str, snippet: int | None = None) -> np.ndarray:
        """uint8 [S,t,k,H,W,3], or [t,k,H,W,3] for one snippet (one contiguous read)."""
        ds = self._group(video_id)[fmt.FRAMES]
        if snippet is None:
            return ds[()]
        if not -ds.shape[0] <= snippet < ds.shape[0]:
            raise IndexError(f"snippet {snippet} out of range: {video_id} has {ds.shape[0]}")
        return ds[snippet]

    def mfcc(self, video_id: str) -> np.ndarray:
        return self._group(video_id)[fmt.MFCC][()]

    def sample(self, video_id: str, snippet: int | None = None):
        return self.frames(video_id, snippet), self.mfcc(video_id), self.meta(video_id)

    # ---- lifetime ----
    def close(self):
        if os.getpid() == self._pid:
            for f in self._files.values():
                f.close()
        self._files = {}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_files"] = {}
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._pid = os.getpid()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass
