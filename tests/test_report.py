"""`vaanet report`: the plots and report.html of a run (written by train itself), a protocol and an
ablation; every file the page names exists."""
import html
import json
import re
import shutil

import pytest
from click.testing import CliRunner

from cli import main
from trainer import ablate, protocol, run_config
from trainer.train import train


@pytest.fixture(scope="module")
def run_dir(train_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "run"
    train(run_config.resolve(train_data.run(out, epochs=2)), quiet=True)
    return out


def references(page):
    """Every file report.html links to, resolved beside it; all must exist and be relative."""
    text = page.read_text()
    refs = [html.unescape(r) for r in re.findall(r'(?:src|href)="([^"]+)"', text)]
    for r in refs:
        assert not r.startswith(("/", "http", "file:")), r
        assert (page.parent / r).is_file(), r
    return refs


def is_png(path):
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_train_writes_the_run_report(run_dir):
    page = run_dir / "report.html"
    assert page.is_file()  # written by train itself
    refs = references(page)
    assert sorted(refs) == ["report/accuracy.png", "report/confusion.png", "report/loss.png",
                            "report/per_class.png"]
    assert all(is_png(run_dir / r) for r in refs)
    text = page.read_text()
    assert "<table>" in text and "<td>best</td>" in text  # the result table as HTML
    # the command writes the same again
    r = CliRunner().invoke(main, ["report", str(run_dir)])
    assert r.exit_code == 0 and "report.html" in r.output


def test_protocol_report(run_dir, tmp_path):
    results = json.loads((run_dir / "results.json").read_text())
    for s in ("0", "1"):
        shutil.copytree(run_dir, tmp_path / f"split-{s}", ignore=shutil.ignore_patterns("*.pt"))
    summary = protocol.summarize({"0": results, "1": results}, results["classes"])
    protocol.write_summary(tmp_path, summary)
    r = CliRunner().invoke(main, ["report", str(tmp_path)])
    assert r.exit_code == 0, r.output
    refs = references(tmp_path / "report.html")
    assert refs == ["report/splits.png", "split-0/report.html", "split-1/report.html"]
    assert "mean +- std" in (tmp_path / "report.html").read_text()


def test_ablation_report_has_the_papers_numbers(run_dir, tmp_path):
    classes = ["anger", "disgust", "fear", "joy", "sadness", "surprise"]
    rows = [{"attention": a, "streams": "visual", "loss": "pcce", "per_class_accuracy": [0.5] * 6,
             "accuracy": acc, "splits": 1, "paper_accuracy": ablate.PAPER_ACCURACY["e6"][(a, "pcce")]}
            for a, acc in (("VS", 0.4), ("VS+VCW", 0.45))]
    table = {"dataset": "e6", "classes": classes, "rows": rows}
    ablate.write_csv(tmp_path / "ablation.csv", table)
    (tmp_path / "ablation.md").write_text(ablate.markdown(table) + "\n")
    shutil.copytree(run_dir, tmp_path / "VS-pcce", ignore=shutil.ignore_patterns("*.pt"))
    r = CliRunner().invoke(main, ["report", str(tmp_path)])
    assert r.exit_code == 0, r.output
    assert references(tmp_path / "report.html") == ["report/ablation.png", "VS-pcce/report.html"]
    text = (tmp_path / "report.html").read_text()
    assert "<th>paper</th>" in text and "<td>50.8</td>" in text  # the paper's E-6 VS row


def test_not_a_run_folder(tmp_path):
    r = CliRunner().invoke(main, ["report", str(tmp_path)])
    assert r.exit_code == 2 and "is not a run folder" in r.output
    assert not (tmp_path / "report.html").exists()
