"""Cross-entropy and PCCE against a hand computation."""
import math

import pytest
import torch

from model.losses import build_loss
from pipeline.datasets import load_definition


def hand_ce(row, label):
    return -row[label] + math.log(sum(math.exp(v) for v in row))


def test_pcce_matches_hand_computation():
    # classes: 0 neg, 1 pos, 2 neg, 3 pos
    polarity = [0, 1, 0, 1]
    logits = [[2.0, 0.5, -1.0, 0.0],    # predicts 0 (neg), label 1 (pos): flipped -> x1.5
              [0.1, 0.2, 1.5, -0.3],    # predicts 2 (neg), label 0 (neg): same polarity
              [-0.5, 0.3, 0.2, 0.9],    # predicts 3 (pos), label 3: correct
              [0.0, 1.0, 0.5, 0.2]]     # predicts 1 (pos), label 2 (neg): flipped
    labels = [1, 0, 3, 2]
    factors = [1.5, 1.0, 1.0, 1.5]
    expected = sum(f * hand_ce(r, y) for f, r, y in zip(factors, logits, labels)) / 4
    loss = build_loss("pcce", polarity, lam=0.5)(torch.tensor(logits), torch.tensor(labels))
    assert loss.item() == pytest.approx(expected, rel=1e-6)

    # lambda scales only the flipped samples
    loss2 = build_loss("pcce", polarity, lam=2.0)(torch.tensor(logits), torch.tensor(labels))
    expected2 = sum((3.0 if f > 1 else 1.0) * hand_ce(r, y)
                    for f, r, y in zip(factors, logits, labels)) / 4
    assert loss2.item() == pytest.approx(expected2, rel=1e-6)

    ce = build_loss("ce")(torch.tensor(logits), torch.tensor(labels))
    assert ce.item() == pytest.approx(sum(hand_ce(r, y) for r, y in zip(logits, labels)) / 4,
                                      rel=1e-6)


def test_pcce_with_dataset_polarity_and_gradients():
    ve8 = load_definition("ve8")      # Anger, Anticipation, Disgust, Fear, Joy, Sadness, ...
    assert ve8.polarity == [0, 1, 0, 0, 1, 0, 1, 1]
    loss_fn = build_loss("pcce", ve8.polarity)
    logits = torch.zeros(2, 8)
    logits[0, 4] = 3.0                # predicts Joy (pos)
    logits[1, 2] = 3.0                # predicts Disgust (neg)
    logits.requires_grad_(True)
    labels = torch.tensor([0, 3])     # Anger (neg): flipped; Fear (neg): same polarity
    loss = loss_fn(logits, labels)
    ce = torch.nn.functional.cross_entropy(logits, labels, reduction="none")
    assert loss.item() == pytest.approx(((1.5 * ce[0] + ce[1]) / 2).item(), rel=1e-6)
    loss.backward()
    assert logits.grad.abs().sum() > 0


def test_loss_errors():
    with pytest.raises(ValueError, match="'ce' or 'pcce'"):
        build_loss("focal", [0, 1])
    with pytest.raises(ValueError, match="polarity"):
        build_loss("pcce", None)
    with pytest.raises(ValueError, match="0 \\(negative\\) / 1"):
        build_loss("pcce", [0, 2, 1])
    with pytest.raises(ValueError, match="4 classes but the polarity map has 3"):
        build_loss("pcce", [0, 1, 1])(torch.zeros(2, 4), torch.tensor([0, 1]))
