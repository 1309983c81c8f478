"""pipeline/atomic.py: whole files or nothing, with the user's umask, for every file vaanet writes."""
import os
import stat

import pytest

from pipeline import atomic
from pipeline import format as fmt
from pipeline import preprocess
from pipeline.demo import make_demo_videos
from pipeline.params import PreprocessParams
from tests import videos as gen


@pytest.fixture
def umask():
    """Set the process umask for one test, then restore it."""
    saved = os.umask(0o022)
    yield lambda mask: os.umask(mask)
    os.umask(saved)


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_every_written_file_gets_the_umask_mode(umask, train_data, tmp_path):
    from trainer import run_config
    from trainer.train import train
    umask(0o022)
    root = make_demo_videos(tmp_path / "videos", seed=2, per_class=1, duration=0.5, size=(48, 32))
    gen.not_a_video(root / "fear" / "garbage.avi")  # one failure: failures.jsonl gets a line
    params = PreprocessParams(segments=2, snippets=1, frames=2, short_side=24, max_long_side=32)
    out = tmp_path / "shards"
    res = preprocess.run("demo", root, out, params, jobs=1, progress=False, echo=lambda *a: None)
    assert res.ok_total == 4
    assert fmt.read_jsonl(out / fmt.FAILURES)[0]["id"] == "fear/garbage"
    for name in (fmt.INDEX, fmt.PARAMS, fmt.SPLITS, fmt.FAILURES):
        assert mode(out / name) == 0o644, name
    run_dir = tmp_path / "run"
    train(run_config.resolve(train_data.run(run_dir, epochs=1)), quiet=True)
    for name in ("config.json", "last.pt", "best.pt", "results.json", "results.md",
                 "predictions-best-test.csv", "metrics.jsonl"):
        assert mode(run_dir / name) == 0o644, name


def test_mode_follows_another_umask(umask, tmp_path):
    umask(0o027)
    atomic.write_json(tmp_path / "a.json", {"x": 1})
    with atomic.open(tmp_path / "b.bin", "wb") as f:
        f.write(b"\0")
    atomic.copy(tmp_path / "a.json", tmp_path / "c.json")
    assert [mode(tmp_path / n) for n in ("a.json", "b.bin", "c.json")] == [0o640] * 3
    assert atomic.current_umask() == 0o027


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    path = tmp_path / "results.json"
    atomic.write_json(path, {"old": True})
    with pytest.raises(TypeError):  # not JSON-serialisable
        atomic.write_json(path, {"new": object()})
    with pytest.raises(RuntimeError, match="mid-write"):
        with atomic.open(path, "w") as f:
            f.write('{"half')
            raise RuntimeError("mid-write")
    assert path.read_text() == '{\n "old": true\n}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.json"]


def test_only_if_changed_leaves_an_identical_file_untouched(tmp_path):
    path = tmp_path / "index.json"
    assert atomic.write_json(path, [1, 2], only_if_changed=True)
    before = os.stat(path).st_ino
    assert not atomic.write_json(path, [1, 2], only_if_changed=True)
    assert os.stat(path).st_ino == before
    assert atomic.write_json(path, [1, 2])  # without it: a new file
    assert os.stat(path).st_ino != before
