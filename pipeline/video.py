"""Decode only the frames the model will see: S snippets of k successive frames in each of t segments.

S (default 8) start positions spread over each segment: training draws one of them per segment
anew every epoch (the paper's random snippet per segment, trainer/sampling.snippet_choice).

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

Size: frames are scaled (area filter, full chroma resolution: PLANAR) so the short side is
`short_side`, keeping the displayed aspect ratio (pixel aspect and rotation metadata applied;
ffmpeg autorotates), then the long side is centre-cropped to `max_long_side`.

How:
- Long videos are first listed packet by packet (timestamps, keyframe flags and decoding order,
  no decoding; see probe.frame_table). In containers with a seek index (mp4/mov, mkv/webm, flv),
  ONE ffmpeg process then decodes all snippets, and which frames belong to which snippet is
  known exactly:
  - while the file has fewer than SINGLE_PASS_PACKETS packets per snippet: one decoder reads
    the stream once but is given only the packets from each snippet's keyframe to its last
    frame (ffmpeg's `noise` bitstream filter drops the others unread); one select keeps the
    frames inside the snippets' time windows, one scale, ONE raw RGB output, and showinfo logs
    every frame's timestamp so each frame is checked to lie in the window of the snippet it is
    read into. The same pixels as seeking (tests/test_video.py compares), with one decoder set
    up instead of one per snippet (~20% less CPU for 10 snippets of a 60 s video), and one
    filter chain and output instead of one per snippet (the 80 snippets of bench/etl.py's 112 s
    640x360 videos, median of 3-5 interleaved runs on a loaded 2-core machine: 3.43 -> 2.68 s
    and 9.81 -> 8.52 s CPU, 22% and 13% less). ffmpeg builds whose showinfo lacks `checksum`
    (it would hash every frame) keep one select + scale + output per snippet.
    For H.264 the pre-roll's non-reference frames (nal_ref_idc 0: B-frames nothing is predicted
    from, listed by reference_frames) are left out too: they change no other picture (tests
    compare with seeking), and about half of the pre-roll is such frames with x264's b-pyramid
    (the same videos: 8.52 -> 7.75 s CPU, 9% less, listing included; for the one whose
    B-frames are cheap to decode 2.68 -> 2.95 s median, 2.61 -> 2.44 s best: within the noise).
    Open GOPs (frames shown before a keyframe that follow it) and anything but k frames per
    snippet take the seeking route;
  - otherwise the file is opened once per snippet with its own input seek (`-ss` before `-i`),
    each chain being trim -> scale -> crop, each to its own output (a short snippet is known
    from its output's length). (One process per snippet costs about 45% more CPU: bench/etl.py
    measures both.)
- Long videos in other containers (avi, mpeg-ts/ps, ...) are decoded in one pass and ffmpeg's
  select filter keeps only the snippet frames: exact, no seeking, memory stays small.
- Short videos (fewer than FULL_DECODE_RATIO * S*t*k frames) are decoded whole, once, and
  frames are picked from memory.
"""
from __future__ import annotations

import functools
import os
import re
import selectors
import subprocess
import tempfile
import time

import ffmpeg
import numpy as np

from pipeline import ffmpeg_bin
from pipeline.errors import VideoError, tail
from pipeline.params import PreprocessParams
from pipeline.probe import FrameTable, Probe, _parse_packets, frame_table

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
# of those, the ones whose header alone describes the streams (flv adds streams as packets come)
NO_PROBE_FORMATS = ("mov", "mp4", "matroska", "webm")
# one decoder fed only the snippets' packets instead of a seeking input per snippet, while the file
# has fewer packets than this per snippet: reading and dropping a packet costs ~3 us CPU, a seeking
# input ~6 ms (its decoder, threads and buffers set up anew; 640x360 H.264)
SINGLE_PASS_PACKETS = 1000


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


# the scale writes planar RGB; the rgb24 the outputs ask for is then only a reshuffle of the bytes.
# A scale straight to packed rgb24 interpolates the chroma to full width only for odd output
# widths; at even ones (150 x 112 from 4:3) it halves the chroma's horizontal resolution (about
# 24 dB on colour bars against a 16-bit scale). Planar output always gets full chroma (52 dB),
# the pixels of `flags=area+full_chroma_int` to rgb24 (tests/test_video.py), through swscale's
# fast planar writers: 10-20% less ffmpeg CPU per kept frame (bench/results/etl-112s.md)
PLANAR = "gbrp"


def _graph_tail(stream, probe: Probe, params: PreprocessParams):
    sw, sh, ow, oh = output_size(probe.width, probe.height, params)
    stream = stream.filter("scale", sw, sh, flags="area")
    if (ow, oh) != (sw, sh):
        stream = stream.crop((sw - ow) // 2, (sh - oh) // 2, ow, oh)
    return stream.filter("format", PLANAR)


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


def _scale_crop(probe: Probe, params: PreprocessParams) -> str:
    """_graph_tail as filtergraph text."""
    sw, sh, ow, oh = output_size(probe.width, probe.height, params)
    text = f"scale={sw}:{sh}:flags=area"
    if (ow, oh) != (sw, sh):
        text += f",crop={ow}:{oh}:{(sw - ow) // 2}:{(sh - oh) // 2}"
    return text + f",format={PLANAR}"


def _snippet_args(probe: Probe, params: PreprocessParams, seeks, outputs: list[str]) -> list[str]:
    """ffmpeg arguments: one seeking input and one raw RGB output per snippet (seek i -> outputs[i])."""
    k = params.frames
    chain = f"trim=end_frame={k},{_scale_crop(probe, params)}"
    # mp4/mov and matroska headers hold all the stream parameters: skip the stream probing (it
    # decodes frames; ~5% of this run's CPU). ffmpeg then does not know the start time and seeks
    # count from 0 instead of from it: add it (tests/test_video.py checks files that start late)
    fast = any(f in probe.format.split(",") for f in NO_PROBE_FORMATS)
    start = probe.start if fast else 0.0
    args = []
    for seek in seeks:
        args += ["-ss", f"{float(seek) + start:.6f}", "-t", f"{(k + 1) / probe.fps + SEEK_SLACK:.6f}",
                 "-threads", "1", *(["-nofind_stream_info"] if fast else []), "-i", probe.path]
    graph = ";".join(f"[{i}:v:{probe.video_stream}]{chain}[o{i}]" for i in range(len(seeks)))
    args += ["-filter_complex", graph, "-filter_complex_threads", "1"]
    for i, out in enumerate(outputs):
        args += ["-map", f"[o{i}]", "-f", "rawvideo", "-fps_mode", "passthrough", "-frames:v", str(k),
                 "-pix_fmt", "rgb24", out]
    return args


# bytes a frame pipe holds (Linux; the default is 64 KB): ffmpeg writes a frame in one go and
# the reader takes it in one read instead of waking both sides up every 64 KB
PIPE_BYTES = 1 << 20


def _widen(fd: int) -> None:
    try:
        import fcntl
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
    except (ImportError, AttributeError, OSError):   # not Linux, or above the system's limit
        pass


def _stop_timed_out(proc, err, path: str) -> VideoError:
    """Kill ffmpeg past ffmpeg_bin.DEFAULT_TIMEOUT; the error to raise, with its log's tail."""
    proc.kill()
    proc.wait()
    err.seek(0)
    return VideoError(f"ffmpeg timed out after {ffmpeg_bin.DEFAULT_TIMEOUT:.0f} s", tail(err.read()), path)


def _run_into(make_args, views: list, path: str) -> tuple[list[int], str]:
    """Run ffmpeg with arguments make_args(output names), output i going to a pipe read straight
    into views[i] (a memoryview, or a list of them filled one after the other); returns (bytes
    each output wrote, ffmpeg's log). More than fits is dropped, but counted. Errors as
    ffmpeg_bin.run.

    Pipes, not temporary files: no page-cache copy to write, read back and delete (POSIX). The
    log goes to an unnamed temporary file instead: showinfo writes a line per frame, and a pipe
    would wake this process up for every one of them."""
    targets = [list(v) if isinstance(v, (list, tuple)) else [v] for v in views]
    pipes = [os.pipe() for _ in views]
    for _, w in pipes:
        _widen(w)
    cmd = [ffmpeg_bin.ffmpeg_exe(), "-hide_banner", "-nostats", "-nostdin", "-y",
           *make_args([f"pipe:{w}" for _, w in pipes])]
    with tempfile.TemporaryFile() as err:
        try:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=err, pass_fds=[w for _, w in pipes])
        finally:
            for _, w in pipes:
                os.close(w)
        got = [0] * len(views)
        part, filled = [0] * len(views), [0] * len(views)  # which view of the list, bytes in it
        deadline = None if ffmpeg_bin.DEFAULT_TIMEOUT is None else time.monotonic() + ffmpeg_bin.DEFAULT_TIMEOUT
        with selectors.DefaultSelector() as sel:
            for i, (r, _) in enumerate(pipes):
                sel.register(r, selectors.EVENT_READ, i)
            try:
                while sel.get_map():
                    left = None if deadline is None else deadline - time.monotonic()
                    if left is not None and left <= 0:
                        raise _stop_timed_out(proc, err, path)
                    for key, _ in sel.select(left):
                        i, t = key.data, targets[key.data]
                        while part[i] < len(t) and filled[i] == len(t[part[i]]):
                            part[i], filled[i] = part[i] + 1, 0
                        if part[i] < len(t):
                            chunk = os.readv(key.fd, [t[part[i]][filled[i]:]])
                            filled[i] += chunk
                        else:  # more than asked for: dropped, but counted
                            chunk = len(os.read(key.fd, 1 << 16))
                        got[i] += chunk
                        if not chunk:
                            sel.unregister(key.fileobj)
            finally:
                for r, _ in pipes:
                    os.close(r)
        try:   # the outputs are closed; the log may still be written until ffmpeg exits
            proc.wait(None if deadline is None else max(deadline - time.monotonic(), 1.0))
        except subprocess.TimeoutExpired:
            raise _stop_timed_out(proc, err, path) from None
        err.seek(0)
        log = err.read().decode("utf-8", errors="replace")
    if proc.returncode != 0:
        raise VideoError("decode failed", tail(log), path)
    if "partial file" in log:  # as ffmpeg_bin.run: the index points past the end of the file
        raise VideoError("truncated file (data ends before the container index)", tail(log), path)
    return got, log


def _sum(terms: list[str]) -> str:
    """terms joined by `+`, nested in parentheses of at most 64: ffmpeg's expression parser
    refuses a flat sum of 100 terms or more (too deep)."""
    while len(terms) > 64:
        terms = ["(" + "+".join(terms[i:i + 64]) + ")" for i in range(0, len(terms), 64)]
    return "+".join(terms)


def reference_frames(probe: Probe, table: FrameTable) -> np.ndarray | None:
    """Whether each frame (display order, as table.times) may be a reference for others; None when
    unknown. H.264 only: a picture with nal_ref_idc 0 is never predicted from, so leaving it out
    changes no other picture. Listed without decoding by the filter_units bitstream filter (the
    packets that remain after discarding non-reference frames: ~0.05 s CPU for a 112 s video).
    Not for HEVC, whose "non-reference" pictures may still be referenced by higher sub-layers."""
    if probe.codec != "h264" or table is None:
        return None
    out = ffmpeg.input(probe.path)[f"v:{probe.video_stream}"].output(
        "pipe:", format="framecrc", c="copy", copyinkf=None, **{"bsf:v": "filter_units=discard=nonref"})
    try:
        text, _ = ffmpeg_bin.run(out, path=probe.path)
    except VideoError:  # e.g. an ffmpeg without filter_units' discard option
        return None
    ref = _parse_packets(text.decode("ascii", errors="replace"), 0)
    if ref is None or len(np.unique(table.times)) != len(table.times):
        return None
    is_ref = np.isin(table.times, ref.times)
    # every listed reference frame is a frame of the table, and keyframes are references
    if not np.isin(ref.times, table.times).all() or not is_ref[table.keyframes].all():
        return None
    return is_ref


def _single_pass_ranges(table: FrameTable, starts: np.ndarray, k: int) -> list[tuple[int, int]] | None:
    """Packet numbers [first, last] each snippet needs: from the last keyframe before it (in
    decoding order) to its last frame. None when frames shown before such a keyframe follow it
    (open GOP: they refer to packets left out) or no keyframe comes before a snippet."""
    pk = table.packets
    shown_as = np.full(pk.max() + 1, len(pk))  # display index of every packet number
    shown_as[pk] = np.arange(len(pk))
    key_pk = np.sort(pk[table.keyframes])
    ranges = []
    for s in starts:
        want = pk[s:s + k]
        i = np.searchsorted(key_pk, want.min(), side="right") - 1
        if i < 0:
            return None
        first, last = int(key_pk[i]), int(want.max())
        if shown_as[first:last + 1].min() < shown_as[first]:
            return None
        ranges.append((first, last))
    return ranges


@functools.lru_cache(maxsize=None)
def _showinfo_takes_checksum(exe: str) -> bool:
    """Whether this ffmpeg's showinfo filter has the `checksum` option (to log frames without
    hashing their pixels); builds without it take the one-output-per-snippet graph."""
    try:
        r = subprocess.run([exe, "-hide_banner", "-h", "filter=showinfo"], stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return re.search(r"^\s*checksum\b", r.stdout, re.M) is not None


# showinfo's lines: its input time base once per configuration, then one line per frame
_SHOWINFO = re.compile(r"^\[Parsed_showinfo_\d+ @ [^\]]*\] "
                       r"(?:config in time_base: (\d+)/(\d+)|n: *\d+ pts: *(-?\d+) )", re.M)


def _logged_times(log: str) -> list[float] | None:
    """Time (s, as select's `t`) of every frame showinfo logged, in output order; None when a
    frame line comes before any time base."""
    times, tb = [], None
    for m in _SHOWINFO.finditer(log):
        if m.group(1) is not None:
            tb = int(m.group(1)) / int(m.group(2))
        elif tb is None:
            return None
        else:
            times.append(int(m.group(3)) * tb)
    return times


def _window_counts(log: str, n_out: int, lo: np.ndarray, hi: np.ndarray, order: np.ndarray,
                   k: int) -> np.ndarray:
    """Frames of each window (snippet) in the one output, from showinfo's log; all k only when the
    j-th frame out lies in window order[j // k], i.e. the blocks of k frames read into the
    snippets in time order are exactly their windows' frames. Zeros when the log cannot say."""
    n = len(lo)
    times = _logged_times(log)
    if times is None or len(times) != n_out:  # e.g. a frame without a timestamp: not logged as one
        return np.zeros(n, np.int64)
    t = np.asarray(times, np.float64)
    lo_s, hi_s = lo[order], hi[order]
    w = np.searchsorted(lo_s, t, side="right") - 1  # the window starting last at or before t
    inside = (w >= 0) & (t <= hi_s[np.maximum(w, 0)])
    counts = np.zeros(n, np.int64)
    counts[order] = np.bincount(w[inside], minlength=n)[:n]
    placed = inside.all() and np.array_equal(w, np.arange(n_out) // k)
    if (counts == k).all() and not placed:  # right counts, wrong order: nothing can be trusted
        return np.zeros(n, np.int64)
    return counts


def _kept_packets(table: FrameTable, starts: np.ndarray, k: int, ranges: list[tuple[int, int]],
                  reference: np.ndarray | None) -> np.ndarray:
    """Packet numbers the decoder gets (sorted): those in `ranges`, less the non-reference frames
    (reference_frames) that are not snippet frames."""
    keep = np.unique(np.concatenate([np.arange(a, b + 1) for a, b in ranges]))
    if reference is None:
        return keep
    wanted = np.zeros(len(table.times), bool)
    wanted[(starts[:, None] + np.arange(k)).ravel()] = True
    drop = table.packets[~reference & ~wanted]
    return keep[~np.isin(keep, drop)]


def _single_pass(probe: Probe, params: PreprocessParams, table: FrameTable, starts: np.ndarray,
                 ranges: list[tuple[int, int]], one_output: bool | None = None,
                 reference: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The snippets from ONE decoder over the stream, fed only the packets in `ranges` (the noise
    bitstream filter drops the rest before decoding), less the non-reference frames outside the
    snippets when `reference` (reference_frames) says which they are; frames are selected by
    time windows. Returns (frames [len(starts), k, H, W, 3], frames per snippet).

    one_output (default when the windows do not overlap and showinfo takes checksum=0): one
    select keeping the union of the windows, one scale, ONE raw output read into the snippets in
    time order; showinfo logs every frame's timestamp, so each frame's window is checked
    (_window_counts). 13-22% less CPU than one select + scale + output per snippet (False, see
    the module docstring), which is kept for ffmpeg builds whose showinfo would hash every frame."""
    # the filtergraph text and the two output layouts read best together
    k, times = params.frames, table.times
    _, _, ow, oh = output_size(probe.width, probe.height, params)
    kept = _kept_packets(table, starts, k, ranges, reference)
    runs = np.split(kept, np.flatnonzero(np.diff(kept) > 1) + 1)
    keep = _sum([f"between(n,{r[0]},{r[-1]})" for r in runs])
    order = np.argsort(starts, kind="stable")  # snippets in time order
    disjoint = bool((np.diff(starts[order]) >= k).all())
    if one_output is None:
        one_output = disjoint and _showinfo_takes_checksum(ffmpeg_bin.ffmpeg_exe())
    elif one_output and not disjoint:
        raise ValueError("one output needs snippets that do not overlap")
    # windows half-way to the neighbouring frames: robust to rounding of the timestamps; the
    # numbers as written into the graph, so that Python places frames exactly as select keeps them
    lo = np.array([float(f"{(times[s - 1] + times[s]) / 2 if s > 0 else times[s] - 1:.9f}")
                   for s in starts])
    hi = np.array([float(f"{(times[s + k - 1] + times[s + k]) / 2 if s + k < len(times) else times[-1] + 1:.9f}")
                   for s in starts])
    window = [f"between(t,{a:.9f},{b:.9f})" for a, b in zip(lo, hi)]
    if one_output:
        graph = (f"[0:v:{probe.video_stream}]select='{_sum(window)}',"
                 f"{_scale_crop(probe, params)},showinfo=checksum=0[o0]")
        n_out = 1
    else:
        graph = (f"[0:v:{probe.video_stream}]split={len(starts)}" + "".join(f"[p{i}]" for i in range(len(starts)))
                 + ";" + ";".join(f"[p{i}]select='{w}',{_scale_crop(probe, params)}[o{i}]"
                                  for i, w in enumerate(window)))
        n_out = len(starts)

    def args(outputs):
        a = ["-v", "info", "-threads", "1", f"-bsf:v:{probe.video_stream}", f"noise=drop='not({keep})'",
             "-i", probe.path, "-filter_complex", graph, "-filter_complex_threads", "1"]
        for i, out in enumerate(outputs):
            a += ["-map", f"[o{i}]", "-f", "rawvideo", "-fps_mode", "passthrough", "-pix_fmt", "rgb24", out]
        return a

    out = np.empty((len(starts), k, oh, ow, 3), np.uint8)
    frame = oh * ow * 3
    if one_output:
        (got,), log = _run_into(args, [[memoryview(out[i].reshape(-1)) for i in order]], probe.path)
        if got % frame:
            return out, np.zeros(len(starts), np.int64)
        return out, _window_counts(log, got // frame, lo, hi, order, k)
    got, _ = _run_into(args, [memoryview(out[i].reshape(-1)) for i in range(n_out)], probe.path)
    return out, np.asarray(got) // frame


def _decode_at(probe: Probe, params: PreprocessParams, seeks, one_process: bool = True
               ) -> tuple[np.ndarray, np.ndarray]:
    """(frames uint8 [len(seeks), k, H, W, 3], frames decoded per seek): see decode_at.
    Rows past a snippet's count are left as they were (uninitialised)."""
    _, _, ow, oh = output_size(probe.width, probe.height, params)
    frame = oh * ow * 3
    out = np.empty((len(seeks), params.frames, oh, ow, 3), np.uint8)
    views = [memoryview(out[i].reshape(-1)) for i in range(len(seeks))]
    if one_process:
        got, _ = _run_into(lambda outs: _snippet_args(probe, params, seeks, outs), views, probe.path)
    else:
        got = [_run_into(lambda outs: _snippet_args(probe, params, [s], outs), [v], probe.path)[0][0]
               for s, v in zip(seeks, views)]
    return out, np.asarray(got) // frame


def decode_at(probe: Probe, params: PreprocessParams, seeks, one_process: bool = True) -> list[np.ndarray]:
    """Up to k frames from each input-seek time in `seeks` (s, flat). Returns a list of uint8
    [n_i, H, W, 3], n_i <= k. The first frame is the first one shown at or after the seek time.

    one_process: a single ffmpeg with one seeking input per snippet (default; bench/etl.py
    measures it against one ffmpeg process per snippet, one_process=False)."""
    out, counts = _decode_at(probe, params, seeks, one_process)
    return [out[i, :n] for i, n in enumerate(counts)]


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
    # the decode routes (whole video, one pass keeping the snippets, one seek per snippet) and their fallbacks read best side by side
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
        ranges = None
        listed = table is not None and table.packets is not None
        if listed and table.packets.max() < SINGLE_PASS_PACKETS * S * t:
            ranges = _single_pass_ranges(table, starts.ravel(), k)
        if ranges is not None:
            try:
                out, counts = _single_pass(probe, params, table, starts.ravel(), ranges,
                                           reference=reference_frames(probe, table))
            except VideoError as e:
                if e.reason.startswith(("truncated", "ffmpeg timed out")):
                    raise
                counts = np.zeros(0, np.int64)
            # anything but exactly k frames each (e.g. damaged data): the seeking route below
            if len(counts) and (counts == k).all():
                return out.reshape(S, t, *out.shape[1:]), times[starts], n, notes
        try:
            out, counts = _decode_at(probe, params, seek_times(times, starts.ravel(), keyframes))
        except VideoError as e:
            if e.reason.startswith(("truncated", "ffmpeg timed out")):
                raise
            counts = np.zeros(0, np.int64)  # e.g. an output got no frame at all: ffmpeg stops with an error
        if len(counts) and counts.min() > 0:
            short = np.flatnonzero(counts < k)
            if len(short):
                notes.append(f"{len(short)} snippet(s) ended early: last frame repeated")
            for i in short:
                out[i, counts[i]:] = out[i, counts[i] - 1]
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
    if t > 1 and len(np.unique(starts)) == 1:  # too short for its segments to differ: say so
        notes.append(f"every one of the {t} segments holds the same frames (video of {n} frames)")
    return _pick(frames, starts, k), starts / probe.fps, n, notes
