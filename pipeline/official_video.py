"""Snippet frames as the authors' data had them, for the `official` preprocessing profile.

Their code first wrote every frame as a JPEG at height 240 (`ffmpeg -i VIDEO -vf scale=-1:240
%06d.jpg`: ffmpeg's default scaler and its default MJPEG encoder settings) and read those
files. Here the same ffmpeg command writes the JPEG sequence into a pipe instead of files (the
same encoder, options and frame order, so the same images); a second ffmpeg decodes it, keeps
the snippets' frames and scales them as every other profile does (pipeline/video.py), and
each kept frame is copied into the result as it arrives (memory: the snippets' frames only).

Frame positions: the JPEG sequence is the stream at its nominal frame rate (ffmpeg's default
for image sequences); its length is taken from the packet list (or the header's frame count),
which is the same for a constant frame rate. A sequence that ends early repeats its last frame.
"""
from __future__ import annotations

import subprocess
import tempfile
import threading
from types import SimpleNamespace

import numpy as np

from pipeline import ffmpeg_bin
from pipeline.errors import VideoError, tail
from pipeline.params import PreprocessParams
from pipeline.probe import Probe, frame_table
from pipeline.video import _scale_crop, output_size, plan_snippets

JPEG_HEIGHT = 240


def _frame_count(probe: Probe) -> int:
    table = frame_table(probe)
    if table is not None and len(table.times):
        return len(table.times)
    if probe.n_frames:
        return int(probe.n_frames)
    return int(round((probe.duration or 0) * probe.fps))


def decode_snippets_via_jpeg(probe: Probe, params: PreprocessParams
                             ) -> tuple[np.ndarray, np.ndarray, int, list[str]]:
    """As video.decode_snippets: (frames uint8 [S, t, k, H, W, 3], first-frame times [S, t] in
    seconds, number of frames, notes), every frame having been a JPEG at height 240 first."""
    k = params.frames
    notes: list[str] = []
    n = _frame_count(probe)
    if n <= 0:
        raise VideoError("decode failed (no frame count)", "", probe.path)
    starts = plan_snippets(n, params)
    idx = (starts[..., None] + np.arange(k)) % n        # a video shorter than k frames loops
    if n < k:
        notes.append(f"short video ({n} frames < {k}): snippet frames loop")
    wanted = np.unique(idx)
    runs = np.split(wanted, np.flatnonzero(np.diff(wanted) > 1) + 1)
    select = "+".join(f"between(n,{r[0]},{r[-1]})" for r in runs)
    p240 = _at_240(probe)
    exe = ffmpeg_bin.ffmpeg_exe()
    # the authors' command, but to a pipe: no encoder option, so ffmpeg's default quality
    to_jpeg = [exe, "-hide_banner", "-nostdin", "-loglevel", "error", "-i", probe.path,
               "-map", f"0:v:{probe.video_stream}", "-vf", f"scale=-1:{JPEG_HEIGHT}",
               "-c:v", "mjpeg", "-f", "image2pipe", "pipe:1"]
    from_jpeg = [exe, "-hide_banner", "-nostdin", "-loglevel", "error", "-f", "mjpeg",
                 "-threads", "1", "-i", "pipe:0", "-vf", f"select='{select}',"
                 + _scale_crop(p240, params), "-fps_mode", "passthrough",
                 "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"]
    _, _, ow, oh = output_size(p240.width, p240.height, params)
    # each wanted frame goes straight to its place(s) in the result as it arrives: no copy of
    # the decoded frames besides the result (a long video's 1536 frames are ~60 MB at 112 px)
    slot = np.searchsorted(wanted, idx).ravel()
    order = np.argsort(slot, kind="stable")
    first = np.searchsorted(slot[order], np.arange(len(wanted) + 1))
    out = np.empty((len(slot), oh, ow, 3), np.uint8)
    got = _decode_into(to_jpeg, from_jpeg, out, order, first, probe.path)
    if got == 0:
        raise VideoError("decode failed (no frames decoded)", "", probe.path)
    if got < len(wanted):
        notes.append(f"JPEG sequence ended after {got} of {len(wanted)} wanted frames: "
                     "last frame repeated")
        out[slot >= got] = out[order[first[got - 1]]]
    return out.reshape(idx.shape + out.shape[1:]), starts / probe.fps, n, notes


def _decode_into(to_jpeg: list[str], from_jpeg: list[str], out: np.ndarray, order: np.ndarray,
                 first: np.ndarray, path: str) -> int:
    """Run to_jpeg | from_jpeg, the frames into `out` (as _read_into); how many arrived."""
    with tempfile.TemporaryFile() as err1, tempfile.TemporaryFile() as err2:
        p1 = subprocess.Popen(to_jpeg, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err1)
        p2 = subprocess.Popen(from_jpeg, stdin=p1.stdout, stdout=subprocess.PIPE, stderr=err2)
        p1.stdout.close()   # p2 holds the pipe now; p1 gets SIGPIPE if p2 dies
        killed: list[bool] = []
        timer = threading.Timer(ffmpeg_bin.DEFAULT_TIMEOUT,
                                lambda: (killed.append(True), p1.kill(), p2.kill()))
        timer.start()
        try:
            got = _read_into(p2.stdout, out, order, first)
            while p2.stdout.read(1 << 20):   # frames beyond the wanted ones: not kept
                pass
            p2.wait(), p1.wait()
        finally:
            timer.cancel()
            if p2.poll() is None or p1.poll() is None:
                p1.kill(), p2.kill(), p1.wait(), p2.wait()
            p2.stdout.close()
        if killed:
            raise VideoError(f"ffmpeg timed out after {ffmpeg_bin.DEFAULT_TIMEOUT:.0f} s", "", path)
        if p1.returncode or p2.returncode:
            err1.seek(0), err2.seek(0)
            raise VideoError("decode failed", tail(err1.read() + err2.read()), path)
    return got


def _read_into(pipe, out: np.ndarray, order: np.ndarray, first: np.ndarray) -> int:
    """Read whole frames from `pipe`; frame j goes to out[order[first[j]:first[j + 1]]].
    Returns how many frames arrived (an incomplete last one is not counted)."""
    frame = np.empty(out.shape[1:], np.uint8)
    view = memoryview(frame).cast("B")
    for j in range(len(first) - 1):
        filled = 0
        while filled < len(view):
            k = pipe.readinto(view[filled:])
            if not k:
                return j
            filled += k
        out[order[first[j]:first[j + 1]]] = frame
    return len(first) - 1


def _at_240(probe: Probe) -> SimpleNamespace:
    """The JPEGs' size (scale=-1:240 on the autorotated frames: height 240, the width in
    proportion to the stored pixels, pixel aspect not applied: the authors' JPEGs have square
    pixels), for the scale to the short side."""
    w, h = probe.coded_width, probe.coded_height
    if probe.rotation in (90, 270):
        w, h = h, w
    return SimpleNamespace(width=int(round(w * JPEG_HEIGHT / h)), height=JPEG_HEIGHT)
