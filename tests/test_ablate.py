"""Ablation runner: the rows it plans, the table it writes (with the paper's numbers when known)."""
import csv
import json

import pytest
from click.testing import CliRunner

from cli import main
from trainer import ablate, run_config


def test_paper_plan_has_the_papers_rows():
    assert ablate.plan(["paper"], []) == [
        ("AT", "pcce"), ("VS", "pcce"), ("VS+VCW", "pcce"), ("VS+VCW+VT", "pcce"),
        ("VS+VCW+VT+AT", "pcce"), ("VS+VCW+VT", "ce"), ("VS+VCW+VT+AT", "ce")]
    assert ablate.plan(["paper"], ["ce"]) == [("VS+VCW+VT", "ce"), ("VS+VCW+VT+AT", "ce")]
    # canonical order, case-insensitive, no duplicates
    assert ablate.plan(["vcw+vs", "VS+VCW", "at"], ["ce", "pcce"]) == [
        ("VS+VCW", "ce"), ("VS+VCW", "pcce"), ("AT", "ce"), ("AT", "pcce")]
    with pytest.raises(ValueError, match="unknown attention 'VX'"):
        ablate.plan(["VS+VX"], [])


def test_markdown_puts_the_paper_beside_ours_for_ve8():
    rows = [{"attention": a, "streams": "visual", "loss": l, "per_class_accuracy": [0.5] * 8,
             "accuracy": 0.5, "splits": 10, "split_rule": "random 2/3 x 10",
             "paper_accuracy": ablate.PAPER_ACCURACY["ve8"].get((a, l))}
            for a, l in ablate.PAPER_ROWS]
    text = ablate.markdown({"dataset": "ve8", "classes": [f"c{i}" for i in range(8)], "rows": rows})
    assert ("| VS+VCW+VT+AT | visual | PCCE | " + " | ".join(["50.0"] * 9)
            + " | 10 | random 2/3 x 10 | 54.5 |") in text
    assert "(mean of 10 random 2/3-1/3 splits)" in text
    assert "| VS+VCW+VT | visual | CE |" in text and "| 51.9 |" in text
    text = ablate.markdown({"dataset": "demo", "classes": ["a"], "rows": rows[:1]})
    assert "paper" not in text


def test_ablate_command_trains_each_row_and_writes_the_table(train_data, tmp_path):
    cfg = tmp_path / "tiny.json"
    cfg.write_text(json.dumps({"model": train_data.model, "epochs": 1, "batch_size": 4, "workers": 0,
                               "val_fraction": 0.25, "freeze_visual": True}))
    out = tmp_path / "abl"
    r = CliRunner().invoke(main, ["ablate", "--data", str(train_data.path), "--preset", "demo",
                                  "--config", str(cfg), "--device", "cpu", "--out", str(out),
                                  "--attn", "AT", "--attn", "VS", "--loss", "ce"])
    assert r.exit_code == 0, r.output
    assert (out / "AT-ce" / "best.pt").is_file() and (out / "VS-ce" / "best.pt").is_file()
    assert json.loads((out / "AT-ce" / "config.json").read_text())["resolved_model"]["streams"] == "audio"
    assert json.loads((out / "VS-ce" / "config.json").read_text())["resolved_model"]["streams"] == "visual"
    rows = list(csv.DictReader(open(out / "ablation.csv")))
    assert [(x["attention"], x["streams"], x["loss"]) for x in rows] == [("AT", "audio", "ce"),
                                                                       ("VS", "visual", "ce")]
    for x in rows:  # each row's accuracy is its run's best-model test accuracy
        res = json.loads((out / f"{x['attention']}-ce" / "results.json").read_text())
        assert float(x["accuracy"]) == pytest.approx(res["test_best"]["accuracy"])
    assert [(x["splits"], x["split_rule"]) for x in rows] == [("1", "alternating")] * 2
    md = (out / "ablation.md").read_text()
    assert "| AT | audio | CE |" in md and md in r.output + "\n"
    assert "| 1 | alternating |" in md
    assert "selected on validation" in md


def test_the_table_says_when_the_test_split_selected_the_model():
    rows = [{"attention": "VS", "streams": "visual", "loss": "ce", "per_class_accuracy": [0.5],
             "accuracy": 0.5, "paper_accuracy": None}]
    text = ablate.markdown({"dataset": "demo", "classes": ["a"], "rows": rows,
                            "selected_on": "the TEST split (--select-on-test: optimistic)"})
    assert "selected on the TEST split" in text


def test_rows_take_only_the_weights_of_their_streams():
    from trainer.ablate import weights_for_row
    cfg = run_config.resolve({"data": "x", "preset": "demo", "visual_weights": "v.pth",
                              "audio_weights": "a.pth"})
    assert weights_for_row(cfg, "AT") == {"visual_weights": None, "object_weights": None,
                                          "scene_weights": None}
    assert weights_for_row(cfg, "VS+VCW") == {"audio_weights": None}
    assert weights_for_row(cfg, "VS+VCW+VT+AT") == {}


def test_the_same_ablate_command_twice_makes_a_new_folder(train_data, tmp_path, monkeypatch):
    # the rows themselves are trained by the test above; here only the folder each command picks
    import trainer.ablate
    from click.testing import CliRunner

    from cli import main
    from trainer.run_config import RunError

    def report_folder(cfg, *a, **kw):
        raise RunError(f"folder {cfg.out}")
    monkeypatch.setattr(trainer.ablate, "run_ablation", report_folder)
    monkeypatch.chdir(tmp_path)
    args = ["ablate", "--data", str(train_data.path), "--preset", "demo", "--attn", "AT", "--device", "cpu"]
    first = "runs/ablate-shards-demo"
    assert f"folder {first}\n" in CliRunner().invoke(main, args).output
    (tmp_path / first).mkdir(parents=True)
    assert f"folder {first}-2\n" in CliRunner().invoke(main, args).output
    assert f"folder {first}\n" in CliRunner().invoke(main, args + ["--resume"]).output
