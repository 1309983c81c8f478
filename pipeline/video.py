"""Decode only the frames the model will see: S snippets of k successive frames in each of t segments.

Where the snippets are (positions are frame indices into the video's N frames):
- The N frames are split into t equal segments, each into S equal slots (one per snippet).
  A snippet is centred in its slot (so centred in its segment when S = 1): first frame
  round(centre - k/2), clamped to [0, N - k].
- Keyframe snapping (long videos): when a keyframe lies in the slot such that the snippet still
  fits inside the slot, the snippet starts at the keyframe nearest to the centred position.
  Decoding from a keyframe needs no pre-roll; without it every snippet first decodes, and throws
  away, on average half a keyframe interval. Snapped positions are still deterministic, in
  order and inside their segment.
- Segments shorter than k frames (videos with fewer than t*k frames) give overlapping snippets.
- Videos with fewer than k frames loop: snippet frame i is frame i mod N (noted in `notes`).
- Variable frame rate: frames are the container's frames in display order (no resampling to a
  constant rate); a snippet is k successive decoded frames, segments split the frame sequence.
- A snippet that ends early (damaged data near the end) repeats its last decoded frame (noted).

Size: frames are scaled (area filter) so the short side is `short_side`, keeping the displayed
aspect ratio (pixel aspect and rotation metadata applied; ffmpeg autorotates), then the long side
is centre-cropped to `max_long_side`.

How:
- Long videos are first listed packet by packet (timestamps and keyframe flags, no decoding;
  see probe.frame_table). In containers with a seek index (mp4/mov, mkv/webm, flv), ONE ffmpeg
  process then decodes all snippets: the file is opened once per snippet with its own input
  seek (`-ss` before `-i`), and each chain (trim -> scale -> crop) goes to its own raw RGB
  output, so a short snippet is known exactly. (One process per snippet costs about 25% more
  CPU: bench/etl.py measures both.)
- Long videos in other containers (avi, mpeg-ts/ps, ...) are decoded in one pass and ffmpeg's
  select filter keeps only the snippet frames: exact, no seeking, memory stays small.
- Short videos (fewer than FULL_DECODE_RATIO * S*t*k frames) are decoded whole, once, and
  frames are picked from memory.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import ffmpeg
import numpy as np

from pipeline import ffmpeg_bin
from pipeline.errors import VideoError
from pipeline.params import PreprocessParams
from pipeline.probe import Probe, frame_table

# decode the whole file when it holds fewer than this many times the frames we keep: below that,
# seeking (one decoder start per snippet, pre-roll from a keyframe) costs more than it saves
# (measured on 640x360 H.264: seeking 10 snippets ~0.3 s CPU, a whole decode ~1.2 ms per frame)
FULL_DECODE_RATIO = 2.0
# read this much beyond a snippet's k frames (seconds) so that jittery timestamps still give k frames
SEEK_SLACK = 0.5
# containers whose index makes input seeking frame-exact (checked with frame-counter videos in
# tests/test_video.py); MPEG-TS/PS seek by bitrate guesses and land on later keyframes, AVI was
# off by one frame: those, and any other container, take the one-pass select route
SEEKABLE_FORMATS = ("mov", "mp4", "matroska", "webm", "flv")


def output_size(width: int, height: int, params: PreprocessParams) -> tuple[int, int, int, int]:
    """(scaled_w, scaled_h, out_w, out_h) for a displayed width x height."""
    s = params.short_side
    if width >= height:
        sw, sh = max(s, int(round(width * s / height))), s
    else:
        sw, sh = s, max(s, int(round(height * s / width)))
    return sw, sh, min(sw, params.max_long_side), min(sh, params.max_long_side)


def plan_snippets(n_frames: int, params: PreprocessParams, keyframes=None) -> np.ndarray:
    """First frame index of every snippet, int64 [S, t] (see the module docstring).

    keyframes: sorted frame indices decoding can start at; snippets snap to them when they can."""
    S, t, k = params.snippets, params.segments, params.frames
    slot = n_frames / (t * S)
    # slot j of segment i is slot number i*S + j: snippet-major layout [S, t]
    first = (np.arange(t)[None, :] * S + np.arange(S)[:, None]) * slot
    centred = np.floor(first + slot / 2 - k / 2 + 0.5).astype(np.int64)
    starts = np.clip(centred, 0, max(n_frames - k, 0))
    if keyframes is None or len(keyframes) == 0:
        return starts
    kf = np.asarray(keyframes, np.int64)
    lo = np.ceil(first).astype(np.int64)  # the snippet must start and end inside its slot
    hi = np.minimum(np.floor(first + slot).astype(np.int64) - k, n_frames - k)
    for i in np.ndindex(starts.shape):
        fit = kf[(kf >= lo[i]) & (kf <= hi[i])]
        if len(fit):
            starts[i] = fit[np.argmin(np.abs(fit - starts[i]))]
    return starts


def _graph_tail(stream, probe: Probe, params: PreprocessParams):
    sw, sh, ow, oh = output_size(probe.width, probe.height, params)
    stream = stream.filter("scale", sw, sh, flags="area")
    if (ow, oh) != (sw, sh):
        stream = stream.crop((sw - ow) // 2, (sh - oh) // 2, ow, oh)
    return stream


def _to_frames(raw: bytes, probe: Probe, params: PreprocessParams) -> np.ndarray:
    _, _, ow, oh = output_size(probe.width, probe.height, params)
    n = len(raw) // (oh * ow * 3)
    return np.frombuffer(raw, np.uint8, count=n * oh * ow * 3).reshape(n, oh, ow, 3)


def decode_all(probe: Probe, params: PreprocessParams) -> np.ndarray:
    """Every frame of the video at output size, uint8 [N, H, W, 3] (for short videos)."""
    inp = ffmpeg.input(probe.path, threads=1)
    out = _graph_tail(inp[f"v:{probe.video_stream}"], probe, params).output(
        "pipe:", format="rawvideo", pix_fmt="rgb24", fps_mode="passthrough")
    raw, _ = ffmpeg_bin.run(out.global_args("-filter_complex_threads", "1"), path=probe.path)
    return _to_frames(raw, probe, params)


def decode_selected(probe: Probe, params: PreprocessParams, wanted: np.ndarray) -> np.ndarray:
    """The frames with display indices `wanted` (sorted, unique), uint8 [<= len(wanted), H, W, 3].

    Decodes the whole stream once but scales and keeps only those frames (ffmpeg's select filter),
    so memory stays small for long videos in containers we do not seek in."""
    runs = np.split(wanted, np.flatnonzero(np.diff(wanted) > 1) + 1)
    expr = "+".join(f"between(n,{r[0]},{r[-1]})" for r in runs)
    inp = ffmpeg.input(probe.path, threads=1)
    v = inp[f"v:{probe.video_stream}"].filter("select", expr)
    out = _graph_tail(v, probe, params).output("pipe:", format="rawvideo", pix_fmt="rgb24",
                                               fps_mode="passthrough")
    raw, _ = ffmpeg_bin.run(out.global_args("-filter_complex_threads", "1"), path=probe.path)
    return _to_frames(raw, probe, params)


def _snippet_output(probe: Probe, params: PreprocessParams, seek: float, path: str):
    k = params.frames
    inp = ffmpeg.input(probe.path, ss=f"{seek:.6f}", t=f"{(k + 1) / probe.fps + SEEK_SLACK:.6f}",
                       threads=1)
    v = _graph_tail(inp[f"v:{probe.video_stream}"].trim(end_frame=k), probe, params)
    return v.output(path, format="rawvideo", pix_fmt="rgb24", fps_mode="passthrough", **{"frames:v": k})


def decode_at(probe: Probe, params: PreprocessParams, seeks, one_process: bool = True) -> list[np.ndarray]:
    """Up to k frames from each input-seek time in `seeks` (s, flat). Returns a list of uint8
    [n_i, H, W, 3], n_i <= k. The first frame is the first one shown at or after the seek time.

    one_process: a single ffmpeg with one seeking input per snippet (default; bench/etl.py
    measures it against one ffmpeg process per snippet, one_process=False)."""
    with tempfile.TemporaryDirectory(prefix="vaanet-") as tmp:
        outs = [_snippet_output(probe, params, float(s), os.path.join(tmp, f"{i}.rgb"))
                for i, s in enumerate(seeks)]
        if one_process:
            outs = [ffmpeg.merge_outputs(*outs)]
        for out in outs:
            ffmpeg_bin.run(out.global_args("-filter_complex_threads", "1"), path=probe.path)
        return [_to_frames(Path(tmp, f"{i}.rgb").read_bytes(), probe, params) for i in range(len(seeks))]


def seek_times(times: np.ndarray, starts: np.ndarray, keyframes: np.ndarray) -> np.ndarray:
    """Input-seek time that makes frame `start` the first frame out.

    A keyframe is sought at its own timestamp (the demuxer lands on it, nothing to pre-roll);
    any other frame half-way after the frame before it (robust to rounding of timestamps)."""
    prev = times[np.maximum(starts - 1, 0)]
    seek = np.where(starts > 0, (prev + times[starts]) / 2, 0.0)
    return np.where(np.isin(starts, keyframes), times[starts], seek)


def _pick(frames: np.ndarray, starts: np.ndarray, k: int) -> np.ndarray:
    """[S, t, k, H, W, 3] from all frames [N, ...]: frames start..start+k-1, looping if N < k."""
    idx = (starts[..., None] + np.arange(k)) % len(frames)
    return frames[idx]


def decode_snippets(probe: Probe, params: PreprocessParams) -> tuple[np.ndarray, np.ndarray, int, list[str]]:
    """Decode the snippets of one video.

    Returns (frames uint8 [S, t, k, H, W, 3], first-frame times in seconds [S, t], number of
    frames, notes)."""
    S, t, k = params.snippets, params.segments, params.frames
    notes: list[str] = []
    n_est = probe.n_frames
    long = n_est is not None and n_est > FULL_DECODE_RATIO * S * t * k
    table = frame_table(probe) if long else None
    if table is not None:
        times, keyframes = table.times, table.keyframes
    else:  # no timestamps in the container: positions from the frame rate, no snapping
        n = (n_est or 1) - 1  # the header duration may include a longer audio track
        times, keyframes = np.arange(max(n, 1)) / probe.fps, np.zeros(0, np.int64)
    n = len(times)
    long = long and n > FULL_DECODE_RATIO * S * t * k

    if long and any(f in probe.format.split(",") for f in SEEKABLE_FORMATS):
        starts = plan_snippets(n, params, keyframes)
        try:
            parts = decode_at(probe, params, seek_times(times, starts.ravel(), keyframes))
        except VideoError as e:
            if e.reason.startswith(("truncated", "ffmpeg timed out")):
                raise
            parts = []  # e.g. an output got no frame at all: ffmpeg stops with an error
        if parts and all(len(p) > 0 for p in parts):
            short = [i for i, p in enumerate(parts) if len(p) < k]
            if short:
                notes.append(f"{len(short)} snippet(s) ended early: last frame repeated")
            out = np.stack([p[np.minimum(np.arange(k), len(p) - 1)] for p in parts])
            return out.reshape(S, t, *out.shape[1:]), times[starts], n, notes
        notes.append("seeking found no frames for a snippet: decoded the whole stream instead")

    if long:  # one pass over the whole stream, keeping only the frames of the snippets
        starts = plan_snippets(n, params)
        idx = starts[..., None] + np.arange(k)
        wanted = np.unique(idx)
        got = decode_selected(probe, params, wanted)
        if len(got) == 0:
            raise VideoError("decode failed (no frames decoded)", "", probe.path)
        if len(got) < len(wanted):
            notes.append(f"stream ended after {len(got)} of {len(wanted)} wanted frames: last frame repeated")
        pick = np.minimum(np.searchsorted(wanted, idx), len(got) - 1)
        return got[pick], times[starts], n, notes

    frames = decode_all(probe, params)
    n = len(frames)
    if n == 0:
        raise VideoError("decode failed (no frames decoded)", "", probe.path)
    if n < k:
        notes.append(f"short video ({n} frames < {k}): snippet frames loop")
    starts = plan_snippets(n, params)
    return _pick(frames, starts, k), starts / probe.fps, n, notes
