"""Which part of a stored video one training or evaluation sample uses.

Pure index arithmetic over numpy arrays, shared by the streaming loader and its tests:
  - segments: evenly spaced when the model wants a different count than the shards hold,
  - snippets: which of the S stored start positions of each segment (the middle one in eval; in
              train drawn anew every epoch, per segment, see `snippet_choice`),
  - frames:   a window of k frames inside each stored snippet (centred in eval, random in train),
  - crop:     a square at a random (train) or central (eval) position,
  - audio:    MFCC windows: the paper's centre crop of the whole soundtrack split into equal
              segments, the official code's cut from the start, or this project's windows
              aligned with the visual segments.
Every random choice takes an explicit numpy Generator; `rng=None` means the deterministic
evaluation choice.
"""
from __future__ import annotations

import numpy as np

AUDIO_MODES = ("paper", "aligned", "official")


def segment_indices(stored: int, wanted: int) -> np.ndarray:
    """Indices of `wanted` segments spread evenly over `stored` ones (the centre of each of
    `wanted` equal parts). Equal counts give 0..stored-1; more wanted than stored repeats some."""
    if stored <= 0 or wanted <= 0:
        raise ValueError(f"segment counts must be positive, got stored={stored} wanted={wanted}")
    if stored == wanted:
        return np.arange(stored)
    return np.floor((np.arange(wanted) + 0.5) * stored / wanted).astype(np.int64)


def snippet_index(stored: int, rng: np.random.Generator | None) -> int:
    """Snippet to read: random in train; the middle one (S // 2, i.e. 0 for S = 1) in eval."""
    if rng is None:
        return stored // 2
    return int(rng.integers(stored))


def snippet_choice(stored: int, segments: int, seed: int | None, epoch: int = 0,
                   index: int = 0) -> np.ndarray:
    """The stored snippet (start position) each of `segments` segments reads, int64 [segments].

    Eval (seed None): the middle one, S // 2, for every segment. Train: the paper's random
    snippet per segment, drawn anew every epoch, a pure function of (seed, epoch, index). Draws
    are without replacement inside each block of S epochs: every segment visits its S positions
    in its own random order in epochs 0..S-1, in a new order in S..2S-1, and so on, so that
    S epochs already see every stored position once (independent draws would miss about a
    third of them)."""
    if stored <= 0:
        raise ValueError(f"stored snippet count must be positive, got {stored}")
    if seed is None:
        return np.full(segments, stored // 2, dtype=np.int64)
    block, step = divmod(int(epoch), stored)
    rng = np.random.default_rng([int(seed), block, int(index), 1])
    order = rng.permuted(np.tile(np.arange(stored), (segments, 1)), axis=1)
    return order[:, step].astype(np.int64)


def frame_starts(stored: int, wanted: int, segments: int, rng: np.random.Generator | None) -> np.ndarray:
    """First frame of a `wanted`-frame window inside each of `segments` stored `stored`-frame
    snippets: centred in eval, drawn independently per segment in train."""
    if wanted > stored:
        raise ValueError(f"the model wants {wanted} frames per segment but the shards hold "
                         f"{stored}; preprocess again with --frames {wanted} or more")
    if rng is None or wanted == stored:
        return np.full(segments, (stored - wanted) // 2, dtype=np.int64)
    return rng.integers(0, stored - wanted + 1, size=segments)


# where a centred crop starts when the margin is odd: "floor" (this project: (w - c) // 2) or
# "round" (the authors' CenterCrop: int(round((w - c) / 2)), Python 3's round half to even, so
# one pixel further right on 16:9 frames, 199 - 112 = 87: 44 instead of 43)
CENTRE_RULES = ("floor", "round")


def crop_origin(height: int, width: int, crop: int, rng: np.random.Generator | None,
                centre: str = "floor") -> tuple[int, int]:
    """Top-left corner (y, x) of a crop x crop square: centred in eval (`centre`: the rule for odd
    margins, CENTRE_RULES), uniform in train."""
    if crop > height or crop > width:
        raise ValueError(f"crop {crop} does not fit in stored frames of {height}x{width}; "
                         f"preprocess with --short-side {crop} or more, or use a smaller crop")
    if rng is None:
        if centre == "round":
            return int(round((height - crop) / 2)), int(round((width - crop) / 2))
        if centre != "floor":
            raise ValueError(f"centre must be one of {CENTRE_RULES}, got {centre!r}")
        return (height - crop) // 2, (width - crop) // 2
    return int(rng.integers(0, height - crop + 1)), int(rng.integers(0, width - crop + 1))


def tile_to(seq: np.ndarray, length: int) -> np.ndarray:
    """Repeat `seq` [T, n] along time until it has `length` frames, then cut (T > 0)."""
    reps = -(-length // len(seq))
    return np.concatenate([seq] * reps, axis=0)[:length] if reps > 1 else seq[:length]


def audio_official(mfcc: np.ndarray, segments: int, length: int) -> np.ndarray:
    """The official code's audio input: the whole MFCC sequence tiled (if short) or cut (if long)
    to segments * length frames, then split into `segments` consecutive chunks -> [segments, length, n]."""
    n = mfcc.shape[1]
    if len(mfcc) == 0:
        return np.zeros((segments, length, n), np.float32)
    return tile_to(mfcc, segments * length).reshape(segments, length, n).astype(np.float32, copy=False)


def audio_paper(mfcc: np.ndarray, segments: int, length: int) -> np.ndarray:
    """The paper's audio input ("Audio Representation Extraction"): the MFCC of the whole
    soundtrack centre-cropped to q = segments * length frames (tiled from its start when
    shorter), split into `segments` equal consecutive parts -> [segments, length, n]."""
    n, q = mfcc.shape[1], segments * length
    if len(mfcc) == 0:
        return np.zeros((segments, length, n), np.float32)
    if len(mfcc) >= q:
        first = (len(mfcc) - q) // 2
        crop = mfcc[first:first + q]
    else:
        crop = tile_to(mfcc, q)
    return crop.reshape(segments, length, n).astype(np.float32, copy=False)


def audio_aligned(mfcc: np.ndarray, segments: np.ndarray, stored_segments: int, duration: float,
                  length: int, frame_rate: float) -> np.ndarray:
    """Audio windows aligned with visual segments -> [len(segments), length, n] (this project's
    mode, not the paper's: each visual segment gets the sound around its middle).

    Stored segment s covers [s, s + 1) * duration / stored_segments seconds; its window is the
    `length` MFCC frames centred on the middle of that span, shifted to stay inside the sequence.
    A sequence shorter than `length` is tiled from its start (the same window for every segment).
    """
    n = mfcc.shape[1]
    total = len(mfcc)
    out = np.zeros((len(segments), length, n), np.float32)
    if total == 0:
        return out
    if total < length:
        out[:] = tile_to(mfcc, length)
        return out
    span = duration / stored_segments
    for i, s in enumerate(segments):
        centre = (s + 0.5) * span * frame_rate
        start = int(round(centre - length / 2))
        start = min(max(start, 0), total - length)
        out[i] = mfcc[start:start + length]
    return out
