"""The one way vaanet writes a file: all of it or nothing, with the user's permissions.

    atomic.write_json(out / "index.json", record)          # text / JSON
    atomic.write_bytes(path, data)                          # bytes
    with atomic.target(path) as tmp: run_ffmpeg(out=tmp)    # a file another program writes
    with atomic.open(run_dir / "last.pt", "wb") as f:       # CSV, torch.save, any stream
        torch.save(state, f)

Every write goes to a temporary file in the target's folder (same file system, so the rename is
atomic), is flushed and fsync'ed, then renamed over the target: a reader, or the next run after
a crash, sees the old file or the new one, never half of one. On any error the temporary file is
removed and the old file stays as it was. `tempfile.mkstemp` creates its file with mode 0600; the
result gets 0666 minus the user's umask instead, as a plain `open(path, "w")` would give, so that
on a shared data folder the index is as readable as the shards.

Append-only logs (journal.jsonl, metrics.jsonl) are appended with `open(path, "a")`, which
creates them with the umask's permissions already; they are not rewritten through this module.
This module lives in pipeline/ (torch-free) because trainer/ and the command line depend on
pipeline/ already; model/ writes no files.
"""
from __future__ import annotations

import builtins
import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path


def current_umask() -> int:
    """The process's umask, read without changing it where Linux shows it (/proc), else by the
    classic set-and-restore."""
    try:
        with builtins.open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def file_mode() -> int:
    """The mode a newly created file gets: 0666 minus the umask."""
    return 0o666 & ~current_umask()


@contextlib.contextmanager
def open(path, mode: str = "w", newline: str | None = None, encoding: str | None = None):
    """A file object for `path` ("w" text or "wb" binary) that replaces `path` only when the
    block finishes without an exception; the folder is created when missing."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic.open writes whole files: mode 'w' or 'wb', not {mode!r}")
    with target(path) as tmp:
        with builtins.open(tmp, mode, newline=newline,
                           encoding=encoding if "b" not in mode else None) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
    fsync_dir(Path(path).parent)


@contextlib.contextmanager
def target(path):
    """A temporary path beside `path` (same suffix) for a program that writes the file itself
    (ffmpeg); renamed over `path` when the block finishes, removed when it fails."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, file_mode())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_text(path, text: str, *, only_if_changed: bool = False) -> bool:
    """Write `text` to `path`; with `only_if_changed`, an identical file is left untouched (a
    rerun on a finished output changes nothing). Returns whether the file was written."""
    path = Path(path)
    if only_if_changed and path.is_file() and path.read_text() == text:
        return False
    with open(path, "w") as f:
        f.write(text)
    return True


def write_json(path, obj, *, indent: int | None = 1, only_if_changed: bool = False) -> bool:
    """`obj` as JSON (one trailing newline) through `write_text`."""
    return write_text(path, json.dumps(obj, indent=indent) + "\n", only_if_changed=only_if_changed)


def write_bytes(path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)


def copy(src, dst) -> Path:
    """Make `dst` a copy of `src`, atomically: a hard link when the file system allows (no second
    write of a large file; it shares `src`'s contents and mode, and a later atomic write of `src`
    makes a new file, so the link keeps the old contents), else a full copy."""
    src, dst = Path(src), Path(dst)
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent)
    os.close(fd)
    try:
        os.unlink(tmp)
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)
            os.chmod(tmp, file_mode())
        os.replace(tmp, dst)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return dst


def fsync_dir(path) -> None:
    """Make a rename durable (POSIX); a no-op where directories cannot be opened."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
