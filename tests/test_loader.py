"""The streaming loader on real shards: a few tiny generated videos, preprocessed by the ETL."""
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from pipeline import preprocess
from pipeline.demo import AUDIO_RATE, encode
from trainer import loader as loader_module
from trainer import sampling
from trainer.loader import ClipDataset, DataWaitMeter, make_loader, to_device_batch
from pipeline.params import PreprocessParams
from pipeline.reader import ShardReader

PARAMS = PreprocessParams(segments=4, snippets=2, frames=8, short_side=64, max_long_side=96)
# id -> (seconds, has audio); "surprise/short" has fewer MFCC frames (~60) than a 64-frame window
VIDEOS = {"anger/a": (2.0, True), "fear/b": (1.6, True), "joy/mute": (2.0, False),
          "surprise/short": (0.6, True)}


@pytest.fixture(scope="module")
def reader(tmp_path_factory):
    root = tmp_path_factory.mktemp("videos")
    for i, (vid, (seconds, audio)) in enumerate(VIDEOS.items()):
        rng = np.random.default_rng(i)
        n = int(seconds * 25)
        frames = rng.integers(0, 256, (n, 72, 96, 3), dtype=np.uint8)  # noise: every crop is unique
        t = np.arange(int(seconds * AUDIO_RATE)) / AUDIO_RATE
        pcm = (8000 * np.sin(2 * np.pi * 300 * (i + 1) * t) * (1 + t)).astype(np.int16) if audio else None
        (root / vid).parent.mkdir(exist_ok=True)
        encode(root / f"{vid}.mp4", frames, pcm, 25)
    out = tmp_path_factory.mktemp("shards")
    res = preprocess.run("demo", root, out, PARAMS, jobs=1, progress=False, echo=lambda *a: None)
    assert res.ok_total == len(VIDEOS)
    r = ShardReader(out)
    yield r
    r.close()


def config(**kw):
    base = dict(segments=4, frames=8, crop=64, audio_segments=4, audio_len=32, n_mfcc=32,
                audio_sampling="aligned", streams="both")
    return SimpleNamespace(**{**base, **kw})


def test_eval_item_is_middle_snippet_centre_crop(reader):
    ds = ClipDataset(reader, reader.ids, config(), train=False)
    for i, vid in enumerate(reader.ids):
        item = ds[i]
        assert item["visual"].dtype == torch.uint8 and item["visual"].shape == (4, 8, 64, 64, 3)
        assert item["audio"].dtype == torch.float32 and item["audio"].shape == (4, 32, 32)
        assert item["label"].dtype == torch.int64 and item["label"].item() == reader.meta(vid)["label"]
        assert item["index"].item() == i
        stored = reader.frames(vid)                      # [S, t, k, H, W, 3], S = 2
        h, w = stored.shape[3:5]
        y, x = (h - 64) // 2, (w - 64) // 2
        expect = stored[1, :, :, y:y + 64, x:x + 64]
        assert np.array_equal(item["visual"].numpy(), expect)
        # evaluation is deterministic, whatever the epoch
        ds.set_epoch(5)
        assert torch.equal(ds[i]["visual"], item["visual"]) and torch.equal(ds[i]["audio"], item["audio"])
        ds.set_epoch(0)
    assert reader.meta(reader.ids[0])["frames_shape"][3:5] == [64, 85]  # 96x72 -> 85x64: crops vary in x


def test_eval_fewer_segments_and_frames(reader):
    ds = ClipDataset(reader, reader.ids, config(segments=2, frames=4, crop=48), train=False)
    stored = reader.frames(reader.ids[0])
    h, w = stored.shape[3:5]
    y, x = (h - 48) // 2, (w - 48) // 2
    # 2 of 4 segments evenly spaced: 1 and 3; 4 of 8 frames centred: 2..5
    expect = stored[1][[1, 3], 2:6, y:y + 48, x:x + 48]
    assert np.array_equal(ds[0]["visual"].numpy(), expect)


def find_origin(stored, out, seg, k, crop):
    """Search every snippet / frame window / crop position for the one `out` was cut from."""
    found = []
    S, _, K, H, W, _ = stored.shape
    for j in range(S):
        for s0 in range(K - k + 1):
            # candidates: positions whose top-left pixel matches, then the full comparison
            corner = (stored[j, seg, s0, :H - crop + 1, :W - crop + 1] == out[0, 0, 0]).all(-1)
            for y, x in np.argwhere(corner):
                if np.array_equal(stored[j, seg, s0:s0 + k, y:y + crop, x:x + crop], out):
                    found.append((j, s0, int(y), int(x)))
    return found


def test_train_item_is_a_random_piece_of_the_stored_video(reader):
    ds = ClipDataset(reader, reader.ids, config(segments=2, frames=6, crop=56), train=True, seed=3)
    vid = reader.ids[0]
    stored = reader.frames(vid)
    picks = []
    for epoch in range(4):
        ds.set_epoch(epoch)
        clip = ds[0]["visual"].numpy()                            # [t, k, c, c, 3]
        origins = [find_origin(stored, clip[i], seg, 6, 56) for i, seg in enumerate([1, 3])]
        assert all(len(o) == 1 for o in origins), origins
        (j0, s0, y0, x0), (j1, s1, y1, x1) = origins[0][0], origins[1][0]
        assert (y0, x0) == (y1, x1)              # one crop for the whole clip
        # each segment's own snippet: the one snippet_choice draws for it this epoch
        assert [j0, j1] == sampling.snippet_choice(2, 2, 3, epoch, 0).tolist()
        picks.append((j0, j1, s0, s1, y0, x0))
        # same seed and epoch: the same sample
        assert torch.equal(ds[0]["visual"], torch.from_numpy(clip.copy()))
    assert len(set(picks)) == 4                   # every epoch cuts a different piece
    other = ClipDataset(reader, reader.ids, config(segments=2, frames=6, crop=56), train=True, seed=4)
    other.set_epoch(3)
    assert not torch.equal(other[0]["visual"], ds[0]["visual"])


def aligned_expect(mfcc, duration, segments, length):
    """Direct computation: window of `length` frames (100/s) centred on each segment's middle."""
    out = []
    for s in range(segments):
        middle_s = (s + 0.5) * duration / segments
        start = int(round(middle_s * 100 - length / 2))
        start = max(0, min(start, len(mfcc) - length))
        out.append(mfcc[start:start + length])
    return np.stack(out)


def test_audio_aligned_official_tiled_and_missing(reader):
    ids = reader.ids
    aligned = ClipDataset(reader, ids, config(audio_len=64), train=False)
    official = ClipDataset(reader, ids, config(audio_segments=3, audio_len=100, audio_sampling="official"),
                           train=False)
    for i, vid in enumerate(ids):
        meta, mfcc = reader.meta(vid), reader.mfcc(vid)
        a, o = aligned[i]["audio"].numpy(), official[i]["audio"].numpy()
        assert a.shape == (4, 64, 32) and o.shape == (3, 100, 32)
        if not meta["has_audio"]:
            assert vid == "joy/mute" and not a.any() and not o.any()
            continue
        assert mfcc.std() > 0
        if len(mfcc) >= 64:
            assert np.array_equal(a, aligned_expect(mfcc, meta["duration"], 4, 64))
        else:                                      # shorter than a window: tiled from its start
            assert vid == "surprise/short"
            tiled = np.concatenate([mfcc, mfcc])[:64]
            assert all(np.array_equal(a[s], tiled) for s in range(4))
        # official: the whole sequence tiled to 300 frames (all of these are shorter), 3 chunks
        assert len(mfcc) < 300
        reps = np.concatenate([mfcc] * (300 // len(mfcc) + 1))[:300]
        assert np.array_equal(o, reps.reshape(3, 100, 32))


def test_loader_batches_same_for_any_worker_count(reader):
    ds = ClipDataset(reader, reader.ids * 2, config(frames=6, crop=56), train=True, seed=1)
    runs = {}
    for workers in (0, 2):
        loader = make_loader(ds, batch_size=4, train=True, workers=workers, seed=7)
        batches = []
        for epoch in (0, 1):
            loader.sampler.set_epoch(epoch)
            batches.append(list(loader))
        runs[workers] = batches
        del loader
    for e in (0, 1):
        assert [b["index"].tolist() for b in runs[0][e]] == [b["index"].tolist() for b in runs[2][e]]
        for b0, b2 in zip(runs[0][e], runs[2][e]):
            assert b0["visual"].shape == (4, 4, 6, 56, 56, 3)
            assert all(torch.equal(b0[k], b2[k]) for k in ("visual", "audio", "label"))
    order = [sum((b["index"].tolist() for b in runs[0][e]), []) for e in (0, 1)]
    assert sorted(order[0]) == sorted(order[1]) == list(range(8)) and order[0] != order[1]
    # eval keeps the index order
    loader = make_loader(ClipDataset(reader, reader.ids, config(), train=False), 3, train=False, workers=0)
    assert sum((b["index"].tolist() for b in loader), []) == [0, 1, 2, 3]


def test_distributed_sampler_splits_the_data(reader):
    ds = ClipDataset(reader, reader.ids * 2, config(), train=True, seed=0)
    orders = {}
    for epoch in (0, 1):
        parts = []
        for rank in (0, 1):
            loader = make_loader(ds, 2, train=True, workers=0, seed=3, distributed=True,
                                 rank=rank, world_size=2)
            loader.sampler.set_epoch(epoch)
            parts.append(sum((b["index"].tolist() for b in loader), []))
        assert len(parts[0]) == len(parts[1]) == 4 and sorted(parts[0] + parts[1]) == list(range(8))
        orders[epoch] = parts
    assert orders[0] != orders[1]


def test_flip_on_device_and_stream_switches(reader):
    ds = ClipDataset(reader, reader.ids, config(streams="visual"), train=False)
    batch = next(iter(make_loader(ds, 4, train=False, workers=0)))
    assert batch["audio"].numel() == 0
    out = to_device_batch(batch, "cpu", train=True, generator=torch.Generator().manual_seed(0))
    assert out["audio"] is None and out["label"].tolist() == batch["label"].tolist()
    flip = torch.rand(4, generator=torch.Generator().manual_seed(0)) < 0.5
    assert 0 < flip.sum() < 4                      # this seed flips some and keeps some
    # on the device the clips become channels-first [B, t, 3, k, H, W]; a flip mirrors W
    first = batch["visual"].permute(0, 1, 5, 2, 3, 4)
    for i in range(4):
        expect = first[i].flip(-1) if flip[i] else first[i]
        assert torch.equal(out["visual"][i], expect)
    assert out["visual"].dtype == torch.uint8 and out["visual"].is_contiguous()
    assert torch.equal(to_device_batch(batch, "cpu", train=False)["visual"], first)
    all_flipped = to_device_batch(batch, "cpu", train=True, flip_p=1.0)["visual"]
    assert torch.equal(all_flipped, first.flip(-1))

    audio_only = ClipDataset(reader, reader.ids, config(streams="audio"), train=True)
    item = audio_only[0]
    assert item["visual"].numel() == 0 and item["audio"].shape == (4, 32, 32)


def test_real_config_feeds_the_model(reader):
    from model.config import preset
    from model.vaanet import VAANet
    cfg = preset("demo")
    ds = ClipDataset(reader, reader.ids, cfg, train=True)
    batch = to_device_batch(next(iter(make_loader(ds, 2, train=True, workers=0))), "cpu", train=True)
    assert batch["visual"].shape == (2, 4, 3, 8, 64, 64) and batch["audio"].shape == (2, 4, 64, 32)
    torch.manual_seed(0)
    with torch.no_grad():
        logits = VAANet(cfg).eval()(batch["visual"], batch["audio"]).logits
    assert logits.shape == (2, 4) and torch.isfinite(logits).all()


def test_bad_inputs(reader):
    with pytest.raises(ValueError, match="crop 72 is larger than the shards' short side 64"):
        ClipDataset(reader, reader.ids, config(crop=72), train=True)
    with pytest.raises(ValueError, match="wants 16 frames per segment but the shards hold 8"):
        ClipDataset(reader, reader.ids, config(frames=16), train=True)
    with pytest.raises(ValueError, match="wants 40 MFCC"):
        ClipDataset(reader, reader.ids, config(n_mfcc=40), train=True)
    with pytest.raises(ValueError, match="not in the shards .*'joy/nope'"):
        ClipDataset(reader, ["joy/nope"], config(), train=True)
    with pytest.raises(ValueError, match="audio_sampling must be one of"):
        ClipDataset(reader, reader.ids, config(audio_sampling="centre"), train=True)


class FakeClock:
    """Stands in for the time module inside trainer.loader: time moves only when told to."""

    def __init__(self):
        self.now = 100.0

    def perf_counter(self):
        return self.now


def test_data_wait_meter(monkeypatch):
    """The meter's bookkeeping on a clock it cannot race: each batch takes 0.05 to arrive and
    each step 0.05 more (real timings belong to bench/loader.py)."""
    clock = FakeClock()
    monkeypatch.setattr(loader_module, "time", clock)

    def batches():
        for size in (2, 2, 2, 3):
            clock.now += 0.05                      # waiting for the batch
            yield {"label": torch.zeros(size, dtype=torch.int64)}

    meter = DataWaitMeter()
    for _ in meter.wrap(batches()):
        clock.now += 0.05                          # the "training step"
    s = meter.summary()
    assert s["steps"] == 4 and s["samples"] == 9
    assert s["wait_s"] == pytest.approx(0.2) and s["step_s"] == pytest.approx(0.4)
    assert s["wait_fraction"] == pytest.approx(0.5) and s["first_wait_s"] == pytest.approx(0.05)
    assert s["samples_per_s"] == pytest.approx(9 / 0.4)
    meter.reset()
    assert meter.summary() == {"steps": 0, "samples": 0, "wait_s": 0.0, "step_s": 0.0,
                               "wait_fraction": 0.0, "samples_per_s": 0.0, "first_wait_s": 0.0}


def test_data_wait_meter_on_the_real_clock():
    """Real time: the wait is part of the step."""
    meter = DataWaitMeter()
    for _ in meter.wrap([{"label": torch.zeros(2)}, [1, 2], {"label": torch.zeros(5)}]):
        torch.zeros(1000).sum()
    s = meter.summary()
    assert s["steps"] == 3 and s["samples"] == 8   # a batch without labels counts as one sample
    assert 0 <= s["wait_s"] <= s["step_s"] and 0 <= s["wait_fraction"] <= 1


def test_worker_batches_equal_the_stacked_items(reader):
    """__getitems__ (batches built in shared memory inside the workers) gives what
    default_collate makes of the items, for both streams and in train mode."""
    from torch.utils.data import default_collate
    ds = ClipDataset(reader, reader.ids * 2, config(), train=True, seed=5)
    loader = make_loader(ds, batch_size=3, train=True, workers=2, seed=1)
    loader.sampler.set_epoch(2)
    for batch in loader:
        items = default_collate([ds[(int(i), 2)] for i in batch["index"]])
        assert batch.keys() - {"slot"} == items.keys()
        for k in items:
            assert batch[k].dtype == items[k].dtype and torch.equal(batch[k], items[k]), k
    visual_only = ClipDataset(reader, reader.ids, config(streams="visual"), train=False)
    batch = visual_only.__getitems__([0, 1])
    assert batch["audio"].shape == (2, 0) and batch["visual"].shape == (2, 4, 8, 64, 64, 3)


def test_audio_paper_mode_is_the_centre_crop_of_the_soundtrack(reader):
    from tests.test_sampling import paper_audio_by_hand
    ds = ClipDataset(reader, reader.ids, config(audio_len=40, audio_sampling="paper"), train=True)
    for i, vid in enumerate(reader.ids):
        got = ds[i]["audio"].numpy()
        if not reader.meta(vid)["has_audio"]:
            assert (got == 0).all()
            continue
        assert np.array_equal(got, paper_audio_by_hand(reader.mfcc(vid), 4, 40))


def test_channels_last_batch_keeps_its_memory_order(reader):
    """channels_last=True: same values as the contiguous clips, memory order kept
    ([B, t, k, H, W, 3]), and the model's segment-major input is channels_last_3d."""
    from model.vaanet import segment_major
    ds = ClipDataset(reader, reader.ids, config(streams="visual"), train=False)
    batch = next(iter(make_loader(ds, 4, train=False, workers=0)))
    for train in (False, True):
        g = [torch.Generator().manual_seed(3) for _ in range(2)]
        plain = to_device_batch(batch, "cpu", train=train, generator=g[0])["visual"]
        nhwc = to_device_batch(batch, "cpu", train=train, generator=g[1], channels_last=True)["visual"]
        assert torch.equal(plain, nhwc) and plain.is_contiguous()
        assert nhwc.stride(2) == 1 and nhwc.permute(0, 1, 3, 4, 5, 2).is_contiguous()
        x = segment_major(nhwc)
        assert x.is_contiguous(memory_format=torch.channels_last_3d)
        assert torch.equal(x, segment_major(plain)) and segment_major(plain).is_contiguous()
        # segment-major: row s * B + b is segment s of sample b
        assert torch.equal(x[1 * 4 + 2], plain[2, 1])


def test_loader_pins_only_for_cuda_and_eval_workers_do_not_persist(reader):
    ds = ClipDataset(reader, reader.ids, config(), train=False)
    assert not make_loader(ds, 2, train=False, workers=0, device="cpu").pin_memory
    assert make_loader(ds, 2, train=False, workers=0, device="cuda").pin_memory
    assert make_loader(ds, 2, train=False, workers=0).pin_memory == (
        torch.cuda.is_available() and torch.cuda.is_initialized())
    assert make_loader(ds, 2, train=True, workers=1).persistent_workers
    assert not make_loader(ds, 2, train=False, workers=1).persistent_workers
    assert make_loader(ds, 2, train=False, workers=1, persistent=True).persistent_workers


def test_small_shm_is_reported_when_a_loader_starts(reader, monkeypatch):
    from trainer import device, loader
    sizes = []
    monkeypatch.setattr(loader, "check_shm", lambda need: sizes.append(need))
    ds = ClipDataset(reader, reader.ids, config(), train=True)
    make_loader(ds, 4, train=True, workers=2, prefetch_factor=3)
    # 2 workers x (3 batches in flight + 1 with the consumer) x 4 samples of uint8
    # 4x8x64x64x3 + float32 MFCC 4x32x32
    assert sizes == [2 * (3 + 1) * 4 * (4 * 8 * 64 * 64 * 3 + 4 * 4 * 32 * 32)]
    assert ds.batch_slots == 3 + 1
    make_loader(ds, 4, train=True, workers=0)
    assert len(sizes) == 1  # no workers: nothing goes through shared memory
    assert device.shm_warning(64 * 2**20, sizes[0]) is not None
