"""Two processes on CPU (gloo) through `vaanet train --gpus 2`, which relaunches under torchrun."""
import json
import os
import subprocess
import sys

import pytest

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
