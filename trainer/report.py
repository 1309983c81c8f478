"""`vaanet report RUN_DIR`: plots and one report.html for a training run, an ablation or a protocol.

    write_report("runs/demo-demo")   # -> runs/demo-demo/report.html, images in report/

What a folder holds decides what is drawn:
  - a run (metrics.jsonl): training and validation loss and accuracy per epoch, the confusion
    matrix and per-class accuracy of the test split (best model; results.json), the result table;
  - a protocol (summary.csv, `vaanet train --split all`): test accuracy per split with the
    mean and +- one (sample) std band, the summary table, links to every split's own report;
  - an ablation (ablation.csv, `vaanet ablate`): each row's accuracy as a bar beside the
    paper's for the same row (VE-8, E-6), the table, links to every row's report.
The page uses relative links only, so it opens from disk; images are written first and the
page last (each through a temporary file and a rename), so it never names a missing file.
Plots use matplotlib's Agg canvas (no display).
"""
from __future__ import annotations

import csv
import html
import json
import logging
from pathlib import Path

import numpy as np

from pipeline import atomic

log = logging.getLogger(__name__)
IMAGES = "report"  # folder of the images, beside report.html


def _figure(width=6.4, height=3.6):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: Path) -> str:
    with atomic.open(path, "wb") as f:
        fig.savefig(f, format="png")
    return f"{IMAGES}/{path.name}"


def _write_text(path: Path, text: str) -> None:
    atomic.write_text(path, text)


# ---- plots ----------------------------------------------------------------------------------

def plot_curves(records: list[dict], out: Path) -> list[str]:
    """loss.png and accuracy.png: train and validation per epoch."""
    from matplotlib.ticker import MaxNLocator
    epochs = [r["epoch"] for r in records]
    images = []
    for key, name in (("loss", "loss"), ("accuracy", "accuracy")):
        fig = _figure()
        ax = fig.add_subplot()
        scale = 100 if key == "accuracy" else 1
        ax.plot(epochs, [scale * r["train"][key] for r in records], "o-", label="training")
        val = [(e, scale * r["val"][key]) for e, r in zip(epochs, records) if r.get("val")]
        if val:
            ax.plot(*zip(*val), "s-", label=records[-1].get("val_set", "validation"))
        best = records[-1].get("best_epoch")
        if best:
            ax.axvline(best, color="0.6", ls="--", lw=1, label=f"best epoch {best}")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(f"{name} (%)" if key == "accuracy" else name)
        ax.set_title(f"{name} per epoch")
        ax.legend()
        ax.grid(alpha=0.3)
        fig.tight_layout()
        images.append(_save(fig, out / f"{key}.png"))
    return images


def plot_confusion(confusion, classes: list[str], path: Path, title: str) -> str:
    m = np.asarray(confusion, dtype=float)
    n = len(classes)
    fig = _figure(max(4.0, 0.6 * n + 2.5), max(3.6, 0.6 * n + 2))
    ax = fig.add_subplot()
    ax.imshow(m, cmap="Blues", vmin=0, vmax=max(m.max(), 1))
    ax.set_xticks(range(n))
    ax.set_xticklabels(classes, rotation=45, ha="right")
    ax.set_yticks(range(n))
    ax.set_yticklabels(classes)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    for i in range(n):
        for j in range(n):
            ax.text(j, i, f"{int(m[i, j])}", ha="center", va="center",
                    color="white" if m[i, j] > 0.6 * m.max() else "black")
    ax.set_title(title)
    fig.tight_layout()
    return _save(fig, path)


def plot_bars(groups: list[str], series: dict, path: Path, title: str, ylabel: str = "accuracy (%)",
              band: tuple | None = None) -> str:
    """Grouped bars: `series` name -> values (%, None = no bar) per group; `band` (mean, std)
    draws the mean line and a +- std band."""
    fig = _figure(max(6.4, 0.8 * len(groups) + 2), 3.8)
    ax = fig.add_subplot()
    width = 0.8 / max(len(series), 1)
    x = np.arange(len(groups))
    for k, (name, values) in enumerate(series.items()):
        pos = x - 0.4 + width * (k + 0.5)
        vals = [np.nan if v is None else v for v in values]
        bars = ax.bar(pos, vals, width, label=name)
        for b, v in zip(bars, vals):
            if not np.isnan(v):
                ax.text(b.get_x() + b.get_width() / 2, v, f"{v:.1f}", ha="center", va="bottom", fontsize=7)
    if band is not None:
        mean, std = band
        ax.axhline(mean, color="k", lw=1, label=f"mean {mean:.1f} +- {std:.1f}")
        ax.axhspan(mean - std, mean + std, color="0.5", alpha=0.2)
    ax.set_xticks(x)
    ax.set_xticklabels(groups, rotation=30 if len(groups) > 4 else 0, ha="right" if len(groups) > 4 else "center")
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 105)
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)


# ---- the page -------------------------------------------------------------------------------

def markdown_to_html(text: str) -> str:
    """The result tables (markdown pipe tables and plain lines) as HTML."""
    parts, table = [], []

    def flush():
        if table:
            rows = [r for r in table if not set(r.replace("|", "").strip()) <= set("-: ")]
            cells = [[html.escape(c.strip().strip("*")) for c in r.strip().strip("|").split("|")] for r in rows]
            head = "".join(f"<th>{c}</th>" for c in cells[0])
            body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in cells[1:])
            parts.append(f"<table><tr>{head}</tr>{body}</table>")
            table.clear()

    for line in text.splitlines():
        if line.strip().startswith("|"):
            table.append(line)
            continue
        flush()
        if line.strip():
            parts.append(f"<p>{html.escape(line)}</p>")
    flush()
    return "\n".join(parts)


STYLE = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
         "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #bbb;padding:3px 8px;"
         "text-align:right}th{background:#eee}img{max-width:100%;margin:0.5em 0}")


def page(title: str, sections: list[tuple[str, str]]) -> str:
    body = "\n".join(f"<h2>{html.escape(h)}</h2>\n{content}" for h, content in sections)
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head>\n<body><h1>{html.escape(title)}</h1>\n{body}\n</body></html>\n")


def img(src: str) -> str:
    return f'<img src="{html.escape(src)}" alt="{html.escape(Path(src).stem)}">'


def _links(run_dir: Path, folders: list[Path]) -> str:
    items = [f'<li><a href="{html.escape(f.relative_to(run_dir).as_posix())}/report.html">'
             f"{html.escape(f.name)}</a></li>" for f in folders if (f / "report.html").is_file()]
    return f"<ul>{''.join(items)}</ul>" if items else ""


# ---- the three kinds of folder -------------------------------------------------------------

def run_sections(run_dir: Path) -> list:
    out = run_dir / IMAGES
    sections = []
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    epochs = [r for r in records if "epoch" in r and r.get("train")]
    if epochs:
        sections.append(("Training", "".join(img(i) for i in plot_curves(epochs, out))))
    results_path = run_dir / "results.json"
    if results_path.is_file():
        res = json.loads(results_path.read_text())
        classes = res["classes"]
        best, last = res["test_best"], res["test_last"]
        conf = plot_confusion(best["confusion"], classes, out / "confusion.png",
                              f"test split {res['split']}, best model (epoch {res['best_epoch']})")
        pct = lambda r: [None if a is None else 100 * a for a in r["per_class_accuracy"]]  # noqa: E731
        bars = plot_bars(classes, {f"best (epoch {res['best_epoch']})": pct(best),
                                   f"last (epoch {res['last_epoch']})": pct(last)},
                         out / "per_class.png", "per-class test accuracy")
        table = (run_dir / "results.md").read_text() if (run_dir / "results.md").is_file() else ""
        sections.append(("Test split", img(conf) + img(bars) + markdown_to_html(table)))
    return sections


def protocol_sections(run_dir: Path) -> list:
    with open(run_dir / "summary.csv") as f:
        rows = list(csv.DictReader(f))
    splits = [r for r in rows if r["split"] not in ("mean", "std")]
    mean = next(r for r in rows if r["split"] == "mean")
    std = next(r for r in rows if r["split"] == "std")
    num = lambda v: None if v in ("", None) else 100 * float(v)  # noqa: E731
    chart = plot_bars([r["split"] for r in splits], {"test accuracy": [num(r["accuracy"]) for r in splits]},
                      run_dir / IMAGES / "splits.png", "test accuracy per split (best model)",
                      band=(num(mean["accuracy"]) or 0.0, num(std["accuracy"]) or 0.0))
    table = (run_dir / "summary.md").read_text() if (run_dir / "summary.md").is_file() else ""
    folders = sorted(run_dir.glob("split-*"))
    return [("Splits", img(chart) + markdown_to_html(table)),
            ("Runs", _links(run_dir, folders) or "<p>no per-split report</p>")]


def ablation_sections(run_dir: Path) -> list:
    with open(run_dir / "ablation.csv") as f:
        rows = list(csv.DictReader(f))
    names = [f"{r['attention']} {r['loss'].upper()}" for r in rows]
    series = {"ours": [100 * float(r["accuracy"]) if r["accuracy"] else None for r in rows]}
    paper = [float(r["paper_accuracy_pct"]) if r["paper_accuracy_pct"] else None for r in rows]
    if any(p is not None for p in paper):
        series["paper"] = paper
    chart = plot_bars(names, series, run_dir / IMAGES / "ablation.png", "test accuracy per ablation row")
    table = (run_dir / "ablation.md").read_text() if (run_dir / "ablation.md").is_file() else ""
    folders = [run_dir / f"{r['attention']}-{r['loss']}" for r in rows]
    return [("Ablation", img(chart) + markdown_to_html(table)),
            ("Rows", _links(run_dir, folders) or "<p>no per-row report</p>")]


def write_report(run_dir) -> Path:
    """Write RUN_DIR/report.html and its images; ValueError for a folder that is no run."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ValueError(f"run folder not found: {run_dir}")
    if (run_dir / "ablation.csv").is_file():
        title, sections = f"Ablation {run_dir.name}", ablation_sections(run_dir)
    elif (run_dir / "summary.csv").is_file():
        title, sections = f"Protocol {run_dir.name}", protocol_sections(run_dir)
    elif (run_dir / "metrics.jsonl").is_file():
        title, sections = f"Run {run_dir.name}", run_sections(run_dir)
    else:
        raise ValueError(f"{run_dir} is not a run folder: no metrics.jsonl (vaanet train), summary.csv "
                         "(vaanet train --split all) or ablation.csv (vaanet ablate)")
    path = run_dir / "report.html"
    _write_text(path, page(title, sections))
    return path


def try_write_report(run_dir) -> Path | None:
    """write_report for the end of train, ablate and protocol runs: a failure is logged, never
    raised, so that a finished run is not reported as failed because of a plot."""
    try:
        return write_report(run_dir)
    except Exception as e:  # noqa: BLE001 (the run's results are written already)
        log.warning("could not write the report of %s: %s: %s", run_dir, type(e).__name__, e)
        return None
