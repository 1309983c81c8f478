"""Read a preprocessed directory: the index in memory, shards opened lazily in each process.

    from pipeline.reader import ShardReader
    r = ShardReader("data/processed/demo")
    frames, mfcc, meta = r.sample(r.ids[0], snippet=0)   # uint8 [t,k,H,W,3], float32 [T,n], dict
    clip = r.clip(r.ids[0], snippets=[0, 3, ...], segments=[0, 1, ...], starts=[0, 0, ...], k=16)
    train = r.split_ids(r.splits[0], "train")

Frames come back decoded whatever the shards' codec (raw or JPEG, `params.codec`); JPEG frames
are decoded here, i.e. in the loader's worker processes. Outputs of format version 1 (raw
frames only) are read as codec "raw".

h5py handles must not cross a fork, so files are opened on first use and the process id is
remembered: a DataLoader worker (forked or spawned) opens its own. Pickling drops the handles.
"""
from __future__ import annotations

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
        index = fmt.read_json(path)
        fmt.check_version(index.get("format_version"), str(path))
        self.format_version = int(index["format_version"])
        self.dataset = index["dataset"]
        self.classes: list[str] = index["classes"]
        self.polarity: list[int] = index["polarity"]
        self.params = PreprocessParams.from_dict(index["params"])
        self.splits: list[str] = list(index["splits"])
        self.records: dict[str, dict] = {r["id"]: r for r in index["videos"]}
        self.ids: list[str] = [r["id"] for r in index["videos"] if r["status"] == fmt.OK]
        # {"complete", "expected"} of the preprocess run; None in outputs made before the record
        self.run_state: dict | None = index.get("run")
        self._files: dict[str, object] = {}
        self._arrays: dict[str, tuple] = {}
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

    def damaged_entries(self, ids=None) -> list[tuple[str, str, str]]:
        """(shard, video id, why) for every listed video (or `ids`) whose shard is missing, does
        not open, or whose entry's metadata is damaged (pipeline/integrity.py: groups, datasets,
        attributes, dtypes, shapes; no array data is read). Empty: every entry reads."""
        import h5py
        from pipeline import integrity
        by_shard: dict[str, list[dict]] = {}
        for i in self.ids if ids is None else ids:
            rec = self.records[i]
            by_shard.setdefault(rec["shard"], []).append(rec)
        bad = []
        for shard, recs in sorted(by_shard.items()):
            try:
                with h5py.File(self.root / shard, "r") as f:
                    problem = integrity.shard_problem(f, self.format_version)
                    videos = None if problem else integrity.video_groups(f)
                    for rec in recs:
                        why = problem or integrity.entry_problem(f, rec, self.params.codec, videos)
                        if why:
                            bad.append((shard, rec["id"], why))
            except Exception as e:   # missing, or does not open
                bad += [(shard, rec["id"], integrity.read_error(e)) for rec in recs]
        return bad

    # ---- arrays ----
    def _group(self, video_id: str):
        rec = self.meta(video_id)
        if rec["status"] != fmt.OK:
            raise KeyError(f"video {video_id!r} failed preprocessing: {rec.get('reason')}")
        if os.getpid() != self._pid:          # a forked child: never touch the parent's handles
            self._files, self._arrays, self._pid = {}, {}, os.getpid()
        f = self._files.get(rec["shard"])
        if f is None:
            import h5py
            f = h5py.File(self.root / rec["shard"], "r")
            self._files[rec["shard"]] = f
        return f[fmt.video_key(video_id)]

    def frames(self, video_id: str, snippet: int | None = None) -> np.ndarray:
        """uint8 [S,t,k,H,W,3], or [t,k,H,W,3] for one snippet (one contiguous read)."""
        g = self._group(video_id)
        shape = self.records[video_id]["frames_shape"]
        if snippet is not None and not -shape[0] <= snippet < shape[0]:
            raise IndexError(f"snippet {snippet} out of range: {video_id} has {shape[0]}")
        if fmt.JPEG not in g:
            ds = g[fmt.FRAMES]
            return ds[()] if snippet is None else ds[snippet]
        if snippet is None:
            return self._decode(g, shape, 0, int(np.prod(shape[:3]))).reshape(shape)
        per = shape[1] * shape[2]
        first = (snippet % shape[0]) * per
        return self._decode(g, shape, first, first + per).reshape(shape[1:])

    def _frame_arrays(self, video_id: str) -> tuple:
        """(frames dataset, None, None) for raw frames, (None, JPEG dataset, offsets array) for
        JPEG: looked up once per video and process. An HDF5 lookup by name costs about as much
        as decoding a frame, and a training sample would otherwise make two per segment."""
        got = self._arrays.get(video_id)
        if got is None or os.getpid() != self._pid:
            g = self._group(video_id)
            got = ((g[fmt.FRAMES], None, None) if fmt.JPEG not in g
                   else (None, g[fmt.JPEG], g[fmt.JPEG_OFFSETS][()]))
            if len(self._arrays) >= self.CACHED_VIDEOS:   # bound the open HDF5 objects
                self._arrays.clear()
            self._arrays[video_id] = got
        return got

    # videos whose dataset handles (and JPEG offsets, 8 bytes a frame) a process keeps
    CACHED_VIDEOS = 4096

    def clip(self, video_id: str, snippets, segments, starts, k: int, out: np.ndarray | None = None
             ) -> np.ndarray:
        """uint8 [len(segments), k, H, W, 3]: for every i, frames starts[i] .. starts[i] + k - 1
        of snippet snippets[i] of stored segment segments[i]. One read per segment (one in all
        when every segment uses the same snippet of a raw shard); JPEG decodes only those frames.

        out: an array of that shape to fill (a caller's reused buffer: no fresh pages to fault in
        per sample); the result is then `out` itself. Without it a new array (or, for raw frames
        in one read, a view) comes back."""
        S, t, K, H, W, _ = self.records[video_id]["frames_shape"]
        snippets, segments, starts = (np.asarray(a, np.int64) for a in (snippets, segments, starts))
        shape = (len(segments), k, H, W, 3)
        if out is not None and out.shape != shape:
            raise ValueError(f"out has shape {out.shape}, the clip is {shape}")
        ds = self._frame_arrays(video_id)[0]
        if ds is not None:
            if out is None and (snippets == snippets[0]).all():   # one contiguous read
                one = ds[int(snippets[0])]
                if np.array_equal(segments, np.arange(t)) and (starts == starts[0]).all():
                    return one[:, starts[0]:starts[0] + k]   # a view, no copy yet
                return one[segments[:, None], starts[:, None] + np.arange(k)]
            out = np.empty(shape, np.uint8) if out is None else out
            for n, (j, i, s) in enumerate(zip(snippets, segments, starts)):
                ds.read_direct(out, np.s_[j, i, s:s + k], np.s_[n])
            return out
        from pipeline.codec import decode_into
        out = np.empty(shape, np.uint8) if out is None else out
        parts, bounds = self.clip_jpeg(video_id, snippets, segments, starts, k)   # one read each
        for n, part in enumerate(parts):
            decode_into(part, bounds[n * k:(n + 1) * k + 1] - bounds[n * k], out[n])
        return out

    def clip_jpeg(self, video_id: str, snippets, segments, starts, k: int) -> tuple[list, np.ndarray]:
        """The JPEG files of the frames `clip` would decode, undecoded: (one uint8 array per
        segment, one contiguous read each; int64 offsets [len(segments) * k + 1] into their
        concatenation). For decoding elsewhere, e.g. on the GPU (trainer/device_decode.py).
        ValueError for shards of raw frames."""
        _, t, K, _, _, _ = self.records[video_id]["frames_shape"]
        _, jpeg, offsets = self._frame_arrays(video_id)
        if jpeg is None:
            raise ValueError(f"{video_id}: the shards hold raw frames, no JPEG files")
        parts, bounds = [], [np.zeros(1, np.int64)]
        for j, i, s in zip(*(np.asarray(a, np.int64) for a in (snippets, segments, starts))):
            first = (j * t + i) * K + s
            b = offsets[first:first + k + 1]
            parts.append(jpeg[b[0]:b[-1]])
            bounds.append(b[1:] - b[0] + bounds[-1][-1])
        return parts, np.concatenate(bounds)

    @staticmethod
    def _decode(g, shape, first: int, stop: int, out=None, offsets=None) -> np.ndarray:
        """JPEG frames first..stop-1 (flat [S*t*k] order) of a video group -> [n, H, W, 3]."""
        from pipeline.codec import decode_into
        offsets = (g[fmt.JPEG_OFFSETS][first:stop + 1] if offsets is None
                   else offsets[first:stop + 1])
        data = g[fmt.JPEG][offsets[0]:offsets[-1]]   # one contiguous read
        if out is None:
            out = np.empty((stop - first, *shape[3:]), np.uint8)
        return decode_into(data, offsets - offsets[0], out)

    def mfcc(self, video_id: str) -> np.ndarray:
        return self._group(video_id)[fmt.MFCC][()]

    def sample(self, video_id: str, snippet: int | None = None):
        return self.frames(video_id, snippet), self.mfcc(video_id), self.meta(video_id)

    # ---- lifetime ----
    def close(self):
        if os.getpid() == self._pid:
            for f in self._files.values():
                f.close()
        self._files, self._arrays = {}, {}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_files"], state["_arrays"] = {}, {}
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._pid = os.getpid()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass
