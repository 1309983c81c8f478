"""Ablations: train and test one configuration per row, then one table with the paper's columns.

    vaanet ablate --attn VS --attn VS+VCW --loss pcce --data DIR --out runs/ablate
    vaanet ablate --attn paper --data DIR            # the paper's whole ablation (7 runs)

`--attn paper` runs the rows of the paper's attention ablation (AT, VS, VS+VCW, VS+VCW+VT,
VS+VCW+VT+AT, all with PCCE) and of its loss comparison (VS+VCW+VT and VS+VCW+VT+AT with CE;
their PCCE rows are shared with the attention ablation). Streams follow the attention as in the
paper: AT alone is audio only, visual attentions alone are visual only, both otherwise.

Each row is one `vaanet train` run in OUT/<attention>-<loss>/ (every split of the data with
--split all, reported as the mean). The table, OUT/ablation.md and OUT/ablation.csv, holds
per-class and overall test accuracy (best model, selected on validation) and, for VE-8 and
E-6, the paper's accuracy for the same row.
"""
from __future__ import annotations

import csv
import dataclasses
import json
import logging
from pathlib import Path

from pipeline import atomic
from trainer import distributed, run_config
from trainer.errors import disk_full_as

logger = logging.getLogger(__name__)

PAPER_ROWS = [("AT", "pcce"), ("VS", "pcce"), ("VS+VCW", "pcce"), ("VS+VCW+VT", "pcce"),
              ("VS+VCW+VT+AT", "pcce"), ("VS+VCW+VT", "ce"), ("VS+VCW+VT+AT", "ce")]

# the paper's Tables (average accuracy, %): attention ablation with PCCE, and CE vs PCCE
PAPER_ACCURACY = {
    "ve8": {("AT", "pcce"): 41.4, ("VS", "pcce"): 51.7, ("VS+VCW", "pcce"): 52.6,
            ("VS+VCW+VT", "pcce"): 53.6, ("VS+VCW+VT+AT", "pcce"): 54.5,
            ("VS+VCW+VT", "ce"): 51.9, ("VS+VCW+VT+AT", "ce"): 53.9},
    "e6": {("AT", "pcce"): 37.2, ("VS", "pcce"): 50.8, ("VS+VCW", "pcce"): 53.4,
           ("VS+VCW+VT", "pcce"): 54.5, ("VS+VCW+VT+AT", "pcce"): 55.3,
           ("VS+VCW+VT", "ce"): 52.0, ("VS+VCW+VT+AT", "ce"): 54.6},
}


# how the paper's numbers were obtained, shown beside them
PAPER_PROTOCOL = {"ve8": "mean of 10 random 2/3-1/3 splits", "e6": "the given 819/818 split"}


def plan(attns: list[str], losses: list[str]) -> list[tuple[str, str]]:
    """The (attention spec, loss) rows to run, attention specs in canonical form, no repeats."""
    from model.config import format_attention, parse_attention
    rows = []
    for a in attns or ["paper"]:
        if a.strip().lower() == "paper":
            rows += PAPER_ROWS if not losses else [(r, l) for r, l in PAPER_ROWS if l in losses]
        else:
            with run_config.user_input():  # an --attn value
                spec = format_attention(parse_attention(a))
            rows += [(spec, l) for l in (losses or ["pcce"])]
    return list(dict.fromkeys(rows))


def run_ablation(cfg: run_config.RunConfig, attns: list[str], losses: list[str], quiet: bool = False) -> dict:
    """Train and test every row; returns the table (also written to OUT; `markdown` makes the
    text the command line prints). `quiet`: no progress bars."""
    from model.config import streams_for, parse_attention
    from trainer.data import open_data, split_rule
    from trainer.protocol import run_all_splits
    from trainer.train import train
    rows = plan(attns, losses)
    reader = open_data(cfg.data)
    dataset, classes = reader.dataset, list(reader.classes)
    rule = split_rule(reader.root)
    reader.close()
    out = Path(cfg.out)
    results = []
    for attn, loss in rows:
        name = f"{attn}-{loss}"
        row_cfg = dataclasses.replace(cfg, attn=attn, loss=loss, out=str(out / name),
                                      **weights_for_row(cfg, attn))
        if cfg.split == "all":
            summary = run_all_splits(row_cfg, quiet=quiet)
            acc, per_class, n_splits = summary["mean"]["accuracy"], \
                [summary["mean"][f"acc_{c}"] for c in classes], len(summary["rows"])
        else:
            # a resumed ablation skips finished rows and continues the interrupted one
            if cfg.resume and (out / name / "results.json").is_file():
                res = json.loads((out / name / "results.json").read_text())
                if distributed.rank() == 0:
                    logger.info(f"row {name}: finished before, results kept from {out / name / 'results.json'}")
            else:
                resume = cfg.resume and (out / name / "last.pt").is_file()
                res = train(dataclasses.replace(row_cfg, resume=resume), quiet=quiet)
            acc, per_class, n_splits = res["test_best"]["accuracy"], res["test_best"]["per_class_accuracy"], 1
        results.append({"attention": attn, "streams": streams_for(parse_attention(attn)), "loss": loss,
                        "per_class_accuracy": per_class, "accuracy": acc, "splits": n_splits,
                        "split_rule": rule,
                        "paper_accuracy": PAPER_ACCURACY.get(dataset, {}).get((attn, loss))})
    table = {"dataset": dataset, "classes": classes, "rows": results,
             "selected_on": "the TEST split (--select-on-test: optimistic)" if cfg.select_on_test else "validation"}
    with distributed.agreement(), disk_full_as(  # rank 0 writes: every process learns how it went
            f"the ablation table in {out}", "every row's results are kept: free space, then run the same "
            "command with --resume (finished rows are not trained again)"):
        if distributed.rank() == 0:
            out.mkdir(parents=True, exist_ok=True)
            atomic.write_text(out / "ablation.md", markdown(table) + "\n")
            write_csv(out / "ablation.csv", table)
            from trainer.report import try_write_report
            try_write_report(out)  # rows beside the paper's, report.html
    return table


def markdown(table: dict) -> str:
    classes = table["classes"]
    paper = table["dataset"] in PAPER_ACCURACY
    head = ["attention", "streams", "loss", *classes, "accuracy", "splits", "split rule"] + \
        (["paper"] if paper else [])
    pct = lambda v: "-" if v is None else f"{100 * v:.1f}"  # noqa: E731
    note = (f"; 'paper' = the VAANet paper's accuracy for {table['dataset'].upper()} "
            f"({PAPER_PROTOCOL.get(table['dataset'], '')}): comparable only with the same "
            "split rule and number of splits" if paper else "")
    lines = [f"Ablation on {table['dataset']}: test accuracy (%) of the model selected on "
             f"{table.get('selected_on', 'validation')}{note}",
             "", "| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for r in table["rows"]:
        cells = [r["attention"], r["streams"], r["loss"].upper(), *[pct(a) for a in r["per_class_accuracy"]],
                 pct(r["accuracy"]), str(r.get("splits", "-")), r.get("split_rule", "-")]
        if paper:
            cells.append("-" if r["paper_accuracy"] is None else f"{r['paper_accuracy']:.1f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_csv(path: Path, table: dict) -> None:
    classes = table["classes"]
    with atomic.open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["attention", "streams", "loss", *[f"acc_{c}" for c in classes], "accuracy", "splits",
                    "split_rule", "paper_accuracy_pct"])
        for r in table["rows"]:
            fmt = lambda v: "" if v is None else f"{v:.6f}"  # noqa: E731
            w.writerow([r["attention"], r["streams"], r["loss"], *[fmt(a) for a in r["per_class_accuracy"]],
                        fmt(r["accuracy"]), r["splits"], r.get("split_rule", ""),
                        "" if r["paper_accuracy"] is None else r["paper_accuracy"]])


def weights_for_row(cfg, attn: str) -> dict:
    """The pretrained weights a row can use: an audio-only row (AT) takes no visual weights and
    a visual-only row no audio weights, so one command line serves every row of the table."""
    from model.config import parse_attention, streams_for
    streams = (cfg.model or {}).get("streams") or streams_for(parse_attention(attn))
    drop = {}
    if streams == "audio":
        drop.update(visual_weights=None, object_weights=None, scene_weights=None)
    if streams == "visual":
        drop["audio_weights"] = None
    return drop
