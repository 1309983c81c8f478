"""The error a stored sample that cannot be read ends a run with: one sentence naming the video,
its shard and the repair. Raised by the loader workers (trainer/loader.py) and by the training
process when it decodes the frames itself (trainer/device_decode.py).
"""
from __future__ import annotations

from trainer.errors import RunError


class SampleError(RunError):
    """A stored sample that cannot be read: names the video, the shard and the repair. A
    DataLoader worker's exception comes back as type(text with the worker's traceback): only
    the sentence after the last "SampleError: " is kept, so the user sees one line."""

    def __init__(self, message: str):
        marker = "SampleError: "
        super().__init__(message.rsplit(marker, 1)[1].strip() if marker in message else message)


def sample_error(reader, vid: str, e: Exception) -> SampleError:
    return unreadable_sample(sample_source(reader, vid), e)


def sample_source(reader, vid: str) -> tuple[str, str, str]:
    """(video id, its shard's path, the data folder): what a SampleError names."""
    rec = reader.records.get(vid) or {}
    return vid, str(reader.root / str(rec.get("shard"))), str(reader.root)


def unreadable_sample(source: tuple[str, str, str], e: Exception) -> SampleError:
    vid, shard, root = source
    return SampleError(
        f"cannot read video {vid!r} from {shard} ({type(e).__name__}: "
        f"{e}): the shard is missing or damaged; run `vaanet inspect --verify {root}` to list "
        "the damaged videos, then the same `vaanet preprocess` command again (it decodes the "
        "videos of a missing or unreadable shard and the damaged ones again)")
