"""Per-device choices: loader workers per process, mixed precision, channels-last, pinning,
the /dev/shm check and the --gpus check."""
import click
import pytest
import torch

from trainer import device as dev
from trainer.run_config import RunConfig, resolve


@pytest.mark.parametrize("cores, ranks, expected", [
    (16, 1, 15), (16, 2, 7), (16, 4, 3), (16, 8, 1), (16, 16, 1),  # the main processes keep a core each
    (2, 1, 1), (1, 1, 1), (64, 1, 16), (64, 2, 16), (64, 8, 7),     # at least 1, at most 16
])
def test_default_workers_follow_cores_and_ranks(cores, ranks, expected):
    assert dev.default_workers(cores, ranks) == expected
    # never more processes than cores once there are two workers or more per rank
    if expected > 1:
        assert ranks * (expected + 1) <= cores


def test_default_workers_read_world_size(monkeypatch):
    monkeypatch.setattr(dev.os, "cpu_count", lambda: 16)
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert dev.default_workers_here() == 3
    assert RunConfig().workers == 3
    monkeypatch.delenv("WORLD_SIZE")
    assert RunConfig().workers == 15


def test_amp_auto_is_none_on_cpu_and_recorded(tmp_path):
    assert dev.resolve_amp("auto", "cpu") == "none"
    assert dev.resolve_amp("bf16", "cpu") == "bf16"
    with pytest.raises(ValueError, match="amp must be one of"):
        dev.resolve_amp("fp8", "cpu")
    cfg = resolve({"data": str(tmp_path), "device": "cpu"})
    assert cfg.amp == "none"   # what the run uses, not "auto", goes to config.json
    import json
    from trainer.run_config import save
    assert json.loads(save(cfg, tmp_path / "run").read_text())["amp"] == "none"
    assert RunConfig().amp == "auto" and RunConfig(amp="auto").validate().amp == "auto"
    assert resolve({"data": str(tmp_path), "device": "cpu", "amp": "bf16"}).amp == "bf16"
    with pytest.raises(ValueError, match="amp must be one of"):
        resolve({"data": str(tmp_path), "amp": "half"})


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_amp_auto_is_bf16_on_cuda():
    assert dev.resolve_amp("auto", "cuda") == ("bf16" if torch.cuda.is_bf16_supported() else "none")


def test_autocast_auto_on_cpu_is_full_precision():
    with dev.autocast("cpu", "auto"):
        y = torch.ones(2, 2) @ torch.ones(2, 2)
    assert y.dtype == torch.float32
    with dev.autocast("cpu", "bf16"):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16


def test_pinning_only_for_cuda():
    assert dev.should_pin("cpu") is False
    assert dev.should_pin(torch.device("cpu")) is False
    assert dev.should_pin("cuda") is True
    # no device given: only when this process already uses CUDA
    assert dev.should_pin(None) == (torch.cuda.is_available() and torch.cuda.is_initialized())


def test_shm_warning_names_the_fix():
    msg = dev.shm_warning(64 * 2**20, 400 * 2**20)
    assert "64 MB" in msg and "400 MB" in msg and "--shm-size=20g" in msg and "--ipc=host" in msg
    assert dev.shm_warning(512 * 2**20) is not None          # under 1 GB
    assert dev.shm_warning(8 * 2**30, 2**30) is None
    assert "need about 3072 MB" in dev.shm_warning(2 * 2**30, 3 * 2**30)  # large, not enough
    assert dev.shm_warning(None) is None                      # no /dev/shm: nothing to say


def test_check_shm_reads_the_file_system(tmp_path, caplog):
    import os
    st = os.statvfs(tmp_path)
    total = st.f_blocks * st.f_frsize
    with caplog.at_level("WARNING", logger="trainer.device"):
        msg = dev.check_shm(needed_bytes=total + 1, path=str(tmp_path))
    assert msg and msg in caplog.text
    assert dev.check_shm(path=str(tmp_path / "missing")) is None


def _tiny_model():
    from model.build import build_model
    from model.config import preset
    torch.manual_seed(0)
    return build_model(preset("demo", segments=2, frames=4, crop=32, audio_segments=2, audio_len=32,
                              visual_channels=64, audio_channels=32)).eval()


def test_channels_last_3d_converts_3d_convs_only_and_keeps_outputs():
    model = _tiny_model()
    visual = torch.randint(0, 256, (2, 2, 3, 4, 32, 32), dtype=torch.uint8)
    audio = torch.randn(2, 2, 32, model.cfg.n_mfcc)
    with torch.no_grad():
        before = model(visual, audio).logits
    assert not dev.is_channels_last(model)
    assert dev.to_channels_last(model, "cpu", True) is model and not dev.is_channels_last(model)
    dev.channels_last_3d(model)
    assert dev.is_channels_last(model)
    convs3 = [m for m in model.modules() if isinstance(m, torch.nn.Conv3d)]
    convs2 = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs3 and all(m.weight.is_contiguous(memory_format=torch.channels_last_3d) for m in convs3)
    assert convs2 and all(m.weight.is_contiguous() for m in convs2)
    with torch.no_grad():
        after = model(visual, audio).logits
    torch.testing.assert_close(after, before, rtol=1e-4, atol=1e-5)


def test_check_gpus():
    from cli import _check_gpus
    with pytest.raises(click.UsageError, match="--gpus must be >= 1"):
        _check_gpus(0, "cpu")
    _check_gpus(2, "cpu")  # gloo processes on CPU stay allowed
    if torch.cuda.is_available():
        with pytest.raises(click.UsageError, match="GPU"):
            _check_gpus(torch.cuda.device_count() + 1, "auto")
    else:
        with pytest.raises(click.UsageError, match="no CUDA device"):
            _check_gpus(2, "cuda")
        _check_gpus(2, "auto")  # auto on a machine without CUDA: CPU processes


def test_check_gpus_against_visible_devices(monkeypatch):
    from cli import _check_gpus
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    _check_gpus(2, "auto")
    with pytest.raises(click.UsageError, match="--gpus 4 but only 2 GPU"):
        _check_gpus(4, "auto")
    _check_gpus(4, "cpu")
