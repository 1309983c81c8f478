"""Checkpoints: atomic writes, random-state round trips, safe loading, compatibility checks."""
import random

import numpy as np
import pytest
import torch

from trainer import checkpoint


def test_save_load_round_trip_and_no_temp_files(tmp_path):
    m = torch.nn.Linear(3, 2)
    path = checkpoint.save(tmp_path / "sub" / "last.pt", model=m.state_dict(), epoch=4,
                           classes=["a", "b"], best={"value": [0.5, -1.0], "epoch": 2})
    ckpt = checkpoint.load(path)
    assert ckpt["epoch"] == 4 and ckpt["classes"] == ["a", "b"] and ckpt["best"]["epoch"] == 2
    assert torch.equal(ckpt["model"]["weight"], m.weight.detach())
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.pt"]


def test_failed_save_keeps_the_previous_file(tmp_path):
    path = checkpoint.save(tmp_path / "last.pt", epoch=1)
    before = path.read_bytes()
    with pytest.raises(Exception):
        checkpoint.save(path, epoch=2, bad=lambda x: x)  # a lambda cannot be pickled
    assert path.read_bytes() == before
    assert checkpoint.load(path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temporary file left behind


def draws():
    return (random.random(), float(np.random.rand()), float(torch.rand(1)))


def test_rng_state_round_trip_through_a_file(tmp_path):
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    np.random.randn()  # leaves a cached gaussian in numpy's state
    checkpoint.save(tmp_path / "c.pt", rng=checkpoint.rng_state())
    expected = draws()
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    assert draws() != expected
    checkpoint.set_rng_state(checkpoint.load(tmp_path / "c.pt")["rng"])
    assert draws() == expected


def test_load_refuses_missing_foreign_and_unsafe_files(tmp_path):
    with pytest.raises(ValueError, match="checkpoint not found"):
        checkpoint.load(tmp_path / "nope.pt")
    torch.save({"state_dict": {}}, tmp_path / "foreign.pt")
    with pytest.raises(ValueError, match="not a vaanet training checkpoint"):
        checkpoint.load(tmp_path / "foreign.pt")
    (tmp_path / "text.pt").write_text("hello")
    with pytest.raises(ValueError, match="not a readable checkpoint"):
        checkpoint.load(tmp_path / "text.pt")
    # pickled code must never run: weights_only refuses the file
    torch.save({"format": checkpoint.FORMAT, "x": random.Random(0)}, tmp_path / "code.pt")
    with pytest.raises(ValueError, match="not a readable checkpoint"):
        checkpoint.load(tmp_path / "code.pt")


def test_check_compatible_names_the_difference():
    ckpt = {"classes": ["anger", "joy"], "model_config": {"num_classes": 2, "crop": 64}}
    checkpoint.check_compatible(ckpt, ["anger", "joy"], {"num_classes": 2, "crop": 64})
    with pytest.raises(ValueError, match=r"trained for 2 classes \(anger, joy\), the data has 3"):
        checkpoint.check_compatible(ckpt, ["a", "b", "c"])
    with pytest.raises(ValueError, match="trained on classes"):
        checkpoint.check_compatible(ckpt, ["joy", "anger"])
    with pytest.raises(ValueError, match="crop: 64 in the checkpoint, 112 now"):
        checkpoint.check_compatible(ckpt, ["anger", "joy"], {"num_classes": 2, "crop": 112})


def test_duplicate_survives_the_next_save_of_its_source(tmp_path):
    checkpoint.save(tmp_path / "last.pt", epoch=3)
    checkpoint.duplicate(tmp_path / "last.pt", tmp_path / "best.pt")
    checkpoint.save(tmp_path / "last.pt", epoch=4)  # replaces last.pt with a new file
    assert checkpoint.load(tmp_path / "best.pt")["epoch"] == 3
    assert checkpoint.load(tmp_path / "last.pt")["epoch"] == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt", "last.pt"]
