"""`vaanet evaluate`: deterministic, identical twice, consistent with the trainer and the metrics."""
import csv
import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from cli import main
from trainer import checkpoint, metrics, run_config
from trainer.train import train


@pytest.fixture(scope="module")
def run_dir(train_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("eval") / "run"
    train(run_config.resolve(train_data.run(out, epochs=2)), quiet=True)
    return out


def evaluate(*args):
    r = CliRunner().invoke(main, ["evaluate", "--device", "cpu", *[str(a) for a in args]])
    return r


def test_evaluate_twice_gives_identical_files(run_dir, tmp_path):
    outputs = []
    for name in ("a", "b"):
        r = evaluate("--run", run_dir, "--out", tmp_path / name)
        assert r.exit_code == 0, r.output
        assert "accuracy" in r.output
        outputs.append({p.name: p.read_bytes() for p in (tmp_path / name).iterdir()})
    assert sorted(outputs[0]) == ["eval-best-splitalternating-test.json", "predictions-best-splitalternating-test.csv"]
    assert outputs[0] == outputs[1]
    # and the trainer's own test predictions of the best model are the same numbers
    ours = list(csv.reader(open(tmp_path / "a" / "predictions-best-splitalternating-test.csv")))
    trainer = list(csv.reader(open(run_dir / "predictions-best-test.csv")))
    assert ours == trainer


def test_predictions_csv_and_metrics_agree(run_dir, tmp_path, train_data):
    r = evaluate("--checkpoint", run_dir / "last.pt", "--data", train_data.path, "--split", "alternating",
                 "--out", tmp_path)
    assert r.exit_code == 0, r.output
    rows = list(csv.DictReader(open(tmp_path / "predictions-last-splitalternating-test.csv")))
    classes = ["anger", "fear", "joy", "surprise"]
    assert len(rows) == 16 and list(rows[0])[:6] == ["id", "label", "prediction", "label_polarity",
                                                    "predicted_polarity", "correct"]
    probs = np.array([[float(r[f"p_{c}"]) for c in classes] for r in rows])
    assert np.allclose(probs.sum(1), 1, atol=1e-5)
    assert [classes[i] for i in probs.argmax(1)] == [r["prediction"] for r in rows]
    for r in rows:  # ids are class/name and the label is the folder's class
        assert r["id"].split("/")[0] == r["label"]
        assert r["label_polarity"] == ("negative" if r["label"] in ("anger", "fear") else "positive")
    labels = [classes.index(r["label"]) for r in rows]
    preds = [classes.index(r["prediction"]) for r in rows]
    report = json.loads((tmp_path / "eval-last-splitalternating-test.json").read_text())
    expected = metrics.classification_report(labels, preds, [0, 0, 1, 1])
    for k in ("accuracy", "polarity_accuracy", "macro_f1", "confusion", "per_class_accuracy"):
        assert report[k] == expected[k], k
    assert report["epoch"] == 2


def test_evaluate_errors(run_dir, tmp_path, train_data):
    r = evaluate("--data", train_data.path)
    assert r.exit_code == 2 and "either a checkpoint file (--checkpoint) or a run folder (--run)" in r.output
    r = evaluate("--run", run_dir, "--split", "3")
    assert r.exit_code == 2 and "available splits: alternating" in r.output
    r = evaluate("--run", tmp_path / "none")
    assert r.exit_code == 2 and "run folder not found" in r.output
    # a checkpoint trained for other classes than the data has
    ckpt = checkpoint.load(run_dir / "best.pt")
    ckpt["classes"] = [f"c{i}" for i in range(8)]
    ckpt["model_config"]["num_classes"] = 8
    torch.save(ckpt, tmp_path / "other.pt")
    r = evaluate("--checkpoint", tmp_path / "other.pt", "--data", train_data.path)
    assert r.exit_code == 2 and "trained for 8 classes" in r.output and "the data has 4" in r.output


def test_imported_checkpoint_refuses_shards_of_another_profile(run_dir, tmp_path, train_data):
    # an authors' checkpoint (import-checkpoint records imported_from) on paper-profile shards
    ckpt = torch.load(run_dir / "last.pt", weights_only=True)
    checkpoint.save(tmp_path / "imported.pt", **{k: v for k, v in ckpt.items()
                                                 if k not in ("format", "version")},
                    imported_from="their_model.pth")
    r = evaluate("--checkpoint", tmp_path / "imported.pt", "--data", train_data.path,
                 "--split", "alternating", "--out", tmp_path / "out")
    assert r.exit_code == 2, r.output
    assert "--profile official" in r.output and "has profile paper" in r.output
    assert not (tmp_path / "out").exists()


def test_profile_check_passes_official_shards_and_own_checkpoints():
    from types import SimpleNamespace
    from pipeline.params import official_params
    from trainer.evaluate import check_profile
    check_profile({"imported_from": "x.pth"}, official_params(), "d")
    check_profile({}, SimpleNamespace(profile="paper"), "d")   # a checkpoint trained here
    with pytest.raises(ValueError, match="needs shards preprocessed with"):
        check_profile({"imported_from": "x.pth"}, SimpleNamespace(profile="paper"), "d")


def test_a_checkpoint_of_another_input_geometry_is_refused(run_dir, tmp_path, train_data):
    # as if trained on shards of 4 segments x 8 frames at 64 px: these shards are 2 x 4 at 48 px
    ckpt = torch.load(run_dir / "last.pt", weights_only=True)
    ckpt["data_params"] = {**ckpt["data_params"], "segments": 4, "frames": 8, "short_side": 64}
    torch.save(ckpt, tmp_path / "other.pt")
    r = evaluate("--checkpoint", tmp_path / "other.pt", "--data", train_data.path,
                 "--out", tmp_path / "out")
    assert r.exit_code == 2, r.output
    for name, trained, have in (("segments", 4, 2), ("frames", 8, 4), ("short_side", 64, 48)):
        assert f"{name}: trained on {trained}, the data has {have}" in r.output, name
    assert "n_mfcc" not in r.output and not (tmp_path / "out").exists()
