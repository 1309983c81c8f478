"""Shard writer and reader: values round trip, contiguous reads, atomic rename, crash recovery."""
import json
import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest

from pipeline import format as fmt
from pipeline.datasets import Video
from pipeline.params import FORMAT_VERSION, PreprocessParams
from pipeline.reader import ShardReader
from pipeline.writer import ShardWriter

CLASSES = ["anger", "joy"]
PARAMS = PreprocessParams(segments=2, snippets=3, frames=4, short_side=8, max_long_side=12,
                          shard_size_mb=0.02)   # ~20 kB: a new shard every two videos


def fake(i):
    """A deterministic decoded video: frames encode (video, snippet, segment, frame)."""
    rng = np.random.default_rng(i)
    frames = rng.integers(0, 256, (3, 2, 4, 8, 12, 3), dtype=np.uint8)
    mfcc = rng.standard_normal((50 + i, 32)).astype(np.float32)
    info = {"fps": 25.0, "duration": 2.0 + i, "has_audio": i % 3 != 0, "notes": ["n"] * (i % 2)}
    return frames, mfcc, info


def video(i):
    cls = CLASSES[i % 2]
    return Video(f"{cls}/clip {i}", i % 2, cls, Path(f"/src/{cls}/clip {i}.mp4"))


def writer(out):
    ids = [video(i).id for i in range(20)]
    return ShardWriter(out, PARAMS, dataset="demo", classes=CLASSES, polarity=[0, 1],
                       membership={i: {"given": "train" if n % 2 else "test"}
                                   for n, i in enumerate(ids)}, split_names=["given"])


def test_round_trip_values_and_metadata(tmp_path):
    w = writer(tmp_path).open()
    for i in range(5):
        w.add(video(i), *fake(i), sha1=f"h{i}")
    w.add_failure(video(5), "decode failed", "last ffmpeg line")
    w.close()
    shards = sorted(p.name for p in tmp_path.glob(fmt.SHARD_GLOB))
    assert shards == ["shard-00000.h5", "shard-00001.h5", "shard-00002.h5"]
    assert not list(tmp_path.glob("*.partial")) and not (tmp_path / fmt.JOURNAL).exists()

    r = ShardReader(tmp_path)
    assert r.ids == sorted(video(i).id for i in range(5))       # ok only, index order
    assert r.classes == CLASSES and r.polarity == [0, 1] and r.params == PARAMS
    assert r.splits == ["given"]
    for i in range(5):
        frames, mfcc, info = fake(i)
        vid = video(i).id
        assert np.array_equal(r.frames(vid), frames) and r.frames(vid).dtype == np.uint8
        assert np.array_equal(r.frames(vid, snippet=2), frames[2])
        got = r.mfcc(vid)
        assert got.dtype == np.float32 and np.array_equal(got, mfcc)
        m = r.meta(vid)
        assert m["label"] == i % 2 and m["class"] == CLASSES[i % 2] and m["polarity"] == i % 2
        assert m["frames_shape"] == [3, 2, 4, 8, 12, 3] and m["mfcc_shape"] == [50 + i, 32]
        assert m["has_audio"] == info["has_audio"] and m["duration"] == info["duration"]
        assert m["sha1"] == f"h{i}" and m["source"].endswith(f"clip {i}.mp4")
        assert m["status"] == "ok" and m["shard"] in shards
        assert m["splits"] == {"given": "train" if i % 2 else "test"}
    assert r.meta(video(5).id)["status"] == "failed"
    assert r.meta(video(5).id)["reason"] == "decode failed"
    fails = fmt.read_jsonl(tmp_path / fmt.FAILURES)
    assert fails == [{"id": "joy/clip 5",
                      "path": "/src/joy/clip 5.mp4", "reason": "decode failed",
                      "log_tail": "last ffmpeg line"}]
    with pytest.raises(KeyError, match="failed preprocessing"):
        r.frames(video(5).id)
    with pytest.raises(KeyError, match="unknown split 'x'; available splits: given"):
        r.split_ids("x", "train")
    assert set(r.split_ids("given", "train")) | set(r.split_ids("given", "test")) == set(r.ids)
    r.close()


def test_format_is_recorded_and_storage_is_contiguous(tmp_path):
    w = writer(tmp_path).open()
    w.add(video(0), *fake(0), sha1="h")
    w.close()
    index = json.loads((tmp_path / fmt.INDEX).read_text())
    assert index["format_version"] == FORMAT_VERSION and index["params"] == PARAMS.to_dict()
    with h5py.File(tmp_path / "shard-00000.h5", "r") as f:
        assert f.attrs["format_version"] == FORMAT_VERSION
        assert json.loads(f.attrs["params"]) == PARAMS.to_dict()
        g = f[fmt.video_key(video(0).id)]
        assert g[fmt.FRAMES].chunks is None and g[fmt.FRAMES].compression is None
        assert g[fmt.MFCC].chunks is None
        # snippet-major: one snippet of every segment is one contiguous byte range
        offset = g[fmt.FRAMES].id.get_offset()
        assert offset is not None
        raw = np.fromfile(tmp_path / "shard-00000.h5", np.uint8, count=g[fmt.FRAMES].size,
                          offset=offset)
        assert np.array_equal(raw.reshape(3, -1)[1], fake(0)[0][1].ravel())
        assert g.attrs["id"] == video(0).id


def test_partial_shard_is_not_visible_until_renamed(tmp_path):
    w = writer(tmp_path).open()
    w.add(video(0), *fake(0), sha1="h")                    # below the target size: stays open
    assert [p.name for p in tmp_path.iterdir() if "shard" in p.name] == ["shard-00000.h5.partial"]
    assert ShardReader(tmp_path).ids == []                 # the index names complete shards only
    w.add(video(1), *fake(1), sha1="h")                    # target reached: renamed
    assert (tmp_path / "shard-00000.h5").exists()
    assert not (tmp_path / "shard-00000.h5.partial").exists()
    assert set(ShardReader(tmp_path).ids) == {video(0).id, video(1).id}
    w.close()


CRASH = textwrap.dedent("""
    import os, sys
    sys.path.insert(0, {tests!r})
    from test_shards import writer, video, fake
    w = writer({out!r}).open()
    for i in range({n}):
        w.add(video(i), *fake(i), sha1="h")
    if {fail}:
        w.add_failure(video(9), "zero-byte file", "")
    os._exit(9)    # like kill -9: nothing closed, nothing flushed by Python
""")


# crash with an open partial / right after a completed shard / between rename and index write
@pytest.mark.parametrize("n, renamed", [(3, False), (4, False), (3, True)])
def test_recovery_after_a_crash(tmp_path, n, renamed):
    code = CRASH.format(tests=str(Path(__file__).parent), out=str(tmp_path), n=n, fail=True)
    subprocess.run([sys.executable, "-c", code], check=False, cwd=Path(__file__).parent.parent)
    assert (tmp_path / fmt.JOURNAL).exists()
    if renamed:
        os.replace(tmp_path / "shard-00001.h5.partial", tmp_path / "shard-00001.h5")
        assert ShardReader(tmp_path).ids == [video(0).id, video(1).id]   # index not rewritten
    w = writer(tmp_path).open()
    assert w.done == {video(i).id for i in range(n)} | {video(9).id}
    assert w.dropped == 0 and w.salvaged == (1 if n == 3 and not renamed else 0)
    for i in range(n, 6):
        w.add(video(i), *fake(i), sha1="h")
    w.close()
    r = ShardReader(tmp_path)
    assert r.ids == sorted(video(i).id for i in range(6))    # all there, no duplicates
    for i in range(6):
        assert np.array_equal(r.frames(video(i).id), fake(i)[0])
    assert r.meta(video(9).id)["status"] == "failed"
    shards = [fmt.shard_name(i) for i in range(4 if renamed else 3)]  # shard 1 closed early
    assert sorted(p.name for p in tmp_path.iterdir()) == ["failures.jsonl", "index.json", *shards]


def test_unreadable_partial_is_dropped_and_its_videos_decoded_again(tmp_path):
    code = CRASH.format(tests=str(Path(__file__).parent), out=str(tmp_path), n=3, fail=False)
    subprocess.run([sys.executable, "-c", code], check=False, cwd=Path(__file__).parent.parent)
    (tmp_path / "shard-00001.h5.partial").write_bytes(b"garbage")
    w = writer(tmp_path).open()
    assert w.done == {video(0).id, video(1).id} and w.dropped == 1
    w.close()
    assert not list(tmp_path.glob("*.partial")) and not list(tmp_path.glob("*.salvage"))


def _read_in_worker(args):
    reader, vid = args
    return os.getpid(), reader.frames(vid, 0).sum()


def test_reader_is_picklable_and_opens_files_per_process(tmp_path):
    w = writer(tmp_path).open()
    for i in range(4):
        w.add(video(i), *fake(i), sha1="h")
    w.close()
    r = ShardReader(tmp_path)
    r.frames(r.ids[0])                                     # the parent has open handles now
    assert len(r._files) == 1
    clone = pickle.loads(pickle.dumps(r))
    assert clone._files == {} and np.array_equal(clone.mfcc(r.ids[1]), r.mfcc(r.ids[1]))
    import multiprocessing as mp
    with mp.get_context("fork").Pool(2) as pool:           # forked after the parent opened files
        got = pool.map(_read_in_worker, [(r, i) for i in r.ids])
    assert [s for _, s in got] == [r.frames(i, 0).sum() for i in r.ids]
    with ShardReader(tmp_path) as r2:
        r2.frames(r2.ids[0])
    assert r2._files == {}
