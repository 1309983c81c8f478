"""Reliability of a preprocessed output: an interrupted run is recorded and refused by the
trainer, a rerun repairs missing or unreadable shards."""
import json
import os
import signal
import subprocess
import sys

import pytest
from click.testing import CliRunner

from cli import main
from pipeline import format as fmt
from pipeline.reader import ShardReader
from tests.test_preprocess import GOOD, REPO, SMALL, good, preprocess, shard_keys, videos  # noqa: F401
from trainer.data import open_data
from trainer.errors import RunError


def killed_run(root, out, after: int, tmp_path):
    """`vaanet preprocess` ended by the documented crash hook after `after` committed videos."""
    cmd = [sys.executable, "-m", "cli", "preprocess", "--dataset", "demo", "--root", str(root),
           "--out", str(out), *SMALL]
    log = tmp_path / "log"
    with open(log, "w") as f:
        p = subprocess.Popen(cmd, env=dict(os.environ, VAANET_TEST_CRASH_AFTER=str(after)),
                             cwd=REPO, stdout=f, stderr=f, start_new_session=True)
        p.wait(timeout=120)
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    assert p.returncode == 9, log.read_text()


def test_interrupted_output_is_recorded_shown_and_refused(good, tmp_path):
    out = tmp_path / "out"
    killed_run(good, out, 4, tmp_path)     # two complete shards, nothing in a partial
    index = json.loads((out / fmt.INDEX).read_text())
    assert index["run"] == {"complete": False, "expected": GOOD}
    listed = len(index["videos"])
    assert 0 < listed < GOOD

    r = CliRunner().invoke(main, ["inspect", str(out)])
    assert r.exit_code == 0
    assert f"unfinished: {GOOD - listed} of {GOOD} videos not done yet" in r.output

    with pytest.raises(RunError, match=rf"did not finish \({GOOD - listed} of {GOOD} videos "
                                       r"missing\); rerun the same `vaanet preprocess`"):
        open_data(out)
    assert len(open_data(out, allow_incomplete=True).ids) == listed
    r = CliRunner().invoke(main, ["train", "--data", str(out), "--preset", "demo",
                                  "--out", str(tmp_path / "run"), "--device", "cpu"])
    assert r.exit_code == 2 and "did not finish" in r.output and "--allow-incomplete" in r.output
    r = CliRunner().invoke(main, ["evaluate", "--checkpoint", str(tmp_path / "none.pt"),
                                  "--data", str(out), "--help"])
    assert "--allow-incomplete" in r.output

    r = preprocess(good, out)              # the same command completes it
    assert r.exit_code == 0, r.output
    assert json.loads((out / fmt.INDEX).read_text())["run"] == {"complete": True,
                                                                "expected": GOOD}
    assert "unfinished" not in CliRunner().invoke(main, ["inspect", str(out)]).output
    assert len(open_data(out).ids) == GOOD

    index = json.loads((out / fmt.INDEX).read_text())      # an output made before the record
    del index["run"]
    (out / fmt.INDEX).write_text(json.dumps(index))
    assert "completion: not recorded" in CliRunner().invoke(main, ["inspect", str(out)]).output
    assert len(open_data(out).ids) == GOOD                 # every listed shard is there
    sorted(out.glob(fmt.SHARD_GLOB))[0].unlink()
    with pytest.raises(RunError, match="shard files listed in index.json are missing"):
        open_data(out)


def test_missing_and_unreadable_shards_are_decoded_again(good, tmp_path):
    out = tmp_path / "out"
    assert preprocess(good, out).exit_code == 0
    shards = sorted(out.glob(fmt.SHARD_GLOB))
    assert len(shards) >= 3
    reader = ShardReader(out)
    in_shard = lambda name: [i for i in reader.ids if reader.meta(i)["shard"] == name]  # noqa: E731
    gone, damaged = shards[0], shards[1]
    lost = in_shard(gone.name) + in_shard(damaged.name)
    gone.unlink()
    damaged.write_bytes(damaged.read_bytes()[:200])         # truncated: does not open

    r = CliRunner().invoke(main, ["inspect", str(out)])
    assert f"missing shards: 1 of {len(shards)}" in r.output and gone.name in r.output

    r = preprocess(good, out)
    assert r.exit_code == 0, r.output
    assert "nothing to decode" not in r.output
    assert f"repaired: {len(lost)} listed videos" in r.output
    assert f"decoded now: {len(lost)}" in r.output
    keys = shard_keys(out)
    assert len(keys) == len(set(keys)) == GOOD
    reader = ShardReader(out)
    assert sorted(reader.ids) == sorted(ShardReader(out).ids) and len(reader.ids) == GOOD
    for i in reader.ids:                                   # every listed video reads back
        reader.frames(i), reader.mfcc(i)
    r = CliRunner().invoke(main, ["inspect", "--verify", str(out)])
    assert r.exit_code == 0, r.output
    r = preprocess(good, out)                              # now really complete
    assert "nothing to decode: the output is complete" in r.output


def test_changed_and_gone_sources_on_rerun(good, tmp_path):
    import hashlib
    import shutil
    import numpy as np
    root = tmp_path / "root"
    shutil.copytree(good, root)
    out = tmp_path / "out"
    assert preprocess(root, out).exit_code == 0
    changed, touched, deleted = root / "joy/joy_00.mp4", root / "fear/fear_00.mp4", \
        root / "anger/anger_01.mp4"
    shutil.copyfile(root / "joy/joy_01.mp4", changed)        # other content, same name
    os.utime(touched, ns=(1, 10**18))                        # only the mtime differs
    deleted.unlink()

    r = preprocess(root, out)
    assert r.exit_code == 0, r.output
    assert "source changed: 1 videos decoded again (joy/joy_00)" in r.output
    assert "decoded now: 1" in r.output                     # not the touched one
    assert "source gone: 1 listed videos no longer exist (anger/anger_01)" in r.output
    assert "--prune-missing" in r.output
    reader = ShardReader(out)
    meta = reader.meta("joy/joy_00")
    assert meta["sha1"] == hashlib.sha1(changed.read_bytes()).hexdigest()
    assert np.array_equal(reader.frames("joy/joy_00"), reader.frames("joy/joy_01"))
    assert reader.meta("fear/fear_00")["source_mtime_ns"] == 10**18
    assert "anger/anger_01" in reader.ids                    # kept without the flag
    keys = shard_keys(out)
    assert len(keys) == GOOD + 1                             # the old group stays, unlisted

    r = preprocess(root, out, "--prune-missing")
    assert r.exit_code == 0 and "removed from the index (--prune-missing)" in r.output
    assert "anger/anger_01" not in ShardReader(out).ids
    r = preprocess(root, out)
    assert "nothing to decode: the output is complete" in r.output and "source gone" not in r.output


@pytest.mark.parametrize("codec", ["raw", "jpeg"])
def test_checksums_catch_damaged_pixels(good, tmp_path, codec):
    import h5py
    out = tmp_path / "out"
    assert preprocess(good, out, "--codec", codec).exit_code == 0
    reader = ShardReader(out)
    vid = "joy/joy_01"
    shard = out / reader.meta(vid)["shard"]
    with h5py.File(shard, "r") as f:
        g = f[fmt.video_key(vid)]
        for name in fmt.ARRAYS:                              # recorded at write time
            if name in g:
                assert g[name].attrs[fmt.CHECKSUM] == fmt.checksum(g[name][()])
        ds = g[fmt.JPEG if codec == "jpeg" else fmt.FRAMES]
        offset, n = ds.id.get_offset(), min(ds.id.get_storage_size(), 1000)
    assert offset is not None                                # contiguous: damage it in place
    data = bytearray(shard.read_bytes())
    data[offset + 100:offset + 100 + n // 2] = bytes(255 - b for b in data[offset + 100:offset + 100 + n // 2])
    shard.write_bytes(bytes(data))

    r = CliRunner().invoke(main, ["inspect", "--verify", str(out)])
    assert r.exit_code == 1
    name = fmt.JPEG if codec == "jpeg" else fmt.FRAMES
    assert (f"problem: {vid}: {name} does not match its checksum in {shard.name}: the stored "
            "data is damaged") in r.output
    assert sum(line.startswith("problem:") for line in r.output.splitlines()) == 1, r.output


def test_damaged_metadata_in_a_worker_names_video_and_shard(good, tmp_path):
    import h5py
    from types import SimpleNamespace
    from trainer.loader import ClipDataset, make_loader
    from trainer.sample_errors import SampleError
    out = tmp_path / "out"
    assert preprocess(good, out).exit_code == 0
    reader = ShardReader(out)
    vid = reader.ids[0]
    shard = reader.meta(vid)["shard"]
    with h5py.File(out / shard, "r+") as f:
        del f[fmt.video_key(vid)][fmt.MFCC]
    cfg = SimpleNamespace(segments=2, frames=4, crop=32, audio_segments=2, audio_len=16,
                          n_mfcc=32, audio_sampling="aligned", streams="both")
    loader = make_loader(ClipDataset(reader, [vid], cfg, train=False), 1, train=False, workers=1)
    with pytest.raises(SampleError) as e:
        list(loader)
    msg = str(e.value)
    assert msg.startswith(f"cannot read video {vid!r} from {out / shard} (KeyError")
    assert "Traceback" not in msg and "vaanet inspect --verify" in msg \
        and "same `vaanet preprocess` command" in msg


def test_truncated_index_or_params_gives_one_sentence(good, tmp_path):
    out = tmp_path / "out"
    assert preprocess(good, out, "--limit", "2").exit_code == 0
    index = out / fmt.INDEX
    index.write_text(index.read_text()[:300])
    for args in (["inspect", str(out)], ["inspect", "--verify", str(out)],
                 ["train", "--data", str(out), "--preset", "demo", "--out", str(tmp_path / "r")]):
        r = CliRunner().invoke(main, args)
        assert r.exit_code == 2, (args, r.output)
        assert f"{index} is damaged (JSONDecodeError" in r.output and "--overwrite" in r.output
        assert "Traceback" not in r.output
    r = preprocess(good, out, "--limit", "2")
    assert r.exit_code == 2 and f"{index} is damaged" in r.output
    params = out / fmt.PARAMS
    params.write_text(params.read_text()[:50])
    r = preprocess(good, out, "--limit", "2")
    assert r.exit_code == 2 and f"{params} is damaged" in r.output
    r = preprocess(good, out, "--limit", "2", "--overwrite")   # the remedy it names
    assert r.exit_code == 0, r.output
    assert len(ShardReader(out).ids) == 2


def test_full_disk_during_preprocess(good, tmp_path, monkeypatch):
    import errno
    from pipeline.writer import ShardWriter
    out = tmp_path / "out"
    real_add, calls = ShardWriter.add, []

    def add(self, *a, **k):          # the 4th video finds the disk full, as h5py reports it
        calls.append(1)
        if len(calls) == 4:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_add(self, *a, **k)

    monkeypatch.setattr(ShardWriter, "add", add)
    r = preprocess(good, out)
    assert r.exit_code == 3, r.output
    assert (f"error: no space left on the device holding {out}: the videos already written "
            "there are kept") in r.output
    assert "run the same `vaanet preprocess` command again" in r.output
    assert "Traceback" not in r.output
    monkeypatch.setattr(ShardWriter, "add", real_add)
    r = preprocess(good, out)        # space freed: the same command completes, nothing lost
    assert r.exit_code == 0, r.output
    assert "already done: 3" in r.output and f"decoded now: {GOOD - 3}" in r.output
    keys = shard_keys(out)
    assert len(keys) == len(set(keys)) == GOOD


def invert_bytes(out, vid, codec="raw", n=400):
    """Flip n bytes of a video's frames inside its shard (the file still opens); the shard."""
    import h5py
    shard = out / ShardReader(out).meta(vid)["shard"]
    with h5py.File(shard, "r") as f:
        ds = f[fmt.video_key(vid)][fmt.JPEG if codec == "jpeg" else fmt.FRAMES]
        offset, size = ds.id.get_offset(), ds.id.get_storage_size()
    assert offset is not None and size > n + 50            # contiguous: damage it in place
    data = bytearray(shard.read_bytes())
    data[offset + 50:offset + 50 + n] = bytes(255 - b for b in data[offset + 50:offset + 50 + n])
    shard.write_bytes(bytes(data))
    return shard


def arrays(out):
    """Every listed video's stored arrays, as the reader returns them."""
    reader = ShardReader(out)
    return {i: (reader.frames(i), reader.mfcc(i)) for i in reader.ids}


@pytest.mark.parametrize("codec", ["raw", "jpeg"])
def test_rerun_decodes_videos_whose_data_fails_the_checksum(good, tmp_path, codec):
    import numpy as np
    out = tmp_path / "out"
    run = lambda *extra: preprocess(good, out, "--codec", codec, *extra)  # noqa: E731
    r = run()
    assert r.exit_code == 0 and "verif" not in r.output    # a first run checks nothing
    vid = "joy/joy_01"
    before = arrays(out)
    shard = invert_bytes(out, vid, codec)

    r = run("--no-verify")   # leaves it, and says so
    assert r.exit_code == 0, r.output
    assert "verification skipped (--no-verify)" in r.output
    assert "the output is complete" not in r.output and "decoded now" not in r.output
    assert CliRunner().invoke(main, ["inspect", "--verify", str(out)]).exit_code == 1

    r = run()                               # the same command repairs it
    assert r.exit_code == 0, r.output
    assert f"verified: {GOOD} stored videos" in r.output
    name = fmt.JPEG if codec == "jpeg" else fmt.FRAMES
    assert f"damaged: 1 stored videos decoded again: {vid} ({name} does not match its " \
           "checksum)" in r.output
    assert "decoded now: 1 " in r.output and "the output is complete" not in r.output
    reader = ShardReader(out)
    assert reader.meta(vid)["shard"] != shard.name          # the new copy, in a new shard
    r = CliRunner().invoke(main, ["inspect", "--verify", str(out)])
    assert r.exit_code == 0, r.output
    after = arrays(out)
    assert sorted(after) == sorted(before)
    for i, (frames, mfcc) in before.items():                # all bit-identical, the re-decoded too
        assert np.array_equal(after[i][0], frames) and np.array_equal(after[i][1], mfcc), i
    assert json.loads((out / fmt.INDEX).read_text())["run"] == {"complete": True, "expected": GOOD}
    r = run()
    assert "nothing to decode: the output is complete" in r.output and "damaged" not in r.output

    reader = ShardReader(out)                               # every video of one shard damaged
    shard = reader.meta("anger/anger_00")["shard"]
    ids = [i for i in reader.ids if reader.meta(i)["shard"] == shard]
    for i in ids:
        invert_bytes(out, i, codec)
    r = run()
    assert r.exit_code == 0 and f"damaged: {len(ids)} stored videos" in r.output, r.output
    assert not (out / shard).exists()                       # its videos are stored again
    assert CliRunner().invoke(main, ["inspect", "--verify", str(out)]).exit_code == 0


def test_damaged_metadata_is_refused_before_the_run_folder_and_repaired(good, tmp_path,
                                                                        monkeypatch):
    import h5py
    out = tmp_path / "out"
    assert preprocess(good, out).exit_code == 0
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps({
        "model": {"segments": 2, "frames": 4, "crop": 32, "audio_segments": 2, "audio_len": 16,
                  "visual_channels": 32, "audio_channels": 16},
        "epochs": 1, "batch_size": 2, "workers": 0, "val_fraction": 0, "freeze_visual": True}))
    train = ["train", "--data", str(out), "--preset", "demo", "--config", str(config),
             "--device", "cpu"]
    reader = ShardReader(out)
    vid = reader.split_ids(reader.splits[0], "train")[0]
    shard = out / reader.meta(vid)["shard"]
    with h5py.File(shard, "r+") as f:
        del f[fmt.video_key(vid)][fmt.MFCC]

    run = tmp_path / "run"
    for cmd in (train + ["--out", str(run)], ["ablate", "--attn", "VS", *train[1:], "--out", str(run)]):
        r = CliRunner().invoke(main, cmd)
        assert r.exit_code == 2, r.output
        assert (f"{shard}: the entry of video {vid!r} is damaged (dataset mfcc is missing); run "
                "the same `vaanet preprocess` command again") in r.output
        assert "Traceback" not in r.output and not run.exists()

    r = preprocess(good, out)                                # the remedy it names
    assert r.exit_code == 0, r.output
    assert f"damaged: 1 stored videos decoded again: {vid} (dataset mfcc is missing)" in r.output
    assert CliRunner().invoke(main, ["inspect", "--verify", str(out)]).exit_code == 0
    r = CliRunner().invoke(main, train + ["--out", str(run)])
    assert r.exit_code == 0, r.output
    assert (run / "last.pt").is_file() and (run / "results.md").is_file()

    other = ShardReader(out).split_ids(reader.splits[0], "test")[0]   # an attribute, for evaluate
    with h5py.File(out / ShardReader(out).meta(other)["shard"], "r+") as f:
        del f[fmt.video_key(other)].attrs["has_audio"]
    r = CliRunner().invoke(main, ["evaluate", "--run", str(run), "--device", "cpu"])
    assert r.exit_code == 2 and f"the entry of video {other!r} is damaged (attribute has_audio " \
        "missing)" in r.output, r.output
    r = CliRunner().invoke(main, ["inspect", "--verify", str(out)])
    assert r.exit_code == 1 and f"problem: {other}: its entry in " in r.output \
        and "is damaged: attribute has_audio missing" in r.output, r.output
    assert preprocess(good, out).exit_code == 0
    assert CliRunner().invoke(main, ["evaluate", "--run", str(run), "--device", "cpu",
                                     "--workers", "0"]).exit_code == 0

    # a failure after config.json is written removes the folder this run made, and only that
    import trainer.loader

    def broken(*a, **k):
        raise RuntimeError("no loader")
    monkeypatch.setattr(trainer.loader, "make_loader", broken)
    r = CliRunner().invoke(main, train + ["--out", str(tmp_path / "new" / "run")])
    assert isinstance(r.exception, RuntimeError) and not (tmp_path / "new").exists()
    (tmp_path / "mine").mkdir()
    r = CliRunner().invoke(main, train + ["--out", str(tmp_path / "mine")])
    assert isinstance(r.exception, RuntimeError) and (tmp_path / "mine").is_dir()
    # --split all: its own config.json goes too when no split got as far as a checkpoint
    r = CliRunner().invoke(main, train + ["--split", "all", "--out", str(tmp_path / "all")])
    assert isinstance(r.exception, RuntimeError) and not (tmp_path / "all").exists()


def test_a_damaged_video_outside_limit_is_said_to_be_only_dropped(good, tmp_path):
    out = tmp_path / "out"
    assert preprocess(good, out).exit_code == 0
    invert_bytes(out, "joy/joy_01")
    r = preprocess(good, out, "--limit", "1")     # round robin: the first class's first video
    assert r.exit_code == 0, r.output
    assert ("of those, 1 outside --limit were only removed from the index (run without --limit "
            "to decode them again): joy/joy_01") in r.output
    assert "joy/joy_01" not in ShardReader(out).ids
    r = preprocess(good, out)                     # without --limit: decoded again
    assert r.exit_code == 0 and "decoded now: 1 " in r.output, r.output
    assert CliRunner().invoke(main, ["inspect", "--verify", str(out)]).exit_code == 0
