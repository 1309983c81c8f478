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
PARAMS = PreprocessParams(segments=2, snippets=3, frames=4, short_side=8, max_long_side=12, codec="raw",
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


def smooth(i, shape=(3, 2, 4, 32, 48, 3)):
    """Picture-like frames: gradients and moving shapes plus mild grain (JPEG's fair case)."""
    rng = np.random.default_rng(i)
    y, x = np.mgrid[0:shape[3], 0:shape[4]].astype(np.float32)
    out = np.empty(shape, np.uint8)
    for n in np.ndindex(shape[:3]):
        f = np.stack([x * 4 + 20 * sum(n), y * 5, 128 + 60 * np.sin((x + y + n[2]) / 6)], -1)
        f += rng.normal(0, 3, f.shape)
        out[n] = f.clip(0, 255)
    return out


def test_jpeg_codec_round_trips_within_the_stated_psnr(tmp_path):
    from pipeline.codec import psnr
    params = PreprocessParams(segments=2, snippets=3, frames=4, short_side=32, max_long_side=48)
    assert params.codec == "jpeg" and params.quality == 90
    w = ShardWriter(tmp_path, params, dataset="demo", classes=CLASSES, polarity=[0, 1],
                    membership={}, split_names=["given"]).open()
    frames = smooth(0)
    w.add(video(0), frames, np.zeros((5, 32), np.float32), {"fps": 25.0}, sha1="h")
    w.close()
    r = ShardReader(tmp_path)
    vid = video(0).id
    got = r.frames(vid)
    assert got.shape == frames.shape and got.dtype == np.uint8
    assert psnr(got, frames) >= 35.0                   # README: >= 35 dB at quality 90
    assert not np.array_equal(got, frames)             # lossy indeed: JPEG was stored
    assert np.array_equal(r.frames(vid, snippet=1), got[1])
    # a clip mixing snippets, segments and windows equals the same cut of the whole array
    clip = r.clip(vid, snippets=[2, 0], segments=[1, 0], starts=[1, 0], k=3)
    assert np.array_equal(clip, np.stack([got[2, 1, 1:4], got[0, 0, 0:3]]))
    with h5py.File(tmp_path / "shard-00000.h5", "r") as f:
        assert f.attrs["codec"] == "jpeg"
        g = f[fmt.video_key(vid)]
        assert fmt.FRAMES not in g and g[fmt.JPEG].dtype == np.uint8
        assert len(g[fmt.JPEG_OFFSETS]) == 3 * 2 * 4 + 1
        assert g[fmt.JPEG].size < frames.nbytes / 3    # compressed
    r.close()


def downgrade_to_version_1(out):
    """Make a raw-codec output look as the vaanet before codecs wrote it (format 1)."""
    index = json.loads((out / fmt.INDEX).read_text())
    index["format_version"] = 1
    for d in (index["params"],):
        d.pop("codec"), d.pop("quality")
        d["format_version"] = 1
    (out / fmt.INDEX).write_text(json.dumps(index))
    for shard in out.glob(fmt.SHARD_GLOB):
        with h5py.File(shard, "r+") as f:
            f.attrs["format_version"] = 1
            del f.attrs["codec"]


def test_version_1_output_is_read_as_raw_and_never_appended_to(tmp_path):
    w = writer(tmp_path).open()
    for i in range(3):
        w.add(video(i), *fake(i), sha1="h")
    w.close()
    downgrade_to_version_1(tmp_path)
    r = ShardReader(tmp_path)
    assert r.params.codec == "raw"
    for i in range(3):
        assert np.array_equal(r.frames(video(i).id), fake(i)[0])
    clip = r.clip(video(1).id, snippets=[2, 1], segments=[0, 1], starts=[0, 1], k=3)
    assert np.array_equal(clip, np.stack([fake(1)[0][2, 0, :3], fake(1)[0][1, 1, 1:4]]))
    r.close()
    with pytest.raises(ValueError, match=r"format version 1, this vaanet writes version 2; "
                                         r"run `vaanet preprocess --overwrite`"):
        writer(tmp_path).open()


def test_unknown_format_version_is_refused(tmp_path):
    w = writer(tmp_path).open()
    w.add(video(0), *fake(0), sha1="h")
    w.close()
    index = json.loads((tmp_path / fmt.INDEX).read_text())
    index["format_version"] = 99
    (tmp_path / fmt.INDEX).write_text(json.dumps(index))
    with pytest.raises(ValueError, match=r"format version 99, this vaanet reads version 1 or 2; "
                                         r"run `vaanet preprocess --overwrite`"):
        ShardReader(tmp_path)


@pytest.mark.parametrize("codec", ["raw", "jpeg"])
def test_clip_into_a_reused_buffer_equals_a_fresh_clip(tmp_path, codec):
    params = PreprocessParams(segments=2, snippets=3, frames=4, short_side=32, max_long_side=48,
                              codec=codec)
    w = ShardWriter(tmp_path, params, dataset="demo", classes=CLASSES, polarity=[0, 1],
                    membership={}, split_names=["given"]).open()
    for i in range(2):
        w.add(video(i), smooth(i), np.zeros((5, 32), np.float32), {"fps": 25.0}, sha1="h")
    w.close()
    r = ShardReader(tmp_path)
    buf = np.full((2, 3, 32, 48, 3), 7, np.uint8)
    for i, (snippets, starts) in enumerate([([2, 0], [1, 0]), ([1, 1], [0, 1])]):
        vid = video(i).id
        every = r.frames(vid)
        want = np.stack([every[snippets[0], 1, starts[0]:starts[0] + 3],
                         every[snippets[1], 0, starts[1]:starts[1] + 3]])
        got = r.clip(vid, snippets=snippets, segments=[1, 0], starts=starts, k=3, out=buf)
        assert got is buf and np.array_equal(buf, want)    # filled whole, the same pixels
        assert np.array_equal(r.clip(vid, snippets, [1, 0], starts, 3), want)
    with pytest.raises(ValueError, match=r"out has shape \(2, 3, 32, 48, 3\), the clip is "
                                         r"\(2, 2, 32, 48, 3\)"):
        r.clip(vid, snippets=[0, 0], segments=[1, 0], starts=[0, 0], k=2, out=buf)
    r.close()
