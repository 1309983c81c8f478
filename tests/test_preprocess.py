"""`vaanet preprocess` end to end on small generated videos: failures, resume after a kill,
idempotent reruns, refused parameter changes, exit codes, --limit, backends."""
import fcntl
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from cli import main
from pipeline import format as fmt
from pipeline.demo import make_demo_videos
from pipeline.reader import ShardReader
from pipeline.params import FORMAT_VERSION
from tests import videos as gen

REPO = Path(__file__).resolve().parent.parent
# tiny decode settings; ~0.06 MB shards hold two videos each, so a run makes several shards
SMALL = ["--segments", "2", "--snippets", "1", "--frames", "4", "--short-side", "32", "--codec", "raw",
         "--max-long-side", "48", "--shard-size-mb", "0.06", "--jobs", "2", "-q"]


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """8 demo videos (2 per class, 1 s) plus a silent one, a zero-byte, a corrupt, a truncated and
    an audio-only file, and a text file that is skipped."""
    root = make_demo_videos(tmp_path_factory.mktemp("videos") / "root", seed=1, per_class=2,
                            duration=1.0, size=(64, 48))
    gen.write_video(root / "surprise" / "silent.mp4", gen.counter_frames(20, 64, 48), pcm=None)
    gen.zero_byte(root / "anger" / "empty.mp4")
    gen.not_a_video(root / "fear" / "garbage.avi")
    gen.truncate(root / "joy" / "joy_00.mp4", root / "joy" / "cut.mp4", 0.5)
    gen.audio_only(root / "surprise" / "tone.m4v")
    (root / "joy" / "notes.txt").write_text("not a video")
    return root


@pytest.fixture(scope="module")
def good(videos, tmp_path_factory):
    """The same without the bad files."""
    root = tmp_path_factory.mktemp("good") / "root"
    shutil.copytree(videos, root,
                    ignore=shutil.ignore_patterns("empty*", "garbage*", "cut*", "tone*"))
    return root


GOOD = 9   # 8 demo videos + the silent one
BAD = {"anger/empty": "zero-byte", "fear/garbage": "not a video", "joy/cut": "truncated",
       "surprise/tone": "no video stream"}


def preprocess(root, out, *extra):
    return CliRunner().invoke(main, ["preprocess", "--dataset", "demo", "--root", str(root),
                                     "--out", str(out), *SMALL, *extra])


def snapshot(out):
    return {p.name: (p.stat().st_mtime_ns, hashlib.sha1(p.read_bytes()).hexdigest())
            for p in sorted(Path(out).iterdir())}


def shard_keys(out):
    keys = []
    for p in sorted(Path(out).glob(fmt.SHARD_GLOB)):
        with h5py.File(p, "r") as f:
            keys += list(f[fmt.VIDEOS_GROUP])
    return keys


def test_run_failures_no_audio_and_idempotent_rerun(videos, tmp_path):
    out = tmp_path / "out"
    r = preprocess(videos, out)
    assert r.exit_code == 1, r.output                    # some videos failed
    assert "warning: skipped 1 entries that are not video files" in r.output
    assert f"{GOOD} ok, {len(BAD)} failed" in r.output and "failures.jsonl" in r.output
    fails = fmt.read_jsonl(out / fmt.FAILURES)
    assert [f["id"] for f in fails] == sorted(BAD)
    for f in fails:
        assert BAD[f["id"]] in f["reason"] and Path(f["path"]).exists()
    assert "Invalid data" in {f["id"]: f for f in fails}["fear/garbage"]["log_tail"]   # ffmpeg's words

    reader = ShardReader(out)
    assert len(reader.ids) == GOOD and len(shard_keys(out)) == GOOD
    assert len(list(out.glob(fmt.SHARD_GLOB))) >= 4
    silent = reader.meta("surprise/silent")
    assert silent["has_audio"] is False and silent["status"] == "ok"
    assert not reader.mfcc("surprise/silent").any()
    assert reader.meta("joy/joy_00")["has_audio"] is True
    frames, mfcc, meta = reader.sample("anger/anger_00", snippet=0)
    assert frames.shape == (2, 4, 32, 43, 3) and frames.dtype == np.uint8
    assert mfcc.shape[1] == 32 and mfcc.dtype == np.float32
    assert meta["sha1"] == hashlib.sha1((videos / "anger/anger_00.mp4").read_bytes()).hexdigest()
    assert meta["splits"] == {"alternating": "train"}
    params = json.loads((out / fmt.PARAMS).read_text())
    assert params["params"]["frames"] == 4 and params["format_version"] == FORMAT_VERSION
    assert json.loads((out / fmt.SPLITS).read_text())["kind"] == "alternating"

    before = snapshot(out)
    r = preprocess(videos, out)
    assert r.exit_code == 1 and "nothing to decode" in r.output
    assert snapshot(out) == before                       # not a byte, not an mtime changed

    r = preprocess(videos, out, "--retry-failed")        # retried, fail again, same report
    assert r.exit_code == 1 and f"decoded now: {len(BAD)}" in r.output
    assert [f["id"] for f in fmt.read_jsonl(out / fmt.FAILURES)] == sorted(BAD)


def test_resume_after_kill(good, tmp_path):
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "cli", "preprocess", "--dataset", "demo", "--root",
           str(good), "--out", str(out), *SMALL]
    # the documented test hook ends the run with os._exit(9) after 5 committed videos, while
    # the third shard is still a .partial holding one video
    env = dict(os.environ, VAANET_TEST_CRASH_AFTER="5")
    log = tmp_path / "log"
    with open(log, "w") as f:   # a file, not a pipe: orphaned workers keep pipes open
        p = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=f, stderr=f, start_new_session=True)
        p.wait(timeout=120)
    try:                        # the workers of the killed run, as `kill -9 -PGID` would
        os.killpg(p.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    assert p.returncode == 9, log.read_text()
    committed = [r["id"] for r in fmt.read_jsonl(out / fmt.JOURNAL)]
    indexed = [v["id"] for v in json.loads((out / fmt.INDEX).read_text())["videos"]]
    assert len(committed) + len(indexed) == 5
    assert list(out.glob("*.partial"))
    # a reader of the interrupted output sees only complete shards
    assert all((out / ShardReader(out).meta(i)["shard"]).exists() for i in ShardReader(out).ids)

    p = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "already done: 5" in p.stdout and "1 recovered from an interrupted shard" in p.stdout
    assert "decoded now: 4" in p.stdout                  # 9 - 5: nothing decoded twice
    keys = shard_keys(out)
    assert len(keys) == len(set(keys)) == GOOD           # no duplicates, everything present
    assert not list(out.glob("*.partial")) and not (out / fmt.JOURNAL).exists()

    ref = tmp_path / "ref"                               # an uninterrupted run: same content
    assert preprocess(good, ref).exit_code == 0
    a, b = ShardReader(out), ShardReader(ref)
    assert a.ids == b.ids
    for i in a.ids:
        assert np.array_equal(a.frames(i), b.frames(i)) and np.array_equal(a.mfcc(i), b.mfcc(i))
        assert {k: v for k, v in a.meta(i).items() if k != "shard"} == \
               {k: v for k, v in b.meta(i).items() if k != "shard"}


def test_changed_parameters_are_refused_unless_overwrite(videos, tmp_path):
    out = tmp_path / "out"
    assert preprocess(videos, out, "--limit", "2").exit_code == 0
    r = preprocess(videos, out, "--limit", "2", "--frames", "8")
    assert r.exit_code == 2 and "preprocessed with other settings (frames 4 -> 8)" in r.output
    r = preprocess(videos, out, "--limit", "2", "--frames", "8", "--overwrite")
    assert r.exit_code == 0
    assert ShardReader(out).meta(ShardReader(out).ids[0])["frames_shape"][2] == 8


def test_another_root_on_the_same_output_is_refused(videos, good, tmp_path):
    out = tmp_path / "out"
    assert preprocess(good, out, "--limit", "2").exit_code == 0
    r = preprocess(videos, out, "--limit", "2")
    assert r.exit_code == 2 and "preprocessed with other settings (root " in r.output
    assert str(videos.resolve()) in r.output


def test_limit_takes_every_class_then_the_rest(good, tmp_path):
    out = tmp_path / "out"
    r = preprocess(good, out, "--limit", "4")
    assert r.exit_code == 0, r.output
    assert [i.split("/")[0] for i in ShardReader(out).ids] == ["anger", "fear", "joy", "surprise"]
    r = preprocess(good, out)
    assert r.exit_code == 0 and "already done: 4" in r.output and "decoded now: 5" in r.output
    assert len(ShardReader(out).ids) == GOOD


def test_usage_errors_exit_2(videos, tmp_path):
    run = CliRunner().invoke
    r = run(main, ["preprocess", "--dataset", "e6", "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "--root is required for --dataset e6" in r.output
    (tmp_path / "happy").mkdir()
    shutil.copy(videos / "joy" / "joy_00.mp4", tmp_path / "happy")
    r = run(main, ["preprocess", "--dataset", "ve8", "--root", str(tmp_path), "--out",
                   str(tmp_path / "o")])
    assert r.exit_code == 2 and "is not a class of dataset ve8" in r.output
    assert "expected layout: ROOT/<class>/<video file>" in r.output
    (tmp_path / "empty").mkdir()
    r = run(main, ["preprocess", "--dataset", "folder", "--root", str(tmp_path / "empty")])
    assert r.exit_code == 2 and "is empty" in r.output
    r = preprocess(videos, tmp_path / "o", "--backend", "nope")
    assert r.exit_code == 2 and "unknown --backend 'nope'" in r.output
    assert not (tmp_path / "o").exists()                 # refused before writing anything
    r = preprocess(videos, tmp_path / "o", "--polarity-file", str(videos / "joy" / "notes.txt"))
    assert r.exit_code == 2 and "--polarity-file is for --dataset folder" in r.output
    r = preprocess(videos, tmp_path / "o", "--short-side", "100")
    assert r.exit_code == 2 and "max_long_side must be >= short_side" in r.output
    busy = tmp_path / "busy"
    busy.mkdir()
    fd = os.open(busy, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)                       # as a run in progress holds it
    try:
        r = preprocess(videos, busy)
        assert r.exit_code == 2 and "another `vaanet preprocess` is writing" in r.output
    finally:
        os.close(fd)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("x")
    r = preprocess(videos, tmp_path / "mine")
    assert r.exit_code == 2 and "not a vaanet output" in r.output


def test_threading_backend_and_folder_dataset(good, tmp_path):
    pol = tmp_path / "polarity.txt"
    pol.write_text("anger negative\nfear negative\njoy positive\nsurprise positive\n")
    out = tmp_path / "out"
    r = CliRunner().invoke(main, ["preprocess", "--dataset", "folder", "--root", str(good),
                                  "--out", str(out), "--polarity-file", str(pol), *SMALL,
                                  "--backend", "threading", "--seed", "3"])
    assert r.exit_code == 0, r.output
    reader = ShardReader(out)
    assert reader.polarity == [0, 0, 1, 1] and reader.splits == [str(i) for i in range(10)]
    assert json.loads((out / fmt.SPLITS).read_text())["seed"] == 3
    for s in reader.splits:                              # 2/3 of every class in train
        train = reader.split_ids(s, "train")
        assert [sum(i.startswith(c + "/") for i in train) for c in reader.classes] == [1, 1, 1, 2]


def test_dask_local_cluster(good, tmp_path):
    distributed = pytest.importorskip("dask.distributed",
                                      reason="dask is an optional extra: pip install vaanet[dask]")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=":0") as cluster:
        r = preprocess(good, tmp_path / "out", "--backend", cluster.scheduler_address)
    assert r.exit_code == 0, r.output
    assert len(ShardReader(tmp_path / "out").ids) == GOOD


def test_demo_defaults():
    from pipeline.preprocess import default_params, demo_root
    p = default_params("demo")
    assert (p.segments, p.snippets, p.frames, p.short_side, p.max_long_side) == (4, 8, 8, 64, 96)
    assert default_params("e6").segments == 10 and default_params("e6").short_side == 112
    assert demo_root(None, None) == Path("data/demo_videos")
    assert demo_root("runs/x/out", None) == Path("runs/x/demo_videos")
    assert demo_root(None, "mine") == Path("mine")
