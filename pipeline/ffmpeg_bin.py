"""Which ffmpeg binary we run, and how a command is run (with a time limit and clear errors).

The ffmpeg on PATH wins; otherwise the static binary shipped inside the imageio-ffmpeg wheel.
No ffprobe is needed anywhere (that wheel does not ship one).
"""
from __future__ import annotations

import functools
import os
import shutil
import subprocess

import ffmpeg

from pipeline.errors import VideoError, tail

# a healthy video decodes in seconds; a hung ffmpeg (broken pipe, network mount) must not block a run
DEFAULT_TIMEOUT = float(os.environ.get("VAANET_FFMPEG_TIMEOUT", 600))


@functools.lru_cache(maxsize=1)
def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary: `ffmpeg` on PATH, else imageio-ffmpeg's bundled one."""
    found = shutil.which("ffmpeg")
    if found:
        return found
    try:
        import imageio_ffmpeg
    except ImportError as e:
        raise RuntimeError("no ffmpeg on PATH and imageio-ffmpeg is not installed: "
                           "`pip install imageio-ffmpeg` or install ffmpeg") from e
    return imageio_ffmpeg.get_ffmpeg_exe()


def run(stream, *, reason: str = "decode failed", path: str | None = None,
        input: bytes | None = None, timeout: float | None = DEFAULT_TIMEOUT) -> tuple[bytes, str]:
    """Run an ffmpeg-python graph; return (stdout bytes, stderr text).

    A non-zero exit or a timeout becomes a VideoError(reason, last lines of the log).
    """
    stream = stream.global_args("-hide_banner", "-nostats", *(() if input is not None else ("-nostdin",)))
    proc = ffmpeg.run_async(stream, cmd=ffmpeg_exe(), pipe_stdin=input is not None,
                            pipe_stdout=True, pipe_stderr=True, overwrite_output=True)
    try:
        out, err = proc.communicate(input=input, timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise VideoError(f"ffmpeg timed out after {timeout:.0f} s", tail(err), path) from None
    log = err.decode("utf-8", errors="replace")
    if proc.returncode != 0:
        raise VideoError(reason, tail(log), path)
    if "partial file" in log:
        # the demuxer's index points past the end of the file: ffmpeg goes on (exit 0) with
        # whatever is there, but a cut-off download must be reported, not silently shortened
        raise VideoError("truncated file (data ends before the container index)", tail(log), path)
    return out, log


def run_args(args: list[str], timeout: float | None = DEFAULT_TIMEOUT) -> tuple[int, str]:
    """Run ffmpeg with plain arguments (for `ffmpeg -i FILE`, which has no output to build a graph
    for); return (exit code, stderr text)."""
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", *args]
    try:
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        raise VideoError(f"ffmpeg timed out after {timeout:.0f} s", tail(e.stderr or b"")) from None
    return proc.returncode, proc.stderr.decode("utf-8", errors="replace")


def stream_chunks(stream, *, chunk_bytes: int, reason: str = "decode failed",
                  path: str | None = None, timeout: float | None = DEFAULT_TIMEOUT):
    """Run an ffmpeg-python graph and yield its stdout in pieces of `chunk_bytes` (the last may
    be shorter), so a long output never sits in memory whole; errors as `run` raises them, once
    the output has ended. Closing the generator early kills ffmpeg."""
    import threading
    stream = stream.global_args("-hide_banner", "-nostats", "-nostdin")
    proc = ffmpeg.run_async(stream, cmd=ffmpeg_exe(), pipe_stdout=True, pipe_stderr=True,
                            overwrite_output=True)
    err: list[bytes] = []
    # stderr drained beside stdout: a chatty log must not fill its pipe and stall ffmpeg
    reader = threading.Thread(target=lambda: err.append(proc.stderr.read()), daemon=True)
    reader.start()
    killed: list[bool] = []
    timer = threading.Timer(timeout, lambda: (killed.append(True), proc.kill())) if timeout else None
    if timer:
        timer.start()
    try:
        while True:
            piece = proc.stdout.read(chunk_bytes)
            if not piece:
                break
            yield piece
        proc.wait()
    finally:
        if timer:
            timer.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        reader.join()
    log = b"".join(err).decode("utf-8", errors="replace")
    if killed:
        raise VideoError(f"ffmpeg timed out after {timeout:.0f} s", tail(log), path)
    if proc.returncode != 0:
        raise VideoError(reason, tail(log), path)
    if "partial file" in log:
        raise VideoError("truncated file (data ends before the container index)", tail(log), path)
