"""Training checkpoints: written atomically, loaded safely, checked against the run at hand.

A checkpoint is a dict of tensors and plain Python values only, so that it loads with
`torch.load(..., weights_only=True)` (no pickled code runs):
    format        "vaanet-checkpoint" and version, to recognise our files
    model         model state dict (no DistributedDataParallel "module." prefix)
    optimizer     optimizer state dict
    scaler        GradScaler state dict (fp16 mixed precision) or None
    epoch         number of epochs completed
    rng           python, numpy, torch and CUDA random states
    model_config  ModelConfig as a dict (rebuilds the network)
    run_config    the resolved training configuration
    classes       class names in label order, polarity the matching 0/1 list
    best          {"metric": name, "value": float, "epoch": int} of the best model so far
    data_params   the preprocessing parameters of the training data (pipeline/params.py), so
                  that `vaanet predict` decodes new videos the same way (absent in older runs)

Test hook: the environment variable VAANET_TEST_FAIL_SAVE=N makes this process's N-th `save`
fail as on a full disk (part of the file written, then OSError ENOSPC); N:bug makes it raise a
plain RuntimeError instead (any other failure). Tests use it where they cannot monkeypatch: in
the processes that torchrun starts.
"""
from __future__ import annotations

import errno
import os
import random
from pathlib import Path

import numpy as np
import torch

from pipeline import atomic
from trainer.errors import RunError

FORMAT = "vaanet-checkpoint"
VERSION = 1
FAIL_HOOK = "VAANET_TEST_FAIL_SAVE"
_saves = 0  # saves by this process, for FAIL_HOOK


def rng_state() -> dict:
    """Every random state the training loop touches, as tensors and plain values."""
    version, mt, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": {"version": version, "state": list(mt), "gauss": gauss},
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    return state


def set_rng_state(state: dict) -> None:
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached"]))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def save(path, **state) -> Path:
    """Write the checkpoint to a temporary file in the same folder, then rename it over `path`:
    a crash mid-write leaves the previous checkpoint intact."""
    global _saves
    path = Path(path)
    _saves += 1
    with atomic.open(path, "wb") as f:
        if os.environ.get(FAIL_HOOK):
            _test_failure(f, os.environ[FAIL_HOOK])
        torch.save({"format": FORMAT, "version": VERSION, **state}, f)
    return path


def _test_failure(f, hook: str) -> None:
    """FAIL_HOOK: "N" fails the N-th save as a full disk does, "N:bug" with a RuntimeError."""
    at, _, kind = hook.partition(":")
    if _saves == int(at):
        f.write(b"partial")
        if kind == "bug":
            raise RuntimeError(f"test failure of checkpoint save {_saves} ({FAIL_HOOK}={hook})")
        raise OSError(errno.ENOSPC, "No space left on device")


def duplicate(src, dst) -> Path:
    """Make `dst` a copy of checkpoint `src`, atomically: a hard link when the file system allows
    (no second write of hundreds of MB; `save` replaces `src` by a new file later, so the link
    keeps the old contents), else a full copy."""
    return atomic.copy(src, dst)


def load(path, map_location="cpu") -> dict:
    """Load one of our checkpoints; a missing, corrupt or foreign file gets a clear RunError
    (a usage error: the file is the user's)."""
    path = Path(path)
    if not path.is_file():
        raise RunError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # truncated file, not a torch file, pickled code
        raise RunError(f"{path} is not a readable checkpoint ({type(e).__name__}: "
                         f"{str(e).splitlines()[0] if str(e) else ''})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise RunError(f"{path} is not a vaanet training checkpoint (expected a dict with "
                         f"format={FORMAT!r}; an official VAANet file is imported with "
                         "`vaanet import-checkpoint`)")
    return ckpt


def check_compatible(ckpt: dict, classes: list[str], model_config: dict | None = None,
                     what: str = "checkpoint") -> None:
    """Raise RunError when `ckpt` cannot serve data with `classes` or a run built with
    `model_config` (resume: every field must agree)."""
    have = list(ckpt["classes"])
    if len(have) != len(classes):
        raise RunError(f"incompatible {what}: trained for {len(have)} classes ({', '.join(have)}), "
                         f"the data has {len(classes)} ({', '.join(classes)})")
    if have != list(classes):
        raise RunError(f"incompatible {what}: trained on classes {have}, the data has {list(classes)}")
    if model_config is not None:
        diff = {k: (ckpt["model_config"].get(k), v) for k, v in model_config.items()
                if ckpt["model_config"].get(k) != v}
        if diff:
            shown = ", ".join(f"{k}: {a!r} in the {what}, {b!r} now" for k, (a, b) in diff.items())
            raise RunError(f"incompatible {what}: model configuration differs ({shown})")


# the preprocessing parameters that set what the model sees: segments, frames per snippet,
# frame size (the crop is taken from the short side), and the MFCC's geometry
GEOMETRY = ("segments", "frames", "short_side", "max_long_side", "n_mfcc", "sample_rate", "n_filt",
            "nfft", "winlen", "winstep", "mfcc")


def check_geometry(ckpt: dict, params, data) -> None:
    """Raise RunError when the shards in `data` (PreprocessParams `params`) were made at another
    input geometry than the data the checkpoint was trained on (its `data_params`): the loader
    would otherwise subsample or crop them into numbers the model never saw, without a word."""
    trained = ckpt.get("data_params")
    if not trained:  # an older or imported checkpoint: the loader checks what it can
        return
    have = params.to_dict()
    diffs = [f"{k}: trained on {trained[k]!r}, the data has {have.get(k)!r}"
             for k in GEOMETRY if k in trained and trained[k] != have.get(k)]
    if diffs:
        raise RunError(f"the checkpoint was trained on data of another input geometry than {data} "
                       f"({'; '.join(diffs)}): evaluate it on shards preprocessed as its training "
                       "data (vaanet preprocess with those values, or the preset it was trained with)")


def locate(ckpt_file=None, run=None, which: str = "best") -> Path:
    """The checkpoint a command is given: a file (--checkpoint) or RUN_DIR/<which>.pt (--run),
    exactly one of them; a run folder that holds no such file is a usage error."""
    if (ckpt_file is None) == (run is None):
        raise RunError("give either a checkpoint file (--checkpoint) or a run folder (--run)")
    if run is None:
        return Path(ckpt_file)
    run = Path(run)
    if not run.is_dir():
        raise RunError(f"run folder not found: {run}")
    path = run / f"{which}.pt"
    if not path.is_file():
        raise RunError(f"{run} holds no {which}.pt: not a finished `vaanet train` run folder "
                       "(pass --checkpoint FILE for another file)")
    return path
