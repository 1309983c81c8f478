"""The trainer end to end on generated shards with a tiny VAANet (CPU)."""
import csv
import json

import pytest
import torch
from click.testing import CliRunner

from cli import main
from trainer import checkpoint, run_config
from trainer.protocol import summarize
from trainer.train import train


def run(values: dict, **kw):
    return train(run_config.resolve(values), quiet=True, **kw)


@pytest.fixture(scope="module")
def trained(train_data, tmp_path_factory):
    """One tiny run of 6 epochs, shared by the tests that only read its outputs."""
    out = tmp_path_factory.mktemp("run") / "r"
    return out, run(train_data.run(out, epochs=6))


def test_tiny_model_learns_the_demo_signal(trained):
    out, res = trained
    # 4 classes: chance is 25 %; colour and pitch together make the demo easy to learn
    assert res["test_best"]["accuracy"] >= 0.6, res["test_best"]
    assert res["test_best"]["n"] == 16 and res["split"] == "alternating"


def test_the_fused_model_beats_each_stream_alone_on_the_demo(train_data, tmp_path):
    """The demo's classes are a 2 x 2 grid of colour and tone (pipeline/demo.py): the picture
    alone tells only the polarity, the sound alone only the pitch, so each stream alone can be
    right on about half the test videos while the fused model can tell all four classes apart.
    Seeded (the run config's seed), so the numbers are the same on every run; no validation
    carve-out (all 16 training videos are used, the last epoch is kept)."""
    test = {}
    for attn in ("VS+VCW+VT+AT", "VS+VCW+VT", "AT"):
        res = run(train_data.run(tmp_path / attn, attn=attn, epochs=10, val_fraction=0))
        test[attn] = res["test_last"]
    fused, visual, audio = test["VS+VCW+VT+AT"], test["VS+VCW+VT"], test["AT"]
    assert fused["accuracy"] >= 0.875, test
    # at least two more of the 16 test videos right than either stream alone
    assert fused["accuracy"] >= max(visual["accuracy"], audio["accuracy"]) + 0.125, test
    # the visual stream alone learns what the colour says: the polarity
    assert visual["polarity_accuracy"] >= 0.875, test


def test_run_dir_contents(trained, train_data):
    out, res = trained
    for name in ("config.json", "last.pt", "best.pt", "metrics.jsonl", "predictions-best-test.csv",
                 "predictions-last-test.csv", "results.json", "results.md"):
        assert (out / name).is_file(), name
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    epochs = [r for r in records if "epoch" in r]
    assert [r["epoch"] for r in epochs] == [1, 2, 3, 4, 5, 6]
    # 16 training videos, a quarter of each class (1 of 4) held out for validation
    assert all(r["train"]["n"] == 12 and r["val"]["n"] == 4 for r in epochs)
    assert all(0 <= r["speed"]["data_wait_fraction"] <= 1 and r["speed"]["samples_per_s"] > 0 for r in epochs)
    finals = [r for r in records if "final" in r]
    assert len(finals) == 2 and all(len(r["confusion"]) == 4 for r in finals)
    # the resolved configuration is a valid --config file and names everything
    cfg = run_config.resolve(config_file=out / "config.json")
    assert cfg.epochs == 6 and cfg.lr == 1e-3 and cfg.model == train_data.model
    resolved = json.loads((out / "config.json").read_text())["resolved_model"]
    assert resolved["num_classes"] == 4 and resolved["attention"] == "VS+VCW+VT+AT"
    # best.pt is the epoch the validation picked
    assert checkpoint.load(out / "best.pt")["epoch"] == res["best_epoch"]
    assert checkpoint.load(out / "last.pt")["epoch"] == 6
    rows = list(csv.DictReader(open(out / "predictions-best-test.csv")))
    assert len(rows) == 16
    correct = sum(r["prediction"] == r["label"] for r in rows)
    assert correct / 16 == pytest.approx(res["test_best"]["accuracy"])
    assert "| best |" in (out / "results.md").read_text()


def test_resume_gives_the_same_weights(train_data, tmp_path):
    whole = tmp_path / "whole"
    run(train_data.run(whole, epochs=2))
    part = tmp_path / "part"
    run(train_data.run(part, epochs=1))
    run(train_data.run(part, epochs=2, resume=True))
    a, b = checkpoint.load(whole / "last.pt"), checkpoint.load(part / "last.pt")
    assert a["epoch"] == b["epoch"] == 2
    assert a["model"].keys() == b["model"].keys()
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
    # the resumed run logged epoch 2 only once more
    epochs = [json.loads(x).get("epoch") for x in (part / "metrics.jsonl").read_text().splitlines()]
    assert [e for e in epochs if e] == [1, 2]


def test_config_file_values_are_overridden_by_flags(tmp_path):
    (tmp_path / "c.json").write_text(json.dumps({"epochs": 5, "seed": 7, "preset": "demo", "data": "x"}))
    cfg = run_config.resolve({"epochs": 2, "lr": None}, tmp_path / "c.json")
    assert (cfg.epochs, cfg.seed, cfg.preset, cfg.lr, cfg.batch_size) == (2, 7, "demo", 1e-3, 4)
    assert run_config.resolve({"data": "x"}).epochs == 150  # the paper's defaults
    (tmp_path / "bad.json").write_text(json.dumps({"epoch": 5}))
    with pytest.raises(ValueError, match="unknown keys .*: epoch"):
        run_config.resolve({}, tmp_path / "bad.json")


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_bad_inputs_get_clear_usage_errors(train_data, trained, tmp_path):
    data = train_data.path
    cfg = tmp_path / "tiny.json"
    cfg.write_text(json.dumps({"model": train_data.model, "epochs": 1, "workers": 0}))
    base = ["train", "--preset", "demo", "--config", cfg, "--device", "cpu"]

    r = cli(*base, "--data", tmp_path / "nothing", "--out", tmp_path / "o")
    assert r.exit_code == 2 and "data folder not found" in r.output
    (tmp_path / "empty").mkdir()
    r = cli(*base, "--data", tmp_path / "empty", "--out", tmp_path / "o")
    assert r.exit_code == 2 and "not a preprocessed dataset folder" in r.output

    # index present, shard file gone
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("index.json", "params.json", "splits.json"):
        (broken / name).write_bytes((data / name).read_bytes())
    r = cli(*base, "--data", broken, "--out", tmp_path / "o")
    assert r.exit_code == 2 and "shard files listed in index.json are missing" in r.output

    r = cli(*base, "--data", data, "--split", "7", "--out", tmp_path / "o")
    assert r.exit_code == 2 and "split '7' is not in the data; available splits: alternating" in r.output

    r = cli(*base, "--data", data, "--attn", "VS+VCV", "--out", tmp_path / "o")
    assert r.exit_code == 2 and "unknown attention 'VCV'" in r.output and "VS, VCW, VT, AT" in r.output

    # an existing run is not overwritten; resuming it with another model is refused
    out, _ = trained
    r = cli(*base, "--data", data, "--out", out)
    assert r.exit_code == 2 and "pass --resume" in r.output
    r = cli(*base, "--data", data, "--out", out, "--resume", "--attn", "VS+VCW")
    assert r.exit_code == 2 and "options differ from the run's" in r.output and "attn: run None, now 'VS+VCW'" in r.output
    r = cli(*base, "--data", data, "--out", tmp_path / "fresh", "--resume")
    assert r.exit_code == 2 and "checkpoint not found" in r.output
    assert not (tmp_path / "o").exists()


def test_protocol_summary_by_hand():
    def res(acc, per_class):
        return {"test_best": {"accuracy": acc, "mean_class_accuracy": acc, "polarity_accuracy": 1.0,
                              "macro_f1": acc, "per_class_accuracy": per_class}}
    s = summarize({"0": res(0.5, [1.0, 0.0]), "1": res(0.7, [0.5, None])}, ["a", "b"])
    assert s["mean"]["accuracy"] == pytest.approx(0.6)
    assert s["std"]["accuracy"] == pytest.approx(0.1414213562, rel=1e-6)  # sample std of 0.5, 0.7
    assert s["mean"]["acc_a"] == pytest.approx(0.75) and s["mean"]["acc_b"] == 0.0
    assert s["std"]["acc_b"] == 0.0  # one value only


def test_split_all_writes_the_protocol_summary(train_data, tmp_path):
    from trainer.protocol import run_all_splits
    out = tmp_path / "all"
    summary = run_all_splits(run_config.resolve(train_data.run(out, epochs=1, val_fraction=0, split="all")),
                             quiet=True)
    # the demo data has one split ("alternating"); VE-8 shards have "0".."9"
    assert [r["split"] for r in summary["rows"]] == ["alternating"]
    res = json.loads((out / "split-alternating" / "results.json").read_text())
    assert summary["mean"]["accuracy"] == res["test_best"]["accuracy"]
    assert "mean +- std" in (out / "summary.md").read_text()
    rows = list(csv.DictReader(open(out / "summary.csv")))
    assert [r["split"] for r in rows] == ["alternating", "mean", "std"]
    assert list(rows[0])[-4:] == ["acc_anger", "acc_fear", "acc_joy", "acc_surprise"]
    assert (out / "config.json").is_file()


def test_yaml_config(tmp_path):
    pytest.importorskip("yaml")
    (tmp_path / "c.yaml").write_text("preset: demo\nepochs: 3\nmodel:\n  crop: 48\n")
    cfg = run_config.resolve({"data": "x"}, tmp_path / "c.yaml")
    assert (cfg.preset, cfg.epochs, cfg.model) == ("demo", 3, {"crop": 48})


def test_validation_carve_out_is_seeded_stratified_and_disjoint(train_data):
    from trainer.data import open_data
    from trainer.data import carve_validation
    reader = open_data(train_data.path)
    ids = reader.split_ids("alternating", "train")
    tr, val = carve_validation(reader, ids, 0.25, seed=0)
    assert sorted(tr + val) == sorted(ids) and not set(tr) & set(val)
    assert sorted(v.split("/")[0] for v in val) == ["anger", "fear", "joy", "surprise"]  # 1 of 4 each
    assert carve_validation(reader, ids, 0.25, seed=0) == (tr, val)
    assert any(carve_validation(reader, ids, 0.25, seed=s)[1] != val for s in range(1, 5))
    assert carve_validation(reader, ids, 0, seed=0) == (ids, [])
    reader.close()


def test_dfan_trains_and_evaluates_through_the_same_trainer(train_data, tmp_path):
    from trainer.evaluate import evaluate
    out = tmp_path / "dfan"
    values = train_data.run(out, epochs=4, preset="dfan-demo")
    values["model"] = {k: v for k, v in values["model"].items() if k != "visual_channels"}
    res = run(values)
    cfg = json.loads((out / "config.json").read_text())["resolved_model"]
    assert cfg["arch"] == "dfan" and cfg["attention"] == "VS+VT"
    model_keys = checkpoint.load(out / "best.pt")["model"].keys()
    assert any(k.startswith("scene_backbone.") for k in model_keys)
    assert not any(k.startswith("channel") for k in model_keys)
    # the same checkpoint evaluated again gives the trainer's own test accuracy
    again = evaluate(run=out, device="cpu")
    assert again["report"]["accuracy"] == pytest.approx(res["test_best"]["accuracy"])
    # visual only: on the demo the colour gives the polarity (the tone tells the rest)
    assert res["test_best"]["polarity_accuracy"] >= 0.75, res["test_best"]


def test_default_run_folder_is_fresh_unless_resuming(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    values = {"data": "shards/demo", "preset": "demo"}
    first = run_config.resolve(values, fresh_out=True)
    assert first.out == "runs/demo-demo"
    (tmp_path / first.out).mkdir(parents=True)
    assert run_config.resolve(values, fresh_out=True).out == "runs/demo-demo-2"
    (tmp_path / "runs/demo-demo-2").mkdir()
    assert run_config.resolve(values, fresh_out=True).out == "runs/demo-demo-3"
    # --resume continues the existing folder; an explicit --out is taken as given
    assert run_config.resolve({**values, "resume": True}, fresh_out=True).out == "runs/demo-demo"
    assert run_config.resolve({**values, "out": "runs/demo-demo"}, fresh_out=True).out == "runs/demo-demo"
    # without fresh_out (library calls, torchrun processes) the name is fixed
    assert run_config.resolve(values).out == "runs/demo-demo"


def test_config_file_model_block_beats_the_presets_training_defaults(tmp_path):
    (tmp_path / "c.json").write_text(json.dumps({"preset": "demo", "data": "x",
                                                 "model": {"freeze_visual": False}}))
    from trainer.train import model_config_for
    cfg = run_config.resolve(config_file=tmp_path / "c.json")
    assert model_config_for(cfg, ["a", "b"]).freeze_visual is False
    # a flag still overrides the file
    cfg = run_config.resolve({"freeze_visual": True}, config_file=tmp_path / "c.json")
    assert model_config_for(cfg, ["a", "b"]).freeze_visual is True
    # without either, the demo preset's training default freezes the backbone
    assert model_config_for(run_config.resolve({"preset": "demo", "data": "x"}), ["a"]).freeze_visual


def test_resume_links_best_when_killed_before_linking_it(train_data, tmp_path):
    out = tmp_path / "r"
    run(train_data.run(out, epochs=1))
    assert checkpoint.load(out / "last.pt")["best"]["epoch"] == 1
    (out / "best.pt").unlink()              # as if killed right after last.pt was written
    res = run(train_data.run(out, epochs=1, resume=True))
    assert (out / "best.pt").is_file() and checkpoint.load(out / "best.pt")["epoch"] == 1
    assert res["best_epoch"] == 1


def test_resume_refuses_options_that_change_the_run_and_records_the_others(train_data, tmp_path):
    out = tmp_path / "r"
    run(train_data.run(out, epochs=1))
    changed = dict(lr=0.01, val_fraction=0.4, batch_size=2, seed=7, loss="ce")
    with pytest.raises(run_config.RunError) as e:
        run(train_data.run(out, epochs=2, resume=True, **changed))
    msg = str(e.value)
    assert "options differ from the run's" in msg
    for name, new in changed.items():
        assert f"{name}: run " in msg and f"now {new!r}" in msg, name
    assert "epochs" not in msg.split("(")[1].split(")")[0]  # more epochs may change
    assert checkpoint.load(out / "last.pt")["epoch"] == 1  # nothing was trained
    # more epochs and another loader size may change, and config.json says so
    run(train_data.run(out, epochs=2, resume=True, workers=1))
    saved = json.loads((out / "config.json").read_text())
    assert saved["epochs"] == 2 and saved["workers"] == 1
    assert saved["resumed"] == [{"after_epoch": 1, "changed": {"epochs": [1, 2], "workers": [0, 1]}}]
    assert checkpoint.load(out / "last.pt")["optimizer"]["param_groups"][0]["lr"] == 1e-3
    # config.json stays a valid --config file
    assert run_config.resolve({"resume": True}, out / "config.json").epochs == 2
    # fewer epochs than already trained is refused
    with pytest.raises(run_config.RunError, match="trained 2 epochs already; give --epochs 2 or more"):
        run(train_data.run(out, epochs=1, resume=True))


def _data_with_train_videos(train_data, tmp_path, keep):
    """A copy of the test shards whose split holds only the training videos `keep(record)`
    accepts (the others become test videos)."""
    import shutil
    data = tmp_path / "data"
    shutil.copytree(train_data.path, data)
    index = json.loads((data / "index.json").read_text())
    for rec in index["videos"]:
        if rec["splits"].get("alternating") == "train" and not keep(rec):
            rec["splits"]["alternating"] = "test"
    (data / "index.json").write_text(json.dumps(index))
    return data


def test_a_run_that_cannot_take_one_step_is_refused_before_epoch_1(train_data, tmp_path):
    seen = []
    data = _data_with_train_videos(train_data, tmp_path, lambda r: not seen and not seen.append(r))
    out = tmp_path / "r"
    with pytest.raises(run_config.RunError, match=r"holds 1 video\(s\): not one optimisation step "
                                                  r"with --batch-size 4"):
        run({**train_data.run(out), "data": str(data), "val_fraction": 0})
    assert not (out / "config.json").exists() and not (out / "last.pt").exists()
    from trainer.train import steps_per_epoch
    assert steps_per_epoch(1, 4, 1) == (0, True) and steps_per_epoch(5, 4, 1) == (1, True)
    assert steps_per_epoch(6, 4, 1) == (2, False) and steps_per_epoch(8, 4, 2) == (1, False)


def test_a_class_without_training_video_is_named_in_a_warning(train_data, tmp_path, caplog):
    data = _data_with_train_videos(train_data, tmp_path, lambda r: r["label"] != 2)
    with caplog.at_level("WARNING", logger="trainer.train"):
        run({**train_data.run(tmp_path / "r", epochs=1), "data": str(data)})
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("no training video for class joy in split alternating" in m for m in warned), warned


def test_shards_made_for_another_preset_name_the_preset_that_fits():
    from types import SimpleNamespace

    from pipeline.params import PreprocessParams
    from pipeline.preprocess import DEMO_PARAMS
    from trainer.train import fitting_preset

    def hint(preset, **params):
        return fitting_preset(SimpleNamespace(reader=SimpleNamespace(params=PreprocessParams(**params)),
                                              cfg=SimpleNamespace(preset=preset)))
    assert hint("paper", **DEMO_PARAMS) == "are 4 x 8 frames at 64 px: use --preset demo"
    assert hint("dfan", **DEMO_PARAMS) == "are 4 x 8 frames at 64 px: use --preset dfan-demo"
    assert hint("demo") == "are 10 x 16 frames at 112 px: use --preset paper"
    assert hint("paper") is None and hint("paper", segments=3) is None


def test_a_full_disk_while_saving_says_what_is_intact_and_exits_3(train_data, tmp_path, monkeypatch):
    import errno

    import trainer.checkpoint
    real_save, calls = torch.save, []

    def save_until_full(obj, f, *a, **kw):
        calls.append(1)
        if len(calls) == 2:  # the checkpoint of epoch 2
            f.write(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, f, *a, **kw)
    monkeypatch.setattr(trainer.checkpoint.torch, "save", save_until_full)
    out = tmp_path / "r"
    cfg = tmp_path / "tiny.json"
    cfg.write_text(json.dumps({k: v for k, v in train_data.run(out, epochs=2).items()}))
    r = cli("train", "--config", cfg)
    assert r.exit_code == 3, r.output
    assert f"no space left on the device while writing {out / 'last.pt'}" in r.output
    assert f"{out / 'last.pt'} from epoch 1 is intact" in r.output and "--resume" in r.output
    assert "Traceback" not in r.output
    assert checkpoint.load(out / "last.pt")["epoch"] == 1  # the previous checkpoint survives
    assert sorted(p.name for p in out.iterdir() if p.name.startswith("last"))== ["last.pt"]
    monkeypatch.setattr(trainer.checkpoint.torch, "save", real_save)
    r = cli("train", "--config", cfg, "--resume")
    assert r.exit_code == 0, r.output
    assert checkpoint.load(out / "last.pt")["epoch"] == 2
