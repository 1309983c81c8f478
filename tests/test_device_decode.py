"""JPEG frames decoded by the training process (`--decode device`): the same clips as the
workers make, the same training, clear refusals (trainer/device_decode.py)."""
import json

import pytest
import torch

from tests import test_loader
from tests.test_loader import config
from trainer import checkpoint, run_config
from trainer.batch_slots import release_batch
from trainer.device_decode import LIBRARIES, batch_decoder, check_device_decode, decode_clips
from trainer.errors import RunError
from trainer.loader import ClipDataset, make_loader, to_device_batch
from trainer.train import train

reader = test_loader.reader   # JPEG shards (the default codec) of tests/test_loader.py


def batches(ds, workers, epochs=(0, 1)):
    """Every batch of the epochs through to_device_batch on the CPU, flips seeded."""
    loader = make_loader(ds, batch_size=3, train=ds.train, workers=workers, seed=2)
    out = []
    for epoch in epochs:
        loader.sampler.set_epoch(epoch)
        flips = torch.Generator().manual_seed(epoch)
        for b in loader:
            d = to_device_batch(b, "cpu", train=ds.train, generator=flips)
            out.append({k: d[k].clone() for k in ("visual", "audio", "label", "index")})
            release_batch(b)
    return out


@pytest.mark.parametrize("train", [True, False])
def test_device_decoding_gives_the_workers_clips(reader, train):
    cfg = config(frames=6, crop=56)
    ids = reader.ids * 2
    expect = batches(ClipDataset(reader, ids, cfg, train=train, seed=4), workers=0)
    for workers in (0, 2):
        got = batches(ClipDataset(reader, ids, cfg, train=train, seed=4, decode="device"), workers)
        assert len(got) == len(expect) == 6
        for g, e in zip(got, expect):
            assert g["visual"].shape[1:] == (4, 3, 6, 56, 56)
            for k in e:
                assert torch.equal(g[k], e[k]), (workers, k)


def test_an_undecoded_batch_holds_the_stored_files(reader):
    ds = ClipDataset(reader, reader.ids, config(), train=True, seed=1, decode="device")
    b = ds.__getitems__([(0, 0), (2, 0)])
    assert b["visual"].shape == (2, 0) and b["clip"].tolist() == [4, 8, 64]
    offsets = b["jpeg_offsets"]
    assert len(offsets) == 2 * 4 * 8 + 1 and offsets[0] == 0 and offsets[-1] == len(b["jpeg"])
    first = bytes(b["jpeg"][offsets[0]:offsets[1]].numpy())
    assert first[:2] == b"\xff\xd8" and first[-2:] == b"\xff\xd9"   # whole JPEG files
    clips = decode_clips(b, "cpu")
    assert clips.shape == (2, 4, 8, 64, 64, 3)
    b["jpeg_offsets"] = offsets[:-1]
    with pytest.raises(ValueError, match="JPEG frames for 2 clips"):
        decode_clips(b, "cpu")


def test_raw_shards_and_unknown_sites_are_refused(train_data, tmp_path):
    from pipeline import preprocess
    from pipeline.reader import ShardReader
    raw_dir = tmp_path / "raw"
    src = train_data.path.parent / "videos"
    params = ShardReader(train_data.path).params.replace(codec="raw")
    preprocess.run("demo", src, raw_dir, params, jobs=1, progress=False, echo=lambda *a: None,
                   limit=1)
    with pytest.raises(ValueError, match="needs JPEG frames.*raw frames.*'workers'"):
        ClipDataset(ShardReader(raw_dir), ShardReader(raw_dir).ids, config(crop=48, frames=4,
                    segments=2), train=True, decode="device")
    with pytest.raises(ValueError, match="decode must be one of workers, device"):
        ClipDataset(ShardReader(train_data.path), [], config(), train=True, decode="gpu")
    with pytest.raises(RunError, match="decode must be one of workers, device"):
        run_config.resolve(train_data.run(tmp_path / "r", decode="gpu"))


def available_libraries() -> list[str]:
    """The decode libraries that load beside this torch, in the order they are tried."""
    return [lib for lib in LIBRARIES if batch_decoder(lib) is not None]


def test_the_decoder_for_each_device():
    assert check_device_decode("cpu") == "libjpeg-turbo"
    if not available_libraries():
        with pytest.raises(RunError, match=r"needs TorchCodec \(or torchvision\) built for torch .* "
                                           "--decode workers"):
            check_device_decode("cuda")
    elif not torch.cuda.is_available():   # a CUDA build of the library on a machine without a GPU
        with pytest.raises(RunError, match="no library can decode JPEG on cuda .* --decode workers"):
            check_device_decode("cuda")
    else:
        assert check_device_decode("cuda") in available_libraries()


def test_training_with_device_decoding_gives_the_same_weights(train_data, tmp_path):
    """On the CPU both sites decode with libjpeg-turbo: the runs are identical."""
    for name, decode, workers in (("w", "workers", 0), ("d", "device", 2)):
        train(run_config.resolve(train_data.run(tmp_path / name, epochs=2, decode=decode,
                                                workers=workers)), quiet=True)
    a, b = checkpoint.load(tmp_path / "w" / "last.pt"), checkpoint.load(tmp_path / "d" / "last.pt")
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert json.loads((tmp_path / "d" / "config.json").read_text())["decode"] == "device"


@pytest.mark.skipif(not torch.cuda.is_available() or not available_libraries(),
                    reason="needs CUDA and TorchCodec or torchvision built for this torch")
def test_nvjpeg_clips_are_within_a_grey_level_or_two_of_libjpeg(reader):
    ds = ClipDataset(reader, reader.ids, config(), train=True, seed=1, decode="device")
    b = ds.__getitems__([(i, 0) for i in range(len(reader.ids))])
    gpu = decode_clips(b, "cuda").cpu().int()
    cpu = decode_clips(b, "cpu", backend="libjpeg-turbo").int()
    assert gpu.shape == cpu.shape
    diff = (gpu - cpu).abs().float()
    assert diff.mean() < 1.0 and diff.max() <= 16, (diff.mean(), diff.max())


def damaged_batch(reader):
    """An undecoded batch of videos 0 and 2 whose second sample's first frame is overwritten."""
    ds = ClipDataset(reader, reader.ids, config(), train=False, decode="device")
    b = ds.__getitems__([0, 2])
    first_of_second = int(b["jpeg_offsets"][4 * 8])        # sample 1's first frame
    b["jpeg"][first_of_second:first_of_second + 64] = 0
    return b


def loaded(library):
    return pytest.param(library, marks=pytest.mark.skipif(
        library not in available_libraries(), reason=f"needs {library} built for this torch"))


@pytest.mark.parametrize("library", [loaded(lib) for lib in LIBRARIES])
def test_the_batched_route_gives_the_workers_clips_on_the_cpu(reader, library):
    """The nvJPEG route's own code (one decode_jpeg call for the batch, crops, layout) run with
    the library's CPU decoder, libjpeg-turbo as the workers': the same clips. A GPU changes only
    the decoder under it."""
    ds = ClipDataset(reader, reader.ids, config(), train=True, seed=1, decode="device")
    b = ds.__getitems__([(i, 0) for i in range(len(reader.ids))])
    via = decode_clips(b, "cpu", backend=library).int()
    ref = decode_clips(b, "cpu", backend="libjpeg-turbo").int()
    assert via.shape == ref.shape
    assert (via - ref).abs().max() <= 1


@pytest.mark.parametrize("library", [loaded(lib) for lib in LIBRARIES])
def test_a_damaged_file_on_the_batched_route_names_its_video(reader, library):
    from trainer.sample_errors import SampleError
    with pytest.raises(SampleError) as e:
        decode_clips(damaged_batch(reader), "cpu", backend=library)
    assert repr(reader.ids[2]) in str(e.value)


def test_a_library_that_does_not_load_is_named():
    b = {"clip": torch.tensor([1, 1, 4]), "jpeg_offsets": torch.tensor([0, 0]),
         "crop_yx": torch.zeros((1, 2), dtype=torch.int64), "jpeg": torch.zeros(0, dtype=torch.uint8)}
    missing = [lib for lib in LIBRARIES if lib not in available_libraries()]
    for lib in missing:
        with pytest.raises(RunError, match=f"{lib} does not load beside torch"):
            decode_clips(b, "cpu", backend=lib)
    with pytest.raises(ValueError, match="backend must be one of"):
        decode_clips(b, "cpu", backend="pillow")


def test_a_damaged_file_names_its_video_and_the_repair(reader):
    """As in the workers: a JPEG that does not decode stops the run with one sentence naming the
    video, its shard and the command that finds and repairs the damage."""
    from trainer.sample_errors import SampleError
    b = damaged_batch(reader)
    assert [s[0] for s in b["sources"]] == [reader.ids[0], reader.ids[2]]
    with pytest.raises(SampleError) as e:
        to_device_batch(b, "cpu", train=False)
    msg = str(e.value)
    assert repr(reader.ids[2]) in msg and "shard-" in msg and f"vaanet inspect --verify {reader.root}" in msg
