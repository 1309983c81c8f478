"""Index logic of the loader: segments, snippets, frame windows, crops, audio windows."""
import numpy as np
import pytest

from trainer import sampling


def test_segment_indices_even_spread():
    assert sampling.segment_indices(10, 10).tolist() == list(range(10))
    # 12 stored, 4 wanted: centres of 4 equal parts of 12 -> 1.5, 4.5, 7.5, 10.5
    assert sampling.segment_indices(12, 4).tolist() == [1, 4, 7, 10]
    assert sampling.segment_indices(10, 5).tolist() == [1, 3, 5, 7, 9]
    # more wanted than stored: every stored segment used, some twice, in order
    idx = sampling.segment_indices(4, 6)
    assert sorted(set(idx.tolist())) == [0, 1, 2, 3] and (np.diff(idx) >= 0).all()
    with pytest.raises(ValueError, match="positive"):
        sampling.segment_indices(0, 3)


def test_snippet_and_frame_windows():
    assert sampling.snippet_index(1, None) == 0
    assert sampling.snippet_index(3, None) == 1
    rng = np.random.default_rng(0)
    assert {sampling.snippet_index(3, rng) for _ in range(100)} == {0, 1, 2}

    assert sampling.frame_starts(16, 8, 3, None).tolist() == [4, 4, 4]
    assert sampling.frame_starts(16, 16, 2, rng).tolist() == [0, 0]
    starts = sampling.frame_starts(16, 12, 1000, rng)
    assert starts.min() == 0 and starts.max() == 4
    with pytest.raises(ValueError, match="wants 32 frames .* hold 16"):
        sampling.frame_starts(16, 32, 1, None)


def test_crop_origin():
    assert sampling.crop_origin(112, 200, 112, None) == (0, 44)
    assert sampling.crop_origin(120, 161, 100, None) == (10, 30)
    rng = np.random.default_rng(1)
    ys, xs = zip(*[sampling.crop_origin(70, 90, 64, rng) for _ in range(500)])
    assert (min(ys), max(ys), min(xs), max(xs)) == (0, 6, 0, 26)
    with pytest.raises(ValueError, match="does not fit"):
        sampling.crop_origin(60, 90, 64, None)


def test_crop_origin_authors_rounding():
    # 16:9 at short side 112 is 199 wide: margin 87, the authors' int(round(43.5)) = 44
    assert sampling.crop_origin(112, 199, 112, None) == (0, 43)
    assert sampling.crop_origin(112, 199, 112, None, centre="round") == (0, 44)
    # Python 3 rounds half to even: 44.5 -> 44, the same as the floor
    assert sampling.crop_origin(112, 201, 112, None, centre="round") == (0, 44)
    assert sampling.crop_origin(115, 112, 112, None, centre="round") == (2, 0)
    rng = np.random.default_rng(1)
    assert sampling.crop_origin(70, 90, 64, rng, centre="round") == \
        sampling.crop_origin(70, 90, 64, np.random.default_rng(1))   # training draws alike
    with pytest.raises(ValueError, match="centre must be one of"):
        sampling.crop_origin(112, 199, 112, None, centre="middle")


def test_audio_official_tiles_and_cuts():
    seq = np.arange(10 * 2, dtype=np.float32).reshape(10, 2)
    out = sampling.audio_official(seq, 3, 8)            # needs 24 frames: 10 + 10 + 4
    assert out.shape == (3, 8, 2) and out.dtype == np.float32
    flat = out.reshape(24, 2)
    assert (flat[:10] == seq).all() and (flat[10:20] == seq).all() and (flat[20:] == seq[:4]).all()
    out = sampling.audio_official(seq, 2, 3)            # cut to the first 6 frames
    assert (out.reshape(6, 2) == seq[:6]).all()
    assert (sampling.audio_official(seq[:0], 2, 3) == 0).all()


def test_audio_aligned_centred_clamped_tiled():
    total, n = 1000, 3
    seq = np.random.default_rng(0).normal(size=(total, n)).astype(np.float32)
    # 10 s at 100 frames/s in 10 stored segments: segment s is centred on frame 100 s + 50
    out = sampling.audio_aligned(seq, np.arange(10), 10, 10.0, 40, 100.0)
    for s in range(10):
        assert (out[s] == seq[100 * s + 30:100 * s + 70]).all()
    # windows longer than a segment are shifted to stay inside the sequence
    out = sampling.audio_aligned(seq, np.array([0, 9]), 10, 10.0, 300, 100.0)
    assert (out[0] == seq[:300]).all() and (out[1] == seq[700:]).all()
    # a sequence shorter than the window is tiled from its start
    short = seq[:30]
    out = sampling.audio_aligned(short, np.array([0, 5]), 10, 0.3, 70, 100.0)
    expect = np.concatenate([short, short, short[:10]])
    assert (out[0] == expect).all() and (out[1] == expect).all()
    assert (sampling.audio_aligned(seq[:0], np.arange(2), 2, 1.0, 5, 100.0) == 0).all()


def paper_audio_by_hand(mfcc, t, length):
    """The paper's rule written out independently: centre crop of q frames, tiled when short."""
    q = t * length
    if len(mfcc) >= q:
        lo = (len(mfcc) - q) // 2
        crop = mfcc[lo:lo + q]
    else:
        crop = np.tile(mfcc, (q // len(mfcc) + 1, 1))[:q]
    return np.stack(np.split(crop, t))


@pytest.mark.parametrize("total", [1, 7, 24, 25, 100, 1001])
def test_audio_paper_centre_crop_tile_split(total):
    seq = np.random.default_rng(total).normal(size=(total, 3)).astype(np.float32)
    out = sampling.audio_paper(seq, 4, 6)
    assert out.shape == (4, 6, 3) and out.dtype == np.float32
    assert np.array_equal(out, paper_audio_by_hand(seq, 4, 6))
    if total >= 24:   # the crop is centred: as many frames left out before as after (+- 1)
        first = int(np.flatnonzero((seq == out[0, 0]).all(1))[0])
        assert abs(first - (total - 24 - first)) <= 1
    assert (sampling.audio_paper(seq[:0], 2, 3) == 0).all()
