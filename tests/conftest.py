"""Shared pytest fixtures. Tests run on CPU with small generated videos and tiny models."""
import torch

# two cores in CI: keep torch from oversubscribing when pytest runs several ffmpeg processes
torch.set_num_threads(2)


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def train_data(tmp_path_factory):
    """Shards of 32 generated demo videos (8 per class, 2 s; split "alternating": 16 train, 16 test) at a
    tiny size, and `run(**kw)` -> the values of a training run of a tiny VAANet on them (the
    trainer's tests). Generated once per test session."""
    from types import SimpleNamespace

    from pipeline import preprocess
    from pipeline.demo import make_demo_videos
    from pipeline.params import PreprocessParams

    base = tmp_path_factory.mktemp("train_data")
    root = make_demo_videos(base / "videos", seed=3, per_class=8, duration=2.0, size=(80, 60))
    params = PreprocessParams(segments=2, snippets=2, frames=4, short_side=48, max_long_side=64)
    res = preprocess.run("demo", root, base / "shards", params, jobs=2, progress=False,
                         echo=lambda *a: None)
    assert res.ok_total == 32
    tiny = dict(segments=2, frames=4, crop=48, audio_segments=2, audio_len=32,
                visual_channels=64, audio_channels=32)

    def run(out, **kw):
        return {"data": str(base / "shards"), "out": str(out), "preset": "demo", "epochs": 3,
                "batch_size": 4, "lr": 1e-3, "workers": 0, "device": "cpu", "val_fraction": 0.25,
                "freeze_visual": True, "model": dict(tiny), **kw}

    return SimpleNamespace(path=base / "shards", run=run, model=tiny)
