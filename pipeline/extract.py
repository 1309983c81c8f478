"""One video in, the arrays the shards keep out: frames [S,t,k,H,W,3] uint8, MFCC [T,n] float32, info."""
from __future__ import annotations

import dataclasses

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from pipeline.audio import audio_features
from pipeline.params import PreprocessParams
from pipeline.probe import probe
from pipeline.video import decode_snippets as decode_direct


def decode_snippets(p, params: PreprocessParams):
    """The snippets straight from the source, or (profile official) through JPEG at height 240."""
    if params.profile == "official":
        from pipeline.official_video import decode_snippets_via_jpeg
        return decode_snippets_via_jpeg(p, params)
    return decode_direct(p, params)


@dataclass
class Extracted:
    frames: np.ndarray  # uint8 [S, t, k, H, W, 3], RGB, snippet-major
    mfcc: np.ndarray  # float32 [T, n_mfcc], the whole soundtrack (zeros when there is none)
    info: dict = field(default_factory=dict)


def extract_video(path: str | os.PathLike, params: PreprocessParams) -> Extracted:
    """Decode `path` once into snippet frames and MFCC. Raises VideoError for unusable files.

    info: fps, duration (s), width/height (as displayed), rotation (deg), n_frames (decoded, or
    counted from the packet list for long videos), has_audio (False also when the sound track
    cannot be decoded: zeros then, with a note), snippet_starts (s, [S][t]), notes.
    """
    p = probe(path, packets=True)
    notes: list[str] = []
    if not p.fps_known:
        notes.append(f"no frame rate in the header: assumed {p.fps:g} fps")
    p = _duration_from_frames(p, notes)
    if p.duration is not None:
        # the sound track decodes in a second ffmpeg beside the pictures: same CPU, less wall time
        with ThreadPoolExecutor(max_workers=1) as pool:
            audio = pool.submit(audio_features, p, params, p.duration)
            frames, starts, n_frames, vnotes = decode_snippets(p, params)
            mfcc, has_audio, anotes = audio.result()
        duration = p.duration
    else:  # no duration in the header: the decoded frames tell how long silence must be
        frames, starts, n_frames, vnotes = decode_snippets(p, params)
        duration = n_frames / p.fps
        mfcc, has_audio, anotes = audio_features(p, params, duration)
    distinct = min(len(np.unique(starts[:, i])) for i in range(starts.shape[1]))
    if distinct < params.snippets:
        vnotes.append(f"too short for {params.snippets} snippet positions per segment: "
                      f"{distinct} distinct (training draws from those)")
    info = dict(
        fps=float(p.fps), duration=float(duration), width=int(p.width), height=int(p.height),
        rotation=int(p.rotation), n_frames=int(n_frames), has_audio=bool(has_audio),
        snippet_starts=np.round(starts, 4).tolist(), notes=notes + vnotes + anotes)
    return Extracted(frames=np.ascontiguousarray(frames), mfcc=mfcc, info=info)


def _duration_from_frames(p, notes: list):
    """Matroska headers of a file that starts late give its end time as the duration: the
    packet list shows it (frames end `start` seconds before it), and the frames' span is used.
    A header longer for other reasons (a soundtrack outlasting the pictures) is kept."""
    table = p.packets[0] if p.packets else None
    if table is None or not len(table.times) or p.duration is None or p.start <= 0:
        return p
    span = float(table.times[-1]) + 1.0 / p.fps
    if abs(p.duration - (span + p.start)) > 2.0 / p.fps:
        return p
    notes.append(f"duration {span:.2f} s from the frames: the header's {p.duration:.2f} s is the "
                 f"end time of a file that starts at {p.start:g} s")
    return dataclasses.replace(p, duration=span)
