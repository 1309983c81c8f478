"""Snippet frames as the authors' data had them, for the `official` preprocessing profile.

Their code first wrote every frame as a JPEG at height 240 (`ffmpeg -i VIDEO -vf scale=-1:240
%06d.jpg`: ffmpeg's default scaler and its default MJPEG encoder settings) and read those
files. Here the same ffmpeg command writes the JPEG sequence into a pipe instead of files (the
same encoder, options and frame order, so the same images); a second ffmpeg decodes it, keeps
the snippets' frames and scales them as every other profile does (pipeline/video.py).

Frame positions: the JPEG sequence is the stream at its nominal frame rate (ffmpeg's default
for image sequences); its length is taken from the packet list (or the header's frame count),
which is the same for a constant frame rate. A sequence that ends early repeats its last frame.
"""
from __future__ import annotations

import subprocess
import tempfile
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
    with tempfile.TemporaryFile() as err1, tempfile.TemporaryFile() as err2:
        p1 = subprocess.Popen(to_jpeg, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err1)
        p2 = subprocess.Popen(from_jpeg, stdin=p1.stdout, stdout=subprocess.PIPE, stderr=err2)
        p1.stdout.close()   # p2 holds the pipe now; p1 gets SIGPIPE if p2 dies
        try:
            raw, _ = p2.communicate(timeout=ffmpeg_bin.DEFAULT_TIMEOUT)
            p1.wait(timeout=ffmpeg_bin.DEFAULT_TIMEOUT)
        except subprocess.TimeoutExpired:
            p1.kill(), p2.kill(), p1.wait(), p2.wait()
            raise VideoError(f"ffmpeg timed out after {ffmpeg_bin.DEFAULT_TIMEOUT:.0f} s", "",
                             probe.path) from None
        if p1.returncode or p2.returncode:
            err1.seek(0), err2.seek(0)
            raise VideoError("decode failed", tail(err1.read() + err2.read()), probe.path)
    _, _, ow, oh = output_size(p240.width, p240.height, params)
    got = np.frombuffer(raw, np.uint8, count=len(raw) // (oh * ow * 3) * oh * ow * 3)
    got = got.reshape(-1, oh, ow, 3)
    if len(got) == 0:
        raise VideoError("decode failed (no frames decoded)", "", probe.path)
    if len(got) < len(wanted):
        notes.append(f"JPEG sequence ended after {len(got)} of {len(wanted)} wanted frames: "
                     "last frame repeated")
    pick = np.minimum(np.searchsorted(wanted, idx), len(got) - 1)
    return got[pick], starts / probe.fps, n, notes


def _at_240(probe: Probe) -> SimpleNamespace:
    """The JPEGs' size (scale=-1:240 on the autorotated frames: height 240, the width in
    proportion to the stored pixels, pixel aspect not applied: the authors' JPEGs have square
    pixels), for the scale to the short side."""
    w, h = probe.coded_width, probe.coded_height
    if probe.rotation in (90, 270):
        w, h = h, w
    return SimpleNamespace(width=int(round(w * JPEG_HEIGHT / h)), height=JPEG_HEIGHT)
