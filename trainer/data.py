"""Opening a preprocessed dataset for training and evaluation: the shard reader, the split and its
parts, the seeded validation carve-out. Every check here is of user input and raises RunError
(a usage error) with what to do."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from trainer.errors import RunError


ALLOW_INCOMPLETE_ENV = "VAANET_ALLOW_INCOMPLETE"   # set by the CLI's --allow-incomplete


def open_data(path, allow_incomplete: bool | None = None):
    """A ShardReader over a `vaanet preprocess` output folder, or a RunError saying what is wrong.

    An output whose preprocess run did not finish (index.json's "run" record) is refused unless
    `allow_incomplete` (default: the environment variable VAANET_ALLOW_INCOMPLETE=1, which
    `--allow-incomplete` sets, so torchrun's processes see it too)."""
    import logging
    import os
    from pipeline.reader import ShardReader
    if allow_incomplete is None:
        allow_incomplete = os.environ.get(ALLOW_INCOMPLETE_ENV, "") not in ("", "0")
    path = Path(path)
    if not path.is_dir():
        raise RunError(f"data folder not found: {path} (make one with `vaanet preprocess`)")
    if not (path / "index.json").is_file():
        raise RunError(f"{path} is not a preprocessed dataset folder: no index.json "
                         "(expected the output of `vaanet preprocess --out DIR`)")
    from pipeline.format import DamagedFile
    try:
        reader = ShardReader(path)
    except DamagedFile as e:
        raise RunError(str(e)) from None
    except (OSError, KeyError, ValueError) as e:
        raise RunError(f"cannot read the shards in {path}: {e}") from None
    if not reader.ids:
        raise RunError(f"{path} holds no successfully preprocessed videos (see failures.jsonl)")
    shards = sorted({reader.meta(i)["shard"] for i in reader.ids})
    missing = [s for s in shards if not (path / s).is_file()]
    if missing:
        raise RunError(f"{path}: {len(missing)} of {len(shards)} shard files listed in index.json are "
                         f"missing ({', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''}); "
                         "run `vaanet preprocess` again with the same --out to complete them")
    damaged = reader.damaged_entries()
    if damaged:
        shard, vid, why = damaged[0]
        more = f" (and {len(damaged) - 1} more videos)" if len(damaged) > 1 else ""
        raise RunError(f"{path / shard}: the entry of video {vid!r} is damaged ({why}){more}; "
                       "run the same `vaanet preprocess` command again, which decodes the "
                       "damaged videos again")
    state = reader.run_state
    if state is not None and not state.get("complete", True):
        n_missing = max(0, int(state.get("expected", 0)) - len(reader.records))
        msg = (f"{path}: its `vaanet preprocess` run did not finish ({n_missing} of "
               f"{state.get('expected')} videos missing); rerun the same `vaanet preprocess` "
               "command to complete it")
        if not allow_incomplete:
            raise RunError(msg + ", or pass --allow-incomplete to use the videos there")
        logging.getLogger(__name__).warning("%s; using it as it is (--allow-incomplete)", msg)
    return reader


def check_split(reader, split: str | None) -> str:
    """The split name to use: `split`, or the data's first one; unknown -> RunError listing them."""
    available = list(reader.splits)
    if split is None:
        if not available:
            raise RunError("the data defines no train/test split (splits.json is empty)")
        return available[0]
    if str(split) not in available:
        raise RunError(f"split {split!r} is not in the data; available splits: "
                         f"{', '.join(available)}")
    return str(split)


def split_ids(reader, split: str, part: str) -> list[str]:
    ids = list(reader.split_ids(split, part))
    if not ids:
        raise RunError(f"split {split!r} has no {part} videos")
    return ids


def carve_validation(reader, ids: list[str], fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """Split training ids into (train, val): a seeded `fraction` of every class (at least one
    video of a class that has two or more), so the validation set has every class."""
    if fraction <= 0:
        return list(ids), []
    rng = np.random.default_rng([seed, 7])
    by_class: dict[int, list[str]] = {}
    for vid in ids:
        by_class.setdefault(int(reader.meta(vid)["label"]), []).append(vid)
    val = set()
    for label in sorted(by_class):
        members = by_class[label]
        n = min(len(members) - 1, max(1, round(fraction * len(members))))
        val.update(members[i] for i in rng.permutation(len(members))[:n])
    return [v for v in ids if v not in val], [v for v in ids if v in val]


def split_rule(data_dir) -> str:
    """How the data's splits were made, from its splits.json: 'alternating', 'random' (with the
    split count), 'file' (--split-file), or '-' when unknown."""
    try:
        d = json.loads((Path(data_dir) / "splits.json").read_text())
    except (OSError, ValueError):
        return "-"
    kind = d.get("kind", "-")
    return f"random 2/3 x {len(d['splits'])}" if kind == "random" else kind
