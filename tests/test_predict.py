"""`vaanet predict`: the same answers as `vaanet evaluate` on the shards of the same videos, rows
for failed videos, usage errors with exit status 2."""
import csv
import json
import shutil

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from cli import main
from pipeline.reader import ShardReader
from tests import videos as tv
from trainer import checkpoint, run_config
from trainer.train import train


@pytest.fixture(scope="module")
def run_dir(train_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("predict") / "run"
    train(run_config.resolve(train_data.run(out, epochs=1)), quiet=True)
    return out


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_predict_matches_evaluate_on_the_shards_of_the_same_videos(run_dir, train_data, tmp_path):
    r = invoke("evaluate", "--run", run_dir, "--out", tmp_path, "--device", "cpu")
    assert r.exit_code == 0, r.output
    evaluated = {row["id"]: row for row in
                 csv.DictReader(open(tmp_path / "predictions-best-splitalternating-test.csv"))}
    with ShardReader(train_data.path) as reader:
        sources = {reader.meta(i)["source"]: i for i in evaluated}
    r = invoke("predict", *sources, "--run", run_dir, "--out", tmp_path / "p.json", "--device", "cpu",
               "--batch-size", 5, "-q")
    assert r.exit_code == 0, r.output
    doc = json.loads((tmp_path / "p.json").read_text())
    assert doc["params_source"] == "checkpoint" and doc["params"]["frames"] == 4
    classes = doc["classes"]
    assert len(doc["videos"]) == len(evaluated) == 16
    for row in doc["videos"]:
        ev = evaluated[sources[row["video"]]]
        assert row["status"] == "ok" and row["prediction"] == ev["prediction"]
        # the label comes from the class folder the video sits in
        assert row["label"] == ev["label"]
        ours = np.array([row["probs"][c] for c in classes])
        theirs = np.array([float(ev[f"p_{c}"]) for c in classes])
        assert np.abs(ours - theirs).max() < 1e-4
        assert row["probability"] == pytest.approx(ours.max())
        assert row["polarity"] == ("negative" if row["prediction"] in ("anger", "fear") else "positive")
        assert row["has_audio"] is True
    # the printed table has one line per video
    assert r.output.count("positive") + r.output.count("negative") == 16


def test_directory_failed_video_and_csv(run_dir, train_data, tmp_path):
    with ShardReader(train_data.path) as reader:
        src = [reader.meta(i)["source"] for i in reader.ids[:2]]
    folder = tmp_path / "in"
    folder.mkdir()
    for s in src:
        shutil.copy(s, folder)
    tv.truncate(src[0], folder / "broken.mp4", 0.3)
    (folder / "notes.txt").write_text("not a video")
    # a video shorter than one snippet: the ETL's rule (frames loop), noted in the row
    tv.write_video(folder / "short.mp4", tv.colour_frames([(200, 30, 30)], 2, 64, 48), fps=25)
    r = invoke("predict", folder, "--checkpoint", run_dir / "best.pt", "--out", tmp_path / "p.csv",
               "--device", "cpu", "-q")
    assert r.exit_code == 1, r.output
    assert "skipped" in r.output and "notes.txt" in r.output
    rows = {row["video"].split("/")[-1]: row for row in csv.DictReader(open(tmp_path / "p.csv"))}
    assert sorted(rows) == sorted([s.split("/")[-1] for s in src] + ["broken.mp4", "short.mp4"])
    assert rows["broken.mp4"]["status"] == "failed" and rows["broken.mp4"]["reason"]
    assert rows["broken.mp4"]["p_anger"] == ""
    assert rows["short.mp4"]["status"] == "ok" and "short video" in rows["short.mp4"]["notes"]
    assert rows["short.mp4"]["has_audio"] == "0"
    for name in [s.split("/")[-1] for s in src] + ["short.mp4"]:
        p = [float(rows[name][f"p_{c}"]) for c in ("anger", "fear", "joy", "surprise")]
        assert abs(sum(p) - 1) < 1e-5
    assert "FAILED" in r.output and "1 of 4 videos could not be predicted" in r.output


def test_usage_errors(run_dir, train_data, tmp_path):
    with ShardReader(train_data.path) as reader:
        video = reader.meta(reader.ids[0])["source"]
    r = invoke("predict", video, "--checkpoint", tmp_path / "none.pt")
    assert r.exit_code == 2 and "checkpoint not found" in r.output
    (tmp_path / "junk.pt").write_bytes(b"junk")
    r = invoke("predict", video, "--checkpoint", tmp_path / "junk.pt")
    assert r.exit_code == 2 and "not a readable checkpoint" in r.output
    r = invoke("predict", video, "--run", tmp_path)
    assert r.exit_code == 2 and "holds no best.pt" in r.output
    r = invoke("predict", video)
    assert r.exit_code == 2 and "either a checkpoint file" in r.output
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "a.txt").write_text("x")
    r = invoke("predict", empty, "--run", run_dir)
    assert r.exit_code == 2 and "no videos found" in r.output
    r = invoke("predict", video, "--run", run_dir, "--out", tmp_path / "p.xlsx")
    assert r.exit_code == 2 and ".json or .csv" in r.output
    r = invoke("predict", video, "--run", run_dir, "--explain", tmp_path / "x", "--class", "calm")
    assert r.exit_code == 2 and "'calm' is not a class" in r.output
    # weights of another architecture than the one the checkpoint names
    ckpt = checkpoint.load(run_dir / "best.pt")
    ckpt["model_config"]["visual_depth"] = 18
    torch.save(ckpt, tmp_path / "other.pt")
    r = invoke("predict", video, "--checkpoint", tmp_path / "other.pt")
    assert r.exit_code == 2 and "do not fit the architecture" in r.output
    assert not (tmp_path / "p.xlsx").exists() and not (tmp_path / "x").exists()


def test_checkpoint_without_params_falls_back_to_the_model_config(run_dir, train_data, tmp_path, caplog):
    from trainer.predict import load_model
    ckpt = checkpoint.load(run_dir / "best.pt")
    recorded = ckpt.pop("data_params")
    torch.save(ckpt, tmp_path / "old.pt")
    loaded = load_model(tmp_path / "old.pt", device="cpu")
    assert loaded.params_source == "derived from the model configuration"
    assert "records no preprocessing parameters" in caplog.text
    p = loaded.params
    assert (p.segments, p.frames, p.short_side, p.n_mfcc) == (2, 4, 48, 32)
    assert recorded["frames"] == 4 and recorded["short_side"] == 48
    # the official preset's documented audio settings
    from model.config import preset
    from trainer.predict import params_for
    official, _ = params_for({}, preset("official"))
    assert (official.segments, official.sample_rate, official.nfft) == (12, 44100, 2048)


def test_a_checkpoint_whose_data_parameters_do_not_fit_its_model_is_refused(run_dir, tmp_path):
    from trainer.predict import PredictError, load_model
    ckpt = checkpoint.load(run_dir / "best.pt")
    ckpt["data_params"] = {**ckpt["data_params"], "frames": 2, "short_side": 32, "n_mfcc": 13}
    torch.save(ckpt, tmp_path / "odd.pt")
    with pytest.raises(PredictError) as e:
        load_model(tmp_path / "odd.pt", device="cpu")
    for part in ("frames per segment: the model takes 4, its data parameters give 2",
                 "crop: the model takes 48, its data parameters give 32",
                 "n_mfcc: the model takes 32, its data parameters give 13"):
        assert part in str(e.value)
