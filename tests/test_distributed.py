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


AGREEMENT_SCRIPT = """
import sys
import torch.distributed as dist
from trainer import distributed
from trainer.errors import DiskFullError
rank, store = int(sys.argv[1]), sys.argv[2]
dist.init_process_group("gloo", init_method="file://" + store, rank=rank, world_size=2)
with distributed.agreement("cpu"):   # nothing fails: both go on
    pass
print("first section: both went on", flush=True)
try:
    with distributed.agreement("cpu"):
        if rank == 0:
            raise DiskFullError("no space left on the device while writing last.pt")
    print("second section: went on", flush=True)
except distributed.PeerFailed as e:
    print(f"peer failed: ranks {e.ranks} status {e.status}", flush=True)
except DiskFullError as e:
    print(f"own failure: status {distributed.exit_status(e)}", flush=True)
# as the trainer does at its end: gloo's threads left running at exit can abort the process
dist.destroy_process_group()
"""


def test_a_failure_in_a_rank0_section_stops_every_process_with_its_status(tmp_path):
    """Two gloo processes: rank 0 fails inside `agreement`; rank 1, which would otherwise wait
    at its next collective, learns of it at once and gets rank 0's exit status (3, disk full)."""
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["PYTHONPATH"] = os.path.dirname(distributed.__file__) + "/.." + os.pathsep + env.get("PYTHONPATH", "")
    procs = [subprocess.Popen([sys.executable, "-c", AGREEMENT_SCRIPT, str(r), str(tmp_path / "store")],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for r in (0, 1)]
    outs = [p.communicate(timeout=120) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-2000:]
        assert out.splitlines()[0] == "first section: both went on"
    assert outs[0][0].splitlines()[1] == "own failure: status 3"
    assert outs[1][0].splitlines()[1] == "peer failed: ranks [0] status 3"


def test_alone_an_agreement_is_the_section_itself():
    from trainer.errors import DiskFullError
    with pytest.raises(DiskFullError):  # no process group: the exception as it is
        with distributed.agreement("cpu"):
            raise DiskFullError("full")
    with distributed.agreement("cpu"):
        pass


def test_the_run_status_is_rank0s_else_the_first_failure():
    # rank 0 stopped by torchrun (SIGTERM) after rank 1 failed with 3: the run's status is 3
    assert distributed.failed_status({0: -15, 1: 3}, first=1) == 3
    assert distributed.failed_status({0: 2, 1: 2}, first=1) == 2
    assert distributed.failed_status({0: 3, 1: -15}, first=0) == 3
    assert distributed.failed_status({1: -9, 0: -15}, first=1) == 1  # killed by a signal


def test_process_group_timeout_comes_from_the_environment(monkeypatch):
    import datetime

    from trainer.errors import RunError
    monkeypatch.delenv(distributed.TIMEOUT_ENV, raising=False)
    assert distributed.timeout() == datetime.timedelta(minutes=30)
    monkeypatch.setenv(distributed.TIMEOUT_ENV, "2.5")
    assert distributed.timeout() == datetime.timedelta(minutes=2.5)
    for bad in ("0", "soon"):
        monkeypatch.setenv(distributed.TIMEOUT_ENV, bad)
        with pytest.raises(RunError, match="VAANET_DIST_TIMEOUT_MIN"):
            distributed.timeout()


def _train_two_processes(train_data, tmp_path, epochs: int, fail: str):
    """`vaanet train --gpus 2` on CPU whose rank 0 fails its checkpoint save as checkpoint.FAIL_HOOK
    says; the timeout is what a hang would hit."""
    from trainer import checkpoint
    cfg = tmp_path / "tiny.json"
    cfg.write_text(json.dumps({"model": train_data.model, "epochs": epochs, "batch_size": 4,
                               "workers": 0, "val_fraction": 0.25, "freeze_visual": True}))
    out = tmp_path / "ddp"
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env[checkpoint.FAIL_HOOK] = fail
    p = subprocess.run([sys.executable, "-m", "cli", "train", "--gpus", "2", "--device", "cpu",
                        "--preset", "demo", "--data", str(train_data.path), "--config", str(cfg),
                        "--out", str(out)], capture_output=True, text=True, env=env, timeout=120,
                       cwd=os.path.dirname(distributed.__file__) + "/..")
    return p, out


@pytest.mark.slow
def test_two_processes_stop_together_with_status_3_on_a_full_disk(train_data, tmp_path):
    from trainer import checkpoint
    p, out = _train_two_processes(train_data, tmp_path, epochs=2, fail="2")  # epoch 2's save
    assert p.returncode == 3, p.stdout[-3000:] + p.stderr[-3000:]
    # rank 0's sentence, as one process says it; rank 1 stops without a word
    assert f"Error: no space left on the device while writing {out / 'last.pt'}" in p.stderr
    assert f"{out / 'last.pt'} from epoch 1 is intact" in p.stderr and "--resume" in p.stderr
    assert "Traceback" not in p.stderr and "of the run failed" not in p.stderr
    assert checkpoint.load(out / "last.pt")["epoch"] == 1   # the previous checkpoint survives
    assert sorted(f.name for f in out.iterdir() if f.name.startswith("last")) == ["last.pt"]
    records = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1]


@pytest.mark.slow
def test_two_processes_stop_together_on_any_failure_of_rank0(train_data, tmp_path):
    p, out = _train_two_processes(train_data, tmp_path, epochs=1, fail="1:bug")
    assert p.returncode == 1, p.stdout[-3000:] + p.stderr[-3000:]
    assert "RuntimeError: test failure of checkpoint save 1" in p.stderr  # rank 0's traceback
    assert not (out / "last.pt").exists()


def test_disk_full_as_turns_only_a_full_disk_into_one_sentence(tmp_path):
    import errno

    from trainer.errors import DiskFullError, disk_full_as
    with pytest.raises(DiskFullError) as e:
        with disk_full_as(tmp_path / "summary.md", "free space, then run it again"):
            raise OSError(errno.ENOSPC, "No space left on device")
    assert str(e.value) == (f"no space left on the device while writing {tmp_path / 'summary.md'} "
                            "([Errno 28] No space left on device); free space, then run it again")
    with pytest.raises(DiskFullError):  # torch.save's wrapping of the same
        with disk_full_as("x", "y"):
            raise RuntimeError("[enforce fail at inline_container.cc:603] . unexpected pos: write failed")
    with pytest.raises(PermissionError):  # any other failure stays itself
        with disk_full_as("x", "y"):
            raise PermissionError(errno.EACCES, "Permission denied")
