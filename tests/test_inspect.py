"""`vaanet inspect`: summary, --json records, --verify that catches broken outputs."""
import json
import shutil

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from cli import main
from pipeline import format as fmt
from pipeline.demo import make_demo_videos
from pipeline.params import FORMAT_VERSION
from pipeline.reader import ShardReader
from tests import videos as gen


@pytest.fixture(scope="module")
def processed(tmp_path_factory):
    """4 demo videos (one per class), a silent one and a zero-byte file, preprocessed small."""
    base = tmp_path_factory.mktemp("inspect")
    root = make_demo_videos(base / "root", seed=2, per_class=1, duration=1.0, size=(64, 48))
    gen.write_video(root / "joy" / "silent.mp4", gen.counter_frames(20, 64, 48), pcm=None)
    gen.zero_byte(root / "fear" / "empty.mp4")
    r = CliRunner().invoke(main, [
        "preprocess", "--dataset", "demo", "--root", str(root), "--out", str(base / "out"),
        "--segments", "2", "--snippets", "1", "--frames", "4", "--short-side", "32", "--codec", "raw",
        "--max-long-side", "48", "--shard-size-mb", "0.06", "--jobs", "2", "-q"])
    assert r.exit_code == 1, r.output
    return base / "out"


def inspect(*args):
    return CliRunner().invoke(main, ["inspect", *map(str, args)])


def test_summary(processed):
    r = inspect(processed)
    assert r.exit_code == 0, r.output
    out = r.output
    assert f"dataset demo, format version {FORMAT_VERSION}" in out
    assert "videos: 6 (5 ok, 1 failed); 1 ok videos without audio" in out
    lines = {line.split()[1]: line.split() for line in out.splitlines()
             if line.strip() and line.split()[0].isdigit()}
    # label, class, polarity, ok, failed, train, test (split alternating: sorted files alternate)
    assert lines["anger"] == ["0", "anger", "negative", "1", "0", "1", "0"]
    assert lines["fear"] == ["1", "fear", "negative", "1", "1", "0", "1"]   # empty was train
    assert lines["joy"] == ["2", "joy", "positive", "2", "0", "1", "1"]
    assert "splits (ok videos, train/test): alternating: 3/2" in out
    assert "1 x zero-byte file: fear/empty" in out
    assert "MB in 3 shards" in out
    assert "frames=4" in out and "short_side=32" in out


def test_json_records(processed):
    r = inspect(processed, "--json")
    assert r.exit_code == 0
    recs = [json.loads(line) for line in r.output.splitlines()]
    assert [x["id"] for x in recs] == ["anger/anger_00", "fear/empty", "fear/fear_00",
                                      "joy/joy_00", "joy/silent", "surprise/surprise_00"]
    for x in recs:
        assert {"id", "label", "class", "splits", "has_audio", "frames_shape", "mfcc_shape",
                "status"} <= set(x)
    by_id = {x["id"]: x for x in recs}
    assert by_id["fear/empty"]["status"] == "failed" and by_id["fear/empty"]["frames_shape"] is None
    assert by_id["joy/silent"]["has_audio"] is False
    assert by_id["joy/joy_00"]["frames_shape"] == [1, 2, 4, 32, 43, 3]
    assert by_id["joy/joy_00"]["splits"] == {"alternating": "train"}


def test_verify_passes_then_catches_damage(processed, tmp_path):
    r = inspect(processed, "--verify")
    assert r.exit_code == 0 and "verify: OK (6 videos in the index)" in r.output

    broken = tmp_path / "broken"
    shutil.copytree(processed, broken)
    reader = ShardReader(broken)
    meta = reader.meta("joy/joy_00")
    with h5py.File(broken / meta["shard"], "r+") as f:
        f[fmt.video_key("joy/joy_00")][fmt.MFCC][3, 5] = np.nan
    index = json.loads((broken / fmt.INDEX).read_text())
    for v in index["videos"]:
        if v["id"] == "anger/anger_00":
            v["frames_shape"][4] = 99
    (broken / fmt.INDEX).write_text(json.dumps(index))
    # a shard holding neither damaged video (parallel jobs decide which video lands where)
    kept = {meta["shard"], reader.meta("anger/anger_00")["shard"]}
    lost = next(s for s in (reader.meta(v)["shard"] for v in reader.ids) if s not in kept)
    (broken / lost).unlink()
    r = inspect(broken, "--verify")
    assert r.exit_code == 1
    assert "problem: joy/joy_00: mfcc has non-finite values" in r.output
    assert "problem: anger/anger_00: frames shape [1, 2, 4, 32, 43, 3], index says " \
           "[1, 2, 4, 32, 99, 3]" in r.output
    assert f"problem: {lost}: listed in the index, missing on disk" in r.output
    assert "problems (6 videos in the index)" in r.output


def test_not_a_preprocessed_directory(tmp_path):
    r = inspect(tmp_path)
    assert r.exit_code == 2 and "no index.json" in r.output
    assert inspect(tmp_path / "nope").exit_code == 2
