"""The papers' evaluation protocols.

VE-8: 10 runs, each on its own random 2/3 train / 1/3 test split of every class (the shards
hold them as splits "0".."9"); the result is the mean (and std) of the 10 test accuracies.
E-6: its one given 819/818 split (not shipped with the dataset: without --split-file the shards
hold the "alternating" split instead, which is not the paper's). `vaanet train --split all` trains one run per split of the data into
RUN_DIR/split-<name>/ and writes RUN_DIR/summary.md and summary.csv: test accuracy, mean class
accuracy, polarity accuracy, macro-F1 and per-class accuracy of every split (best model, i.e.
selected on validation), then mean and sample std over the splits.
"""
from __future__ import annotations

import csv
import dataclasses
import json
import logging
from pathlib import Path

import numpy as np

from pipeline import atomic
from trainer import distributed, run_config
from trainer.errors import disk_full_as

logger = logging.getLogger(__name__)
COLUMNS = ("accuracy", "mean_class_accuracy", "polarity_accuracy", "macro_f1")
KEPT = ("every split's results are kept: free space, then run the same command with --resume "
        "(finished splits are not trained again)")


def run_all_splits(cfg: run_config.RunConfig, quiet: bool = False) -> dict:
    """Train and test every split of cfg.data; returns the summary (also written to RUN_DIR;
    `summary_markdown` makes the table the command line prints). `quiet`: no progress bars.
    A command that fails before any split has saved a checkpoint leaves no folder of its own."""
    from trainer.train import unused_run_dir_discarded
    with unused_run_dir_discarded(cfg.out):
        return _run_all_splits(cfg, quiet)


def _run_all_splits(cfg: run_config.RunConfig, quiet: bool) -> dict:
    from trainer.data import open_data
    from trainer.train import train
    reader = open_data(cfg.data)
    splits, classes = list(reader.splits), list(reader.classes)
    reader.close()
    run_dir = Path(cfg.out)
    with distributed.agreement(), disk_full_as(  # rank 0 writes: every process learns how it went
            run_dir / "config.json", "no split is trained by this command yet: free space, then run it again"):
        if distributed.rank() == 0:
            run_config.save(cfg, run_dir)
    per_split = {}
    for s in splits:
        sub_dir = run_dir / f"split-{s}"
        # a resumed protocol skips finished splits and continues the interrupted one
        if cfg.resume and (sub_dir / "results.json").is_file():
            per_split[s] = json.loads((sub_dir / "results.json").read_text())
            if distributed.rank() == 0:
                logger.info(f"split {s}: finished before, results kept from {sub_dir / 'results.json'}")
            continue
        sub = dataclasses.replace(cfg, split=s, out=str(sub_dir),
                                  resume=cfg.resume and (sub_dir / "last.pt").is_file())
        per_split[s] = train(sub, quiet=quiet)
    summary = summarize(per_split, classes)
    from trainer.data import split_rule
    summary["split_rule"] = split_rule(reader.root)
    summary["selected_on"] = "the TEST split (--select-on-test: optimistic)" if cfg.select_on_test else "validation"
    with distributed.agreement(), disk_full_as(f"the summary files in {run_dir}", KEPT):
        if distributed.rank() == 0:
            write_summary(run_dir, summary)
            from trainer.report import try_write_report
            try_write_report(run_dir)  # per-split plot and report.html
    return summary


def summarize(per_split: dict, classes: list[str], which: str = "best") -> dict:
    """Per-split rows and mean / std (sample std, ddof=1; 0 for one split) of the test metrics."""
    rows = []
    for s, res in per_split.items():
        r = res[f"test_{which}"]
        rows.append({"split": s, **{c: r[c] for c in COLUMNS},
                     **{f"acc_{name}": r["per_class_accuracy"][i] for i, name in enumerate(classes)}})
    keys = [k for k in rows[0] if k != "split"]
    mean, std = {"split": "mean"}, {"split": "std"}
    for k in keys:
        vals = np.array([np.nan if row[k] is None else row[k] for row in rows], dtype=float)
        mean[k] = float(np.nanmean(vals)) if (~np.isnan(vals)).any() else None
        std[k] = float(np.nanstd(vals, ddof=1)) if (~np.isnan(vals)).sum() > 1 else 0.0
    return {"classes": classes, "which": which, "rows": rows, "mean": mean, "std": std}


def summary_markdown(summary: dict) -> str:
    classes = summary["classes"]
    head = ["split", "accuracy", "mean class acc", "polarity acc", "macro-F1", *classes]
    keys = [*COLUMNS, *[f"acc_{c}" for c in classes]]
    pct = lambda v: "-" if v is None else f"{100 * v:.1f}"  # noqa: E731
    lines = [f"Test metrics (%) of the {summary['which']} model of each split "
             f"({len(summary['rows'])} splits, split rule {summary.get('split_rule', '-')}), "
             f"selected on {summary.get('selected_on', 'validation')}", "",
             "| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for row in summary["rows"]:
        lines.append(f"| {row['split']} | " + " | ".join(pct(row[k]) for k in keys) + " |")
    m, s = summary["mean"], summary["std"]
    lines.append("| **mean +- std** | " + " | ".join(
        "-" if m[k] is None else f"**{100 * m[k]:.1f} +- {100 * s[k]:.1f}**" for k in keys) + " |")
    return "\n".join(lines)


def write_summary(run_dir: Path, summary: dict) -> None:
    classes = summary["classes"]
    keys = ["split", *COLUMNS, *[f"acc_{c}" for c in classes]]
    with atomic.open(run_dir / "summary.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(keys)
        for row in [*summary["rows"], summary["mean"], summary["std"]]:
            w.writerow([row["split"]] + ["" if row[k] is None else f"{row[k]:.6f}" for k in keys[1:]])
    atomic.write_text(run_dir / "summary.md", summary_markdown(summary) + "\n")
