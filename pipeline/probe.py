"""What is in a video file, read from the header that `ffmpeg -i FILE` prints (no ffprobe needed).

ffmpeg prints one line per stream, e.g.
    Duration: 00:01:47.04, start: 0.000000, bitrate: 1205 kb/s
    Stream #0:0[0x1](und): Video: h264 (High), yuv420p(progressive), 640x360 [SAR 1:1 DAR 16:9], 25 fps, ...
        Side data:
          Display Matrix: rotation of -90.00 degrees
    Stream #0:1[0x2](und): Audio: aac (LC), 44100 Hz, stereo, fltp, 128 kb/s
Only the header is read, so probing costs one short ffmpeg start, whatever the file length.
probe(path, packets=True) also lists the video packets in the same ffmpeg run (see frame_table):
one process start and one header read fewer per video.
"""
from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass, field

import ffmpeg
import numpy as np

from pipeline.errors import VideoError, tail
from pipeline.ffmpeg_bin import DEFAULT_TIMEOUT, ffmpeg_exe, run, run_args

DEFAULT_FPS = 25.0  # used only when the header names no frame rate at all

_INPUT = re.compile(r"^Input #0, (.+?), from ", re.M)
_DURATION = re.compile(r"Duration: (?:(\d+):(\d+):(\d+(?:\.\d+)?)|N/A)")
_START = re.compile(r"Duration: [^,\n]*, start: (-?\d+(?:\.\d+)?)")
_STREAM = re.compile(r"^\s*Stream #0:(\d+)\S*: (Video|Audio|Subtitle|Data|Attachment): (.*)$")
_SIZE = re.compile(r"(?<![\w/])([1-9]\d*)x([1-9]\d*)(?![\w])")
_SAR = re.compile(r"SAR (\d+):(\d+)")
_RATE = re.compile(r"([\d.]+)(k?) (fps|tbr)\b")
_MATRIX = re.compile(r"(?:Display Matrix|displaymatrix): rotation of (-?[\d.]+) degrees", re.I)
_ROTATE_TAG = re.compile(r"^\s*rotate\s*:\s*(-?\d+)", re.M)
# still images (jpg, png, ...) are a "video" of one frame to ffmpeg; they are not videos for us
_IMAGE_FORMATS = ("image2", "_pipe")
# where the input's header ends in a log that goes on with outputs (their streams are "#0:N" too)
_HEADER_END = re.compile(r"^(?:Stream mapping:|Output #)", re.M)


@dataclass
class Probe:
    path: str
    format: str
    duration: float | None  # seconds; None when the container does not say
    fps: float  # average frame rate ("fps"), else the stream's base rate ("tbr"), else 25
    fps_known: bool
    coded_width: int
    coded_height: int
    sar: float  # sample (pixel) aspect ratio; 1.0 for square pixels
    rotation: int  # degrees, as the display matrix says, normalised to 0/90/180/270
    video_stream: int  # index among the video streams (for the stream specifier v:N)
    has_audio: bool
    audio_stream: int | None  # index among the audio streams
    log: str = field(repr=False, default="")
    # the file's start time (s) as ffmpeg printed it: input seeks and timestamps count from it
    start: float = 0.0
    # (frame_table's result,) when probe(..., packets=True) listed the packets with the header
    packets: tuple | None = field(repr=False, compare=False, default=None)
    codec: str = ""  # the video codec's ffmpeg name (h264, hevc, ...), as the header says

    @property
    def width(self) -> int:
        """Width as displayed: pixel aspect applied, then rotation (ffmpeg autorotates on decode)."""
        w, h = round(self.coded_width * self.sar), self.coded_height
        return h if self.rotation in (90, 270) else w

    @property
    def height(self) -> int:
        w, h = round(self.coded_width * self.sar), self.coded_height
        return w if self.rotation in (90, 270) else h

    @property
    def n_frames(self) -> int | None:
        """Frame count estimated from duration x fps (None when the duration is unknown)."""
        if self.duration is None:
            return None
        return max(1, int(round(self.duration * self.fps)))


def _rate(text: str, unit: str) -> float | None:
    for value, kilo, which in _RATE.findall(text):
        if which == unit:
            return float(value) * (1000 if kilo else 1)
    return None


def _error_reason(log: str) -> str:
    low = log.lower()
    if "no such file or directory" in low:
        return "file not found"
    if "permission denied" in low:
        return "permission denied"
    if "misdetection possible" in low:
        # the format was guessed from the file name only: the content is not that container
        return "not a video file (unrecognised data)"
    if "moov atom not found" in low:
        return "truncated file (moov atom not found)"
    if "invalid data found when processing input" in low:
        return "not a video file (invalid data)"
    return "unreadable file"


def parse_header(path: str, log: str) -> Probe:
    """Parse `ffmpeg -i` stderr into a Probe; raise VideoError when there is no usable video."""
    # one pass over ffmpeg's header text, field by field; splitting it would only scatter the matches
    m = _INPUT.search(log)
    if m is None:
        raise VideoError(_error_reason(log), tail(log), path)
    fmt = m.group(1)
    if any(f in fmt for f in _IMAGE_FORMATS):
        raise VideoError(f"not a video file (still image, format {fmt})", tail(log), path)

    m = _START.search(log)
    start = float(m.group(1)) if m else 0.0
    duration = None
    m = _DURATION.search(log)
    if m and m.group(1) is not None:
        duration = int(m.group(1)) * 3600 + int(m.group(2)) * 60 + float(m.group(3))
        if duration <= 0:
            duration = None

    video, audio_count, audio_first = None, 0, None
    lines = log.splitlines()
    n_video = 0
    for i, line in enumerate(lines):
        s = _STREAM.match(line)
        if not s:
            continue
        kind, desc = s.group(2), s.group(3)
        if kind == "Audio":
            if audio_first is None:
                audio_first = audio_count
            audio_count += 1
        elif kind == "Video":
            # cover art in mp4/mkv/mp3 is a one-picture "video" stream: never the video itself
            if video is None and "(attached pic)" not in desc:
                # side data and metadata of this stream: the indented lines up to the next stream
                block = []
                for nxt in lines[i + 1:]:
                    if _STREAM.match(nxt) or not nxt.startswith("    "):
                        break
                    block.append(nxt)
                video = (n_video, desc, "\n".join(block))
            n_video += 1
    if video is None:
        reason = "no video stream (audio only)" if audio_count else "no video stream"
        raise VideoError(reason, tail(log), path)

    index, desc, block = video
    size = _SIZE.search(desc)
    if size is None:
        raise VideoError("video stream has no frame size", tail(log), path)
    sar = 1.0
    m = _SAR.search(desc)
    if m and int(m.group(1)) > 0 and int(m.group(2)) > 0:
        sar = int(m.group(1)) / int(m.group(2))
    fps = _rate(desc, "fps")
    fps_known = fps is not None and 0 < fps < 1000
    if not fps_known:
        fps = _rate(desc, "tbr")
        fps_known = fps is not None and 0 < fps < 1000
    if not fps_known:
        fps = DEFAULT_FPS
    rotation = 0
    m = _MATRIX.search(block) or _ROTATE_TAG.search(block)
    if m:
        rotation = int(round(float(m.group(1)) / 90.0)) * 90 % 360

    return Probe(path=path, format=fmt, duration=duration, fps=float(fps), fps_known=fps_known,
                 coded_width=int(size.group(1)), coded_height=int(size.group(2)), sar=sar,
                 rotation=rotation, video_stream=index, has_audio=audio_count > 0,
                 audio_stream=audio_first, log=log, start=start, codec=desc.split(" ", 1)[0].rstrip(","))


def probe(path: str | os.PathLike, packets: bool = False) -> Probe:
    """Read the header of `path` with `ffmpeg -i`. Raises VideoError for files we cannot use.

    packets: list the video packets in the same run (kept for frame_table); a file whose packets
    cannot be listed cleanly is probed as usual and frame_table lists them on its own."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise VideoError("file not found", "", path)
    if os.path.isdir(path):
        raise VideoError("not a file (directory)", "", path)
    if os.path.getsize(path) == 0:
        raise VideoError("zero-byte file", "", path)
    if packets:
        # every video stream, so the one parse_header picks is there whatever its index
        rc, out, log = _run_ffmpeg(["-nostats", "-i", path, "-map", "0:v?", "-c", "copy",
                                    "-copyinkf", "-f", "framecrc", "pipe:"], path)
        m = _HEADER_END.search(log)
        p = parse_header(path, log[:m.start()] if m else log)
        if rc == 0 and "partial file" not in log:
            p.packets = (_parse_packets(out.decode("ascii", errors="replace"), p.video_stream),)
        return p
    # `ffmpeg -i FILE` without an output always exits 1 ("At least one output file must be
    # specified"): the exit code says nothing, the printed header says everything
    _, log = run_args(["-i", path], timeout=60)
    return parse_header(path, log)


def _run_ffmpeg(args: list[str], path: str,
                timeout: float | None = DEFAULT_TIMEOUT) -> tuple[int, bytes, str]:
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", *args]
    try:
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        raise VideoError(f"ffmpeg timed out after {timeout:.0f} s", tail(e.stderr or b""), path) from None
    return proc.returncode, proc.stdout, proc.stderr.decode("utf-8", errors="replace")


@dataclass
class FrameTable:
    """Every frame of the video stream, from its packets (read without decoding)."""
    times: np.ndarray  # display time (s) of every frame, ascending, from the start of the file
    keyframes: np.ndarray  # indices into `times` of the frames that decoding can start at
    # packet number (decode order, counting every packet the demuxer gives) of every frame
    packets: np.ndarray | None = None


def frame_table(p: Probe) -> FrameTable | None:
    """List the video packets (`-c copy -f framecrc`: timestamps and keyframe flags, no decoding).

    Costs one pass over the file's bytes, a small fraction of a decode. None when the
    container gives no usable timestamps (then positions are estimated from fps).
    Reuses the list that probe(..., packets=True) read.
    """
    if p.packets is not None:
        return p.packets[0]
    out = ffmpeg.input(p.path)[f"v:{p.video_stream}"].output("pipe:", format="framecrc", c="copy",
                                                             copyinkf=None)
    text, _ = run(out, reason="reading the packet list failed", path=p.path)
    return _parse_packets(text.decode("ascii", errors="replace"), 0)


def _parse_packets(text: str, stream: int) -> FrameTable | None:
    """FrameTable of output stream `stream` from framecrc text."""
    m = re.search(rf"^#tb {stream}: (\d+)/(\d+)", text, re.M)
    # packet lines: stream, dts, pts, duration, size, checksum[, F=0xflags][, side data...];
    # framecrc prints F= only when the flags differ from "keyframe"
    rows = re.findall(rf"^{stream},[^,\n]*,([^,\n]*),[^,\n]*,[^,\n]*,[^,\n]*(?:, *F=0x([0-9A-Fa-f]+))?",
                      text, re.M)
    if m is None or not rows:  # no time base or no packets
        return None
    tb = int(m.group(1)) / int(m.group(2))
    pts = np.array([int(p) for p, _ in rows], np.int64)
    flags = np.array([int(f, 16) if f else 1 for _, f in rows])
    # -copyinkf lists every packet; frames count from the first keyframe (what a copy without it
    # keeps), and flag 4 marks packets an edit list discards: never shown
    shown = ((flags & 4) == 0) & (np.cumsum(flags & 1) > 0)
    number = np.flatnonzero(shown)
    pts, key = pts[shown], (flags[shown] & 1).astype(bool)
    if not len(pts) or pts.min() <= -(2 ** 62):  # no pts
        return None
    order = np.argsort(pts, kind="stable")
    times = pts[order] * tb
    return FrameTable(times=times, keyframes=np.flatnonzero(key[order]), packets=number[order])
