"""Split rules: alternating per class, stratified seeded 2/3 runs, split files."""
import json
from pathlib import Path

import pytest

from pipeline.datasets import Video, load_definition
from pipeline.splits import alternating, make_splits, membership, read_split_file, stratified


def videos(counts):
    out = []
    for label, (cls, n) in enumerate(counts.items()):
        out += [Video(f"{cls}/v{i:02d}", label, cls, Path(f"/x/{cls}/v{i:02d}.mp4"))
                for i in range(n)]
    return out


def test_alternating_per_class_sorted():
    vs = videos({"anger": 5, "joy": 2})
    sp = alternating(list(reversed(vs)))["alternating"]
    assert sp["train"] == ["anger/v00", "anger/v02", "anger/v04", "joy/v00"]
    assert sp["test"] == ["anger/v01", "anger/v03", "joy/v01"]


def test_stratified_two_thirds_per_class_and_seeded():
    vs = videos({"Anger": 30, "Joy": 9, "Trust": 4})
    a = stratified(vs, runs=10, seed=0)
    assert list(a) == [str(r) for r in range(10)]
    for sp in a.values():
        assert sorted(sp["train"] + sp["test"]) == sorted(v.id for v in vs)   # a partition
        for cls, n in {"Anger": 30, "Joy": 9, "Trust": 4}.items():
            assert sum(i.startswith(cls + "/") for i in sp["train"]) == round(2 / 3 * n)
    assert a == stratified(list(reversed(vs)), runs=10, seed=0)   # order of the scan is irrelevant
    assert len({tuple(sp["train"]) for sp in a.values()}) == 10    # the runs differ
    assert stratified(vs, runs=10, seed=1) != a


def test_make_splits_follows_the_definition():
    vs = videos({"anger": 4, "joy": 4})
    e6 = make_splits(vs, load_definition("e6"))
    assert e6["kind"] == "alternating" and list(e6["splits"]) == ["alternating"]
    ve8 = make_splits(vs, load_definition("ve8"), seed=3)
    assert ve8["seed"] == 3 and list(ve8["splits"]) == [str(r) for r in range(10)]
    m = membership(e6["splits"])
    assert m["anger/v00"] == {"alternating": "train"} and m["anger/v01"] == {"alternating": "test"}


def test_text_split_file(tmp_path):
    vs = videos({"anger": 3, "joy": 2})
    f = tmp_path / "split.txt"
    f.write_text("# part id\ntrain anger/v00.mp4\nANGER/v01 test\ntrain anger/v02\n"
                 "test joy/v00\n\njoy/v01 train\n")
    sp = make_splits(vs, load_definition("e6"), split_file=f)
    assert sp["kind"] == "file"
    assert sp["splits"] == {"given": {"train": ["anger/v00", "anger/v02", "joy/v01"],
                                      "test": ["anger/v01", "joy/v00"]}}
    f.write_text("train anger/v00\nvalidate anger/v01\n")
    with pytest.raises(ValueError, match=r"split.txt:2: expected 'train\|test CLASS/NAME'"):
        read_split_file(f, vs)
    f.write_text("train anger/v00\ntest anger/v00\n")
    with pytest.raises(ValueError, match="puts 1 videos in train and test"):
        read_split_file(f, vs)
    f.write_text("train fear/zz\n")
    with pytest.raises(ValueError, match="none of its ids matches"):
        read_split_file(f, vs)
    f.write_text("train anger/v00\ntest fear/zz\n")
    with pytest.warns(UserWarning, match="not under the root"):
        with pytest.warns(UserWarning, match="4 videos are in no split"):
            read_split_file(f, vs)


def test_json_split_file_round_trips_splits_json(tmp_path):
    vs = videos({"Anger": 6, "Joy": 6})
    made = make_splits(vs, load_definition("ve8"))
    f = tmp_path / "splits.json"
    f.write_text(json.dumps(made))          # a splits.json of one output reused for another
    assert read_split_file(f, vs) == made["splits"]
    f.write_text(json.dumps({"train": ["Anger/v00"], "test": ["Joy/v00"]}))
    with pytest.warns(UserWarning):
        assert read_split_file(f, vs) == {"given": {"train": ["Anger/v00"], "test": ["Joy/v00"]}}


def test_split_file_exact_ids_tabs_and_hashes(tmp_path):
    from types import SimpleNamespace
    from pipeline.splits import read_split_file
    videos = [SimpleNamespace(id=i) for i in ("anger/Clip", "anger/clip", "anger/clip#1", "joy/x")]
    f = tmp_path / "s.txt"
    f.write_text("train\tanger/Clip\ntest anger/clip  # the lower-case one\n"
                 "anger/clip#1\ttrain\n# a whole-line comment\nJOY/x test\n")
    split = read_split_file(f, videos)["given"]
    assert split["train"] == ["anger/Clip", "anger/clip#1"]
    assert split["test"] == ["anger/clip", "joy/x"]
