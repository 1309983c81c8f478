"""Metrics against numbers worked out by hand."""
import math

import numpy as np
import pytest

from trainer import metrics

# 3 classes, class 0 negative, 1 and 2 positive
LABELS = [0, 0, 1, 1, 2, 2]
PREDS = [0, 1, 1, 2, 2, 2]
POLARITY = [0, 1, 1]


def test_confusion_matrix_by_hand():
    cm = metrics.confusion_matrix(LABELS, PREDS, 3)
    assert cm.tolist() == [[1, 1, 0], [0, 1, 1], [0, 0, 2]]


def test_report_by_hand():
    r = metrics.classification_report(LABELS, PREDS, POLARITY)
    assert r["n"] == 6
    assert r["accuracy"] == pytest.approx(4 / 6)
    assert r["per_class_accuracy"] == pytest.approx([0.5, 0.5, 1.0])
    assert r["mean_class_accuracy"] == pytest.approx(2 / 3)
    # polarity of labels 0 0 1 1 1 1, of predictions 0 1 1 1 1 1: one mismatch
    assert r["polarity_accuracy"] == pytest.approx(5 / 6)
    # F1 per class: 2/(2+0+1), 2/(2+1+1), 4/(4+1+0)
    assert r["macro_f1"] == pytest.approx((2 / 3 + 1 / 2 + 4 / 5) / 3)


def test_absent_class_is_left_out_of_means():
    # a fourth class with no videos and no predictions
    r = metrics.classification_report(LABELS, PREDS, POLARITY + [0])
    assert r["per_class_accuracy"][3] is None
    assert r["mean_class_accuracy"] == pytest.approx(2 / 3)
    assert r["macro_f1"] == pytest.approx((2 / 3 + 1 / 2 + 4 / 5) / 3)


def test_class_only_predicted_counts_as_zero_f1():
    # class 1 never occurs as a label but is predicted once: F1 = 0 for it
    r = metrics.classification_report([0, 0, 2], [0, 1, 2], [0, 1, 1])
    assert r["per_class_accuracy"][1] is None
    # F1: class 0 = 2/(2+0+1), class 1 = 0, class 2 = 1
    assert r["macro_f1"] == pytest.approx((2 / 3 + 0 + 1) / 3)


def test_perfect_and_empty():
    r = metrics.classification_report([1, 0], [1, 0], [0, 1])
    assert r["accuracy"] == 1.0 and r["macro_f1"] == 1.0 and r["polarity_accuracy"] == 1.0
    assert math.isnan(metrics.accuracy([], []))


def test_bad_inputs():
    with pytest.raises(ValueError, match="differ in length"):
        metrics.confusion_matrix([0, 1], [0], 2)
    with pytest.raises(ValueError, match="outside 0..1"):
        metrics.confusion_matrix([0, 2], [0, 1], 2)


def test_format_report_lists_every_class():
    r = metrics.classification_report(LABELS, PREDS, POLARITY)
    text = metrics.format_report(r, ["anger", "joy", "surprise"], title="test")
    assert "accuracy 66.7%" in text
    for name in ("anger", "joy", "surprise"):
        assert name in text
    assert np.array_equal(np.asarray(r["confusion"]).sum(), 6)
