"""The training loop's parts: the batch-per-process rule, the per-epoch tally without host syncs,
usage errors only for user input, deterministic evaluation passes."""
import json

import pytest
import torch
from click.testing import CliRunner

from cli import main
from trainer import run_config
from trainer.train import EpochTally, per_process_batch


def test_batch_is_global_and_must_divide_over_the_processes():
    assert per_process_batch(32, 1) == 32
    assert per_process_batch(32, 4) == 8
    with pytest.raises(run_config.RunError, match=r"--batch-size 32 .* 3 processes .* use --batch-size 30 or 33"):
        per_process_batch(32, 3)
    with pytest.raises(run_config.RunError, match="use --batch-size 8$"):
        per_process_batch(5, 8)  # below the number of processes: only the next multiple


def test_gpus_with_an_indivisible_batch_is_a_usage_error_before_launching(train_data, tmp_path):
    r = CliRunner().invoke(main, ["train", "--data", str(train_data.path), "--preset", "demo",
                                  "--out", str(tmp_path / "o"), "--batch-size", "5", "--gpus", "2"])
    assert r.exit_code == 2, r.output
    assert "use --batch-size 4 or 6" in r.output
    assert not (tmp_path / "o").exists()


class _NoSync(Exception):
    pass


def test_epoch_tally_adds_on_the_device_and_converts_once(monkeypatch):
    g = torch.Generator().manual_seed(0)
    batches = [(torch.rand((), generator=g), torch.randn(n, 5, generator=g),
                torch.randint(0, 5, (n,), generator=g)) for n in (4, 4, 3)]
    tally = EpochTally("cpu")

    def refuse(*a, **k):
        raise _NoSync("a host sync in the per-step path")
    # every way a tensor reaches the host: none may happen while steps are added
    with monkeypatch.context() as m:
        for name in ("item", "tolist", "numpy", "cpu", "__int__", "__float__", "__bool__", "__index__"):
            m.setattr(torch.Tensor, name, refuse)
        for loss, logits, labels in batches:
            tally.add(loss, logits, labels)
    loss_sum, correct, seen = tally.totals()
    # the same numbers as the per-step `.item()` the loop used to do
    assert loss_sum == sum(loss.item() * len(y) for loss, _, y in batches)
    assert correct == sum(int((x.argmax(1) == y).sum()) for _, x, y in batches)
    assert seen == 11
    assert isinstance(correct, int) and isinstance(loss_sum, float)


def test_an_internal_error_is_not_a_usage_error(train_data, tmp_path, monkeypatch):
    """A ValueError from inside the program (here: building the network) is a bug: it keeps its
    traceback and exit status 1, it is not shown as a user mistake (exit 2)."""
    import model.build

    def broken(cfg):
        raise ValueError("internal: something is wrong in the code")
    monkeypatch.setattr(model.build, "build_model", broken)
    cfg = tmp_path / "tiny.json"
    cfg.write_text(json.dumps({"model": train_data.model, "epochs": 1, "workers": 0}))
    r = CliRunner().invoke(main, ["train", "--data", str(train_data.path), "--preset", "demo",
                                  "--config", str(cfg), "--device", "cpu", "--out", str(tmp_path / "o")])
    assert r.exit_code == 1
    assert isinstance(r.exception, ValueError) and not isinstance(r.exception, run_config.RunError)
    assert "internal: something is wrong" in str(r.exception) and "Usage:" not in r.output


def test_user_input_turns_only_its_one_call_into_a_usage_error():
    with pytest.raises(run_config.RunError, match="bad value"):
        with run_config.user_input():
            raise ValueError("bad value")
    with pytest.raises(KeyError):  # not a check of user input: left as it is
        with run_config.user_input():
            raise KeyError("x")


def test_bad_option_values_in_a_config_file_are_usage_errors(tmp_path):
    (tmp_path / "c.json").write_text(json.dumps({"epochs": "ten", "data": "x"}))
    with pytest.raises(run_config.RunError, match="epochs must be an integer, got 'ten'"):
        run_config.resolve({}, tmp_path / "c.json")


def test_evaluation_passes_run_without_the_cudnn_autotuner(train_data, monkeypatch):
    from model.build import build_model
    from trainer.data import open_data
    from trainer.evaluate import EvalSet, predict
    from trainer.train import model_config_for
    seen = []
    reader = open_data(train_data.path)
    cfg = run_config.resolve(train_data.run("unused"))
    model = build_model(model_config_for(cfg, list(reader.classes)))
    forward = model.forward
    monkeypatch.setattr(model, "forward", lambda *a: seen.append(torch.backends.cudnn.benchmark) or forward(*a))
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", True)
    ids = reader.split_ids("alternating", "test")[:3]
    pred = predict(model, EvalSet(reader, ids, model.cfg, batch_size=2), "cpu")
    reader.close()
    assert pred["probs"].shape == (3, 4)
    assert seen == [False, False]              # off during the pass (two batches) ...
    assert torch.backends.cudnn.benchmark is True  # ... and restored after it


def test_messages_go_through_logging_and_the_command_prints_the_table(train_data, tmp_path):
    cfg = tmp_path / "tiny.json"
    cfg.write_text(json.dumps({"model": train_data.model, "epochs": 1, "workers": 0, "val_fraction": 0.25,
                               "freeze_visual": True, "lr": 1e-3, "batch_size": 4}))
    args = ["train", "--data", str(train_data.path), "--preset", "demo", "--config", str(cfg), "--device", "cpu"]
    r = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "a")])
    assert r.exit_code == 0, r.output
    assert "epoch   1/1  train loss" in r.output and "| best |" in r.output  # the log line, the table
    r = CliRunner().invoke(main, ["-q", *args, "--out", str(tmp_path / "b")])
    assert r.exit_code == 0, r.output
    assert "epoch   1/1" not in r.output and "| best |" in r.output
    assert (tmp_path / "b" / "results.md").read_text() in r.output + "\n"
