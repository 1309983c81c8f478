"""Writes decoded videos into HDF5 shards, crash-safe. Only the parent process writes.

Commit protocol for one video (the file names are in pipeline/format.py):
  1. its group is written into the open `shard-N.h5.partial`, the file is flushed and fsync'ed;
  2. its index record is appended to `journal.jsonl` and fsync'ed: from now on it is committed.
When the partial shard reaches the target size (or the run ends) it is closed, fsync'ed and
renamed to `shard-N.h5`, then index.json is rewritten (temp + rename) with its videos, then the
journal is emptied. index.json only ever names complete shards, so a reader never sees a
half-written file.

Recovery (`open`, after a kill -9): videos journaled in a shard that was already renamed are
added to the index; videos journaled in a leftover .partial are copied into a fresh .partial
(the old file is first renamed .salvage, so a crash during the copy loses nothing) and are not
decoded again; a group that cannot be read back (or a .partial that does not open) is dropped
and its video is decoded again by the run. The listed videos an existing output keeps are
checked too (`open(verify=...)`, pipeline/integrity.py): a damaged entry is dropped from the
index and decoded again into a new shard; the old shard is not modified.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from pipeline import atomic
from pipeline import format as fmt
from pipeline.format import read_jsonl
from pipeline.params import FORMAT_VERSION, PreprocessParams


def _fsync_path(path: Path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _source(video) -> str:
    return str(Path(video.path).absolute())


class ShardWriter:
    def __init__(self, out_dir, params: PreprocessParams, *, dataset: str, classes: list[str],
                 polarity: list[int], membership: dict[str, dict[str, str]],
                 split_names: list[str]):
        self.out = Path(out_dir)
        self.params = params
        self.header = {"format_version": FORMAT_VERSION, "dataset": dataset, "classes": classes,
                       "polarity": polarity, "params": params.to_dict(), "splits": split_names,
                       "hash": fmt.HASH_NAME}
        self.membership = membership
        self.target_bytes = float(params.shard_size_mb) * 2**20
        self.records: dict[str, dict] = {}    # committed to index.json (or about to be)
        self.pending: list[dict] = []         # journaled records of videos in the open partial
        self.logs: dict[str, dict] = {}       # id -> failures.jsonl line
        self._file = None                     # the open h5py.File of the partial shard
        self._shard = None                    # its final name
        self._bytes = 0
        self.salvaged = 0                     # videos recovered from a partial shard at open()
        self.dropped = 0                      # journaled videos that could not be recovered
        self.repaired: list[str] = []         # listed ok videos whose shard was missing/unreadable
        self.damaged: dict[str, str] = {}     # listed ok videos with a damaged entry -> why
        self.verified = 0                     # stored videos checked against their checksums
        self.verified_bytes = 0               # ... the size of their shards
        self.verify_seconds = 0.0
        self._verify = True
        self._orphans: dict[Path, list[str]] = {}   # shard whose every listed video is damaged

    # ---- state ----
    @property
    def done(self) -> set[str]:
        """Ids committed (ok or failed): the run does not decode them again."""
        return set(self.records) | {r["id"] for r in self.pending}

    def forget_failures(self, ids: set[str]):
        """--retry-failed: these videos, if they failed, count as not done."""
        for i in [i for i, r in self.records.items() if r["status"] == fmt.FAILED and i in ids]:
            del self.records[i]
            self.logs.pop(i, None)

    def forget(self, ids):
        """Drop these videos from the index (source changed: decoded again; or gone)."""
        for i in ids:
            self.records.pop(i, None)
            self.logs.pop(i, None)

    def _next_shard_number(self) -> int:
        names = [p.name for p in self.out.glob("shard-*.h5*")]
        names += [r["shard"] for r in self.records.values() if r.get("shard")]
        return max((fmt.shard_number(n) for n in names), default=-1) + 1

    # ---- open / recover ----
    def open(self, verify: bool = True, progress: bool = False):
        """Recover an existing output (see the module docstring) and check what it keeps:
        metadata always, every stored byte against its checksum with `verify` (a new output
        has nothing to check). `progress`: a tqdm bar over the bytes verified."""
        import h5py
        self._verify = verify
        self.out.mkdir(parents=True, exist_ok=True)
        for tmp in self.out.glob("*.tmp"):   # leftovers of an interrupted atomic write
            tmp.unlink()
        index_path = self.out / fmt.INDEX
        if index_path.exists():
            index = fmt.read_json(index_path)
            fmt.check_version(index.get("format_version"), str(index_path), write=True)
            self.records = {r["id"]: r for r in index["videos"]}
            self.header.update({k: index[k] for k in ("run",) if k in index})
            self._drop_unreadable(h5py, verify, progress)
        self.logs = {d["id"]: d for d in read_jsonl(self.out / fmt.FAILURES)}
        to_salvage = []
        for rec in read_jsonl(self.out / fmt.JOURNAL):
            log = rec.pop("log", None)
            old = self.records.get(rec["id"])
            if old is not None and (old["status"] == fmt.OK or rec["status"] == fmt.FAILED):
                continue   # crash after the index write, before the journal reset
            # (an ok journal record replaces a failure: a --retry-failed run that succeeded)
            if rec["status"] == fmt.FAILED:
                self.records[rec["id"]] = rec
                self.logs[rec["id"]] = log
            elif (self.out / rec["shard"]).exists():   # renamed, index not yet rewritten
                if self._readable(h5py, self.out / rec["shard"], rec):
                    self.records[rec["id"]] = rec
                else:
                    self.dropped += 1
            else:
                to_salvage.append(rec)
        self.write_index()                    # failures and renamed shards from the journal
        self._salvage(h5py, to_salvage)
        current = self._shard + fmt.PARTIAL_SUFFIX if self._file is not None else None
        for p in [*self.out.glob("shard-*" + fmt.PARTIAL_SUFFIX),
                  *self.out.glob("shard-*" + fmt.SALVAGE_SUFFIX)]:
            if p.name != current:             # nothing journaled lives there
                p.unlink()
        self._write_journal()
        return self

    def _drop_unreadable(self, h5py, verify: bool, progress: bool):
        """Forget listed videos whose shard is missing or does not open (`repaired`) or whose
        entry is damaged (`damaged`: metadata, or with `verify` their bytes against the recorded
        checksums), so the run decodes them again. A shard that does not open is removed (nothing
        in it reads); one whose every listed video is damaged is removed once the index no
        longer lists it and all of them are stored again (`remove_orphans`)."""
        import logging
        import time
        from tqdm import tqdm
        by_shard: dict[str, list[dict]] = {}
        for rec in self.records.values():
            if rec["status"] == fmt.OK:
                by_shard.setdefault(rec["shard"], []).append(rec)
        paths = [self.out / s for s in by_shard if (self.out / s).exists()]
        total = sum(p.stat().st_size for p in paths) if verify else 0
        t0 = time.perf_counter()
        bar = tqdm(total=total, unit="B", unit_scale=True, desc="verify", dynamic_ncols=True,
                   disable=not (verify and progress))
        for shard, recs in sorted(by_shard.items()):
            path = self.out / shard
            if not path.exists():
                self._drop(recs, None)
                continue
            try:
                with h5py.File(path, "r") as f:
                    bad = {}
                    videos = self._video_groups(f)
                    for r in recs:
                        problem = self._problem(h5py, f, r, verify, videos)
                        if problem:
                            bad[r["id"]] = problem
                        if verify:
                            self.verified += 1
                            bar.update(self._nbytes(f, r))
            except Exception:
                logging.getLogger(__name__).warning("%s does not open: removed, its %d "
                                                    "videos are decoded again", path, len(recs))
                path.unlink()
                self._drop(recs, None)
                continue
            self._drop([r for r in recs if r["id"] in bad], bad)
            if len(bad) == len(recs):
                self._orphans[path] = [r["id"] for r in recs]
        bar.close()
        if verify:
            self.verified_bytes, self.verify_seconds = total, time.perf_counter() - t0

    def _drop(self, recs: list[dict], problems: dict | None):
        for r in recs:
            del self.records[r["id"]]
            if problems is None:
                self.repaired.append(r["id"])
            else:
                self.damaged[r["id"]] = problems[r["id"]]

    @staticmethod
    def _nbytes(f, rec: dict) -> int:
        try:
            return fmt.stored_nbytes(f[fmt.video_key(rec["id"])])
        except Exception:
            return 0

    @staticmethod
    def _video_groups(f):
        from pipeline import integrity
        try:
            return integrity.video_groups(f)
        except Exception:   # shard_problem says why
            return None

    def _problem(self, h5py, f, rec: dict, verify: bool, videos=None) -> str | None:
        """Why the video's entry in the open shard `f` is not sound (None: it is): shard or
        entry metadata (pipeline/integrity.py), its last bytes (a truncated file fails there),
        and with `verify` every byte against its checksum."""
        from pipeline import integrity
        problem = (integrity.shard_problem(f, FORMAT_VERSION)
                   or integrity.entry_problem(f, rec, self.params.codec, videos))
        if problem:
            return problem
        try:
            g = f[fmt.video_key(rec["id"])]
            for ds in (fmt.frames_dataset(g), g[fmt.MFCC]):
                if ds.size:
                    ds[(-1,) * ds.ndim]
        except Exception as e:
            return integrity.read_error(e)
        return integrity.data_problem(f, rec) if verify else None

    def _readable(self, h5py, path: Path, rec: dict, f=None) -> bool:
        try:
            if f is not None:
                return self._problem(h5py, f, rec, self._verify) is None
            with h5py.File(path, "r") as f:
                return self._problem(h5py, f, rec, self._verify) is None
        except Exception:
            return False

    def _salvage(self, h5py, recs: list[dict]):
        if not recs:
            return
        shard = recs[0]["shard"]
        partial = self.out / (shard + fmt.PARTIAL_SUFFIX)
        salvage = self.out / (shard + fmt.SALVAGE_SUFFIX)
        if not salvage.exists():
            if not partial.exists():
                self.dropped += len(recs)
                return
            os.replace(partial, salvage)
        partial.unlink(missing_ok=True)       # an earlier salvage that was itself interrupted
        try:
            src = h5py.File(salvage, "r")
        except Exception:
            src = None
        self._start_shard(fmt.shard_number(shard))
        if src is not None:
            with src:
                for rec in recs:
                    if rec["shard"] == shard and self._readable(h5py, salvage, rec, f=src):
                        key = fmt.video_key(rec["id"])
                        src.copy(src[key], self._file[fmt.VIDEOS_GROUP], name=key.split("/")[1])
                        self.pending.append(rec)
                        g = self._file[key]
                        self._bytes += fmt.stored_nbytes(g)
        self.dropped += len(recs) - len(self.pending)
        self.salvaged = len(self.pending)
        self._file.flush()
        _fsync_path(partial)
        self._write_journal()                 # journal now describes the new partial only
        salvage.unlink()

    # ---- writing ----
    def _start_shard(self, number: int):
        import h5py
        self._shard = fmt.shard_name(number)
        self._file = h5py.File(self.out / (self._shard + fmt.PARTIAL_SUFFIX), "w")
        self._file.attrs["format_version"] = FORMAT_VERSION
        self._file.attrs["dataset"] = self.header["dataset"]
        self._file.attrs["codec"] = self.params.codec
        self._file.attrs["params"] = json.dumps(self.params.to_dict())
        self._file.create_group(fmt.VIDEOS_GROUP)
        self._bytes = 0

    def add(self, video, frames, mfcc: np.ndarray, info: dict, sha1: str) -> dict:
        """Write one decoded video and commit it (see the module docstring).

        frames: uint8 [S,t,k,H,W,3], or codec.EncodedFrames (JPEG, encoded by the worker) when
        the shards' codec is jpeg; raw frames are encoded here then."""
        from pipeline.codec import EncodedFrames, encode_frames
        shape = tuple(frames.shape)
        if len(shape) != 6 or shape[-1] != 3 or (
                not isinstance(frames, EncodedFrames) and frames.dtype != np.uint8):
            raise ValueError(f"{video.id}: frames must be uint8 [S,t,k,H,W,3], got "
                             f"{getattr(frames, 'dtype', 'jpeg')} {shape}")
        if self.params.codec == "jpeg" and not isinstance(frames, EncodedFrames):
            frames = encode_frames(frames, self.params.quality)
        elif self.params.codec == "raw" and isinstance(frames, EncodedFrames):
            raise ValueError(f"{video.id}: JPEG frames given to a raw-codec output")
        mfcc = np.asarray(mfcc, dtype=np.float32)
        if self._file is None:
            self._start_shard(self._next_shard_number())
        g = self._file.create_group(fmt.video_key(video.id))
        if isinstance(frames, EncodedFrames):  # contiguous: a snippet is one byte range
            g.create_dataset(fmt.JPEG, data=frames.data)
            g.create_dataset(fmt.JPEG_OFFSETS, data=frames.offsets)
        elif self.params.compression:         # chunk = one snippet: still one read per sample
            g.create_dataset(fmt.FRAMES, data=frames, chunks=(1,) + frames.shape[1:],
                             compression=self.params.compression)
        else:
            g.create_dataset(fmt.FRAMES, data=frames)  # contiguous
        g.create_dataset(fmt.MFCC, data=mfcc)
        written = {fmt.MFCC: mfcc}
        if isinstance(frames, EncodedFrames):
            written.update({fmt.JPEG: frames.data, fmt.JPEG_OFFSETS: frames.offsets})
        else:
            written[fmt.FRAMES] = frames
        for name, array in written.items():   # checked by `vaanet inspect --verify`
            g[name].attrs[fmt.CHECKSUM] = fmt.checksum(array)
        rec = fmt.video_record(
            id=video.id, label=video.label, cls=video.cls,
            polarity=self.header["polarity"][video.label], source=_source(video),
            status=fmt.OK, shard=self._shard, frames_shape=shape, mfcc_shape=mfcc.shape,
            fps=float(info.get("fps", 0.0)), duration=float(info.get("duration", 0.0)),
            has_audio=bool(info.get("has_audio", False)), sha1=sha1,
            notes=list(info.get("notes", [])))
        try:   # the source's size and mtime: a rerun compares them (pipeline/sources.py)
            from pipeline.sources import stat_of
            rec.update(stat_of(video.path))
        except OSError:
            pass
        for k in ("id", "label", "class", "source", "sha1", "fps", "duration", "has_audio"):
            g.attrs[k] = rec[k]
        g.attrs["info"] = json.dumps(info, default=str)
        self._file.flush()
        _fsync_path(self.out / (self._shard + fmt.PARTIAL_SUFFIX))
        self._journal(rec)
        self.pending.append(rec)
        self._bytes += fmt.stored_nbytes(g)
        if self._bytes >= self.target_bytes:
            self.finish_shard()
        return rec

    def add_failure(self, video, reason: str, log_tail: str) -> dict:
        rec = fmt.video_record(id=video.id, label=video.label, cls=video.cls,
                               polarity=self.header["polarity"][video.label],
                               source=_source(video), status=fmt.FAILED, reason=reason)
        log = {"id": video.id, "path": _source(video), "reason": reason, "log_tail": log_tail}
        self._journal(dict(rec, log=log))
        self.records[video.id] = rec
        self.logs[video.id] = log
        return rec

    def _journal(self, rec: dict):
        # append-only log: appended, not rewritten through pipeline/atomic.py; open() creates it
        # with the umask's permissions
        with open(self.out / fmt.JOURNAL, "a") as f:
            f.write(json.dumps(rec) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def _write_journal(self):
        path = self.out / fmt.JOURNAL
        if self.pending:
            atomic.write_text(path, "".join(json.dumps(r) + "\n" for r in self.pending),
                              only_if_changed=True)
        elif path.exists():
            path.unlink()

    def finish_shard(self):
        """Close the partial shard, make it visible under its final name, index its videos."""
        if self._file is None:
            return
        partial = self.out / (self._shard + fmt.PARTIAL_SUFFIX)
        self._file.close()
        self._file = None
        if not self.pending:
            partial.unlink()
            return
        _fsync_path(partial)
        os.replace(partial, self.out / self._shard)
        atomic.fsync_dir(self.out)
        for rec in self.pending:
            self.records[rec["id"]] = rec
        self.pending = []
        self.write_index()
        self._write_journal()

    def write_index(self):
        """index.json and failures.jsonl from the committed records (unchanged -> untouched)."""
        videos = []
        for i in sorted(self.records):
            rec = dict(self.records[i])
            rec["splits"] = self.membership.get(i, {})
            videos.append(rec)
        failures = [self.logs[i] for i in sorted(self.logs)
                    if self.records.get(i, {}).get("status") == fmt.FAILED]
        atomic.write_text(self.out / fmt.FAILURES, "".join(json.dumps(d) + "\n" for d in failures),
                          only_if_changed=True)
        atomic.write_json(self.out / fmt.INDEX, dict(self.header, videos=videos), only_if_changed=True)

    def close(self):
        self.finish_shard()
        self.write_index()
        self._write_journal()

    def remove_orphans(self):
        """After the run: remove the shards that no listed video uses any more because every
        video they held was damaged and is now stored again elsewhere (one that could not be
        decoded again keeps its old shard)."""
        for path, ids in self._orphans.items():
            listed = {r.get("shard") for r in self.records.values()}
            if path.name not in listed and all(
                    self.records.get(i, {}).get("status") == fmt.OK for i in ids):
                path.unlink(missing_ok=True)

    # a run interrupted by an exception leaves the journal and the partial for the next run
    def abandon(self):
        if self._file is not None:
            self._file.close()
            self._file = None
