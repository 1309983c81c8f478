"""Two processes on CPU (gloo) through `vaanet train --gpus 2`, which relaunches under torchrun."""
import json
import os
import subprocess
import sys

import pytest
import torch

from trainer import distributed


def test_torchrun_command_runs_this_cli():
    cmd = distributed.torchrun_command(2, ["train", "--epochs", "1"])
    assert cmd[:3] == [sys.executable, "-m", "torch.distributed.run"]
    assert "--nproc_per_node=2" in cmd and cmd[-3:] == ["train", "--epochs", "1"]
    assert cmd[-5:-3] == ["--module", "cli"]


def test_single_process_helpers_are_identities():
    assert distributed.all_reduce_sum([1.0, 2.0], "cpu") == [1.0, 2.0]
    assert distributed.all_gather_object({"a": 1}) == [{"a": 1}]
    assert (distributed.rank(), distributed.world_size()) == (0, 1)


@pytest.mark.slow
def test_two_gloo_processes_train_and_reduce(train_data, tmp_path):
    cfg = tmp_path / "tiny.json"
    cfg.write_text(json.dumps({"model": train_data.model, "epochs": 2, "batch_size": 4, "workers": 0,
                               "val_fraction": 0.25, "freeze_visual": True, "lr": 1e-3}))
    out = tmp_path / "ddp"
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    p = subprocess.run([sys.executable, "-m", "cli", "train", "--gpus", "2", "--device", "cpu",
                        "--preset", "demo", "--data", str(train_data.path), "--config", str(cfg),
                        "--out", str(out)], capture_output=True, text=True, env=env, timeout=300,
                       cwd=os.path.dirname(distributed.__file__) + "/..")
    # torchrun exits 0 only when every rank did
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert "x 2 processes" in p.stdout + p.stderr
    records = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    epochs = [r for r in records if "epoch" in r]
    assert [r["epoch"] for r in epochs] == [1, 2]
    # 12 training videos: 6 per process, summed over both; validation and test gathered whole
    assert all(r["train"]["n"] == 12 and r["val"]["n"] == 4 for r in epochs)
    finals = [r for r in records if "final" in r]
    assert [r["n"] for r in finals] == [16, 16]
    assert (out / "best.pt").is_file() and (out / "results.md").is_file()


def test_ddp_does_not_search_for_unused_parameters(tmp_path):
    """Every configuration uses all its trainable parameters, so DDP skips the extra graph walk
    (a one-process gloo group is enough to build the wrapper)."""
    import torch
    import torch.distributed as dist
    model = torch.nn.Linear(2, 2)
    assert distributed.wrap(model, distributed.DistInfo(), "cpu") is model   # alone: no wrapper
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        ddp = distributed.wrap(model, distributed.DistInfo(0, 0, 2), "cpu")
        assert ddp.module is model and ddp.find_unused_parameters is False
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_gloo_processes_train_ablation_rows_with_all_parameters_used(train_data, tmp_path):
    """find_unused_parameters=False: a visual-only row with the 3D ResNet trained (VS+VCW+VT)
    and the audio-only row (AT) both train under DDP; a parameter without gradient would make
    DDP fail at the second step."""
    cfg = tmp_path / "tiny.json"
    cfg.write_text(json.dumps({"model": train_data.model, "epochs": 2, "batch_size": 4, "workers": 0,
                               "val_fraction": 0.25, "lr": 1e-3}))
    out = tmp_path / "ablate"
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    p = subprocess.run([sys.executable, "-m", "cli", "ablate", "--gpus", "2", "--device", "cpu",
                        "--preset", "demo", "--no-freeze-visual", "--data", str(train_data.path),
                        "--config", str(cfg), "--attn", "VS+VCW+VT", "--attn", "AT", "--loss", "pcce",
                        "--out", str(out)], capture_output=True, text=True, env=env, timeout=400,
                       cwd=os.path.dirname(distributed.__file__) + "/..")
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    for row in ("VS+VCW+VT-pcce", "AT-pcce"):
        records = [json.loads(x) for x in (out / row / "metrics.jsonl").read_text().splitlines()]
        epochs = [r for r in records if "epoch" in r]
        assert [r["epoch"] for r in epochs] == [1, 2], row
        assert all(r["train"]["n"] == 12 for r in epochs), row
        # the model learnt something different in each epoch: the loss moved
        assert epochs[0]["train"]["loss"] != epochs[1]["train"]["loss"], row
    assert (out / "ablation.md").is_file()


def test_sync_batchnorm_replaces_every_batchnorm_and_is_refused_on_cpu():
    from trainer.errors import RunError
    model = torch.nn.Sequential(torch.nn.Conv3d(3, 4, 1), torch.nn.BatchNorm3d(4),
                                torch.nn.Sequential(torch.nn.Conv2d(4, 4, 1), torch.nn.BatchNorm2d(4)))
    weight = model[1].weight
    converted = distributed.sync_batchnorm(model, "cuda")  # conversion needs no GPU, only its use
    kinds = [type(m) for m in converted.modules() if "BatchNorm" in type(m).__name__]
    assert kinds == [torch.nn.SyncBatchNorm, torch.nn.SyncBatchNorm]
    assert converted[1].weight is weight  # the optimizer's parameters stay the same objects
    with pytest.raises(RunError, match="--sync-bn needs CUDA"):
        distributed.sync_batchnorm(model, "cpu")
    # one process: nothing to synchronise, the model comes back as it is
    assert distributed.wrap(model, distributed.DistInfo(), "cpu", sync_bn=True) is model
