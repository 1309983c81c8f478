"""The paper's random snippet per segment, end to end: default `preprocess` (JPEG frames,
8 start positions per segment) on a 60 s frame-counter video, then the loader over 16 epochs."""
import warnings
from types import SimpleNamespace

import numpy as np
import pytest

from pipeline import preprocess
from pipeline.params import PreprocessParams
from pipeline.reader import ShardReader
from tests.videos import counter_frames, read_counter, write_video
from trainer import sampling
from trainer.loader import ClipDataset

FPS, SECONDS = 25, 60
# the defaults except the size of the frames: square, so that any crop shows the whole counter
PARAMS = PreprocessParams(short_side=48, max_long_side=48)


@pytest.fixture(scope="module")
def reader(tmp_path_factory):
    root = tmp_path_factory.mktemp("videos")
    (root / "joy").mkdir()
    write_video(root / "joy" / "long.mp4", counter_frames(FPS * SECONDS, 48, 48), fps=FPS)
    (root / "anger").mkdir()
    write_video(root / "anger" / "tiny.mp4", counter_frames(40, 48, 48), fps=FPS)
    out = tmp_path_factory.mktemp("shards")
    with warnings.catch_warnings():   # the demo classes without a folder here
        warnings.simplefilter("ignore")
        res = preprocess.run("demo", root, out, PARAMS, jobs=1, progress=False, echo=lambda *a: None)
    assert res.ok_total == 2
    r = ShardReader(out)
    yield r
    r.close()


def config(**kw):
    base = dict(segments=10, frames=16, crop=48, audio_segments=10, audio_len=8, n_mfcc=32,
                streams="visual")
    return SimpleNamespace(**{**base, **kw})


def first_frames(ds, index) -> list[int]:
    """The source frame number each segment's snippet starts at, read from the decoded pixels."""
    clip = ds[index]["visual"].numpy()                  # [t, k, crop, crop, 3]
    got = [[read_counter(f) for f in seg] for seg in clip]
    for seg in got:                                     # k successive frames of the source
        assert seg == list(range(seg[0], seg[0] + len(seg))), seg
    return [seg[0] for seg in got]


def test_defaults_store_jpeg_and_8_positions(reader):
    assert PreprocessParams().codec == "jpeg" and PreprocessParams().snippets == 8
    assert reader.params.codec == "jpeg"
    assert reader.meta("joy/long")["frames_shape"] == [8, 10, 16, 48, 48, 3]


def test_16_epochs_see_8_positions_per_segment_eval_one(reader):
    i = reader.ids.index("joy/long")
    train = ClipDataset(reader, reader.ids, config(), train=True, seed=0)
    seen = []
    for epoch in range(16):
        train.set_epoch(epoch)
        seen.append(first_frames(train, i))
    seen = np.array(seen)                               # [epoch, segment]
    seg_len = FPS * SECONDS / 10
    for s in range(10):
        starts = set(seen[:, s].tolist())
        assert len(starts) >= 8, (s, sorted(starts))
        # inside the segment, spread over it (not bunched at its middle)
        assert all(s * seg_len <= f and f + 16 <= (s + 1) * seg_len + 1 for f in starts)
        assert max(starts) - min(starts) > seg_len / 2
    assert len({tuple(r) for r in seen}) == 16          # every epoch a new draw
    # a pure function of (seed, epoch, sample): drawn again, the same
    train.set_epoch(5)
    assert first_frames(train, i) == seen[5].tolist()

    ev = ClipDataset(reader, reader.ids, config(), train=False)
    evals = set()
    for epoch in range(16):
        ev.set_epoch(epoch)
        evals.add(tuple(first_frames(ev, i)))
    assert len(evals) == 1
    # the middle position (S // 2 = 4 of 8) of every segment
    middle = [int(round((s * 8 + 4 + 0.5) * seg_len / 8 - 8)) for s in range(10)]
    assert np.abs(np.array(evals.pop()) - middle).max() <= 1


def test_snippet_choice_blocks_visit_every_position():
    for seed in range(3):
        got = np.array([sampling.snippet_choice(8, 5, seed, e, 7) for e in range(16)])
        for s in range(5):
            assert sorted(got[:8, s]) == list(range(8)) and sorted(got[8:, s]) == list(range(8))
    assert (sampling.snippet_choice(8, 5, None, 3, 7) == 4).all()
    assert not np.array_equal(sampling.snippet_choice(8, 5, 0, 0, 1),
                              sampling.snippet_choice(8, 5, 0, 0, 2))


def test_short_video_gets_a_note(reader):
    notes = reader.meta("anger/tiny")["notes"]
    assert any("too short for 8 snippet positions" in n for n in notes), notes
    assert not any("snippet positions" in n for n in reader.meta("joy/long")["notes"])
