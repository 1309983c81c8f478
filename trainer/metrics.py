"""Classification metrics for emotion recognition, in plain numpy.

Definitions (labels and predictions are class indices 0..C-1):
- confusion[i, j]: number of videos of true class i predicted as class j.
- accuracy: fraction of videos whose prediction equals the label (the paper's "accuracy").
- per-class accuracy: for each class, the fraction of its videos predicted correctly
  (its recall); NaN for a class with no videos in the set.
- mean class accuracy: mean of the per-class accuracies over the classes present.
- polarity accuracy: fraction of videos whose predicted class has the label's polarity
  (positive vs negative emotion), the distinction the PCCE loss emphasises.
- macro-F1: mean over classes of F1 = 2TP / (2TP + FP + FN); a class absent from both
  labels and predictions has no F1 and is left out of the mean (as sklearn does by default).
"""
from __future__ import annotations

import numpy as np


def _check(labels, preds, num_classes: int):
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    preds = np.asarray(preds, dtype=np.int64).reshape(-1)
    if labels.shape != preds.shape:
        raise ValueError(f"labels and predictions differ in length: {labels.size} vs {preds.size}")
    for name, a in (("label", labels), ("prediction", preds)):
        if a.size and (a.min() < 0 or a.max() >= num_classes):
            raise ValueError(f"{name} outside 0..{num_classes - 1}: found {a.min()}..{a.max()}")
    return labels, preds


def confusion_matrix(labels, preds, num_classes: int) -> np.ndarray:
    labels, preds = _check(labels, preds, num_classes)
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (labels, preds), 1)
    return cm


def accuracy(labels, preds) -> float:
    labels = np.asarray(labels).reshape(-1)
    preds = np.asarray(preds).reshape(-1)
    return float((labels == preds).mean()) if labels.size else float("nan")


def per_class_accuracy(cm: np.ndarray) -> np.ndarray:
    support = cm.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(support > 0, np.diag(cm) / np.maximum(support, 1), np.nan)


def polarity_accuracy(labels, preds, polarity) -> float:
    polarity = np.asarray(polarity, dtype=np.int64)
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    preds = np.asarray(preds, dtype=np.int64).reshape(-1)
    return float((polarity[labels] == polarity[preds]).mean()) if labels.size else float("nan")


def macro_f1(cm: np.ndarray) -> float:
    tp = np.diag(cm).astype(np.float64)
    fp = cm.sum(axis=0) - tp
    fn = cm.sum(axis=1) - tp
    denom = 2 * tp + fp + fn
    present = denom > 0
    if not present.any():
        return float("nan")
    return float((2 * tp[present] / denom[present]).mean())


def classification_report(labels, preds, polarity) -> dict:
    """Every metric above for one set of predictions, as plain Python values (JSON-ready)."""
    num_classes = len(polarity)
    labels, preds = _check(labels, preds, num_classes)
    cm = confusion_matrix(labels, preds, num_classes)
    pca = per_class_accuracy(cm)
    return {
        "n": int(labels.size),
        "accuracy": accuracy(labels, preds),
        "per_class_accuracy": [None if np.isnan(a) else float(a) for a in pca],
        "mean_class_accuracy": float(np.nanmean(pca)) if (~np.isnan(pca)).any() else float("nan"),
        "polarity_accuracy": polarity_accuracy(labels, preds, polarity),
        "macro_f1": macro_f1(cm),
        "confusion": cm.tolist(),
    }


def format_report(report: dict, classes: list[str], title: str = "") -> str:
    """A small text table: per-class accuracy, then the summary numbers and the confusion matrix."""
    width = max(8, max(len(c) for c in classes) + 1)
    lines = [title] if title else []
    lines.append("  ".join(f"{c:>{width}}" for c in ["class", "acc %", "videos"]))
    cm = np.asarray(report["confusion"])
    for c, name in enumerate(classes):
        a = report["per_class_accuracy"][c]
        lines.append(f"{name:>{width}}  {'-' if a is None else f'{100 * a:.1f}':>{width}}  "
                     f"{int(cm[c].sum()):>{width}}")
    lines.append(f"accuracy {100 * report['accuracy']:.1f}%  "
                 f"mean class acc {100 * report['mean_class_accuracy']:.1f}%  "
                 f"polarity acc {100 * report['polarity_accuracy']:.1f}%  "
                 f"macro-F1 {100 * report['macro_f1']:.1f}  (n = {report['n']})")
    lines.append("confusion (rows: true class, columns: predicted):")
    for c, name in enumerate(classes):
        lines.append(f"{name:>{width}}  " + " ".join(f"{v:4d}" for v in cm[c]))
    return "\n".join(lines)
