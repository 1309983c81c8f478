"""Every preprocessing parameter, recorded in the shards so a reader knows how they were made."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

# 2: frames may be stored as JPEG (`codec`); 1: raw uint8 frames only (still read, as codec "raw")
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
CODECS = ("raw", "jpeg")


@dataclass(frozen=True)
class PreprocessParams:
    # visual: t segments per video, S snippets per segment, k successive frames per snippet.
    # S = 8 start positions spread over each segment: training draws one of them per segment
    # anew every epoch (the paper's random snippet per segment), evaluation takes the middle one
    segments: int = 10
    snippets: int = 8
    frames: int = 16
    short_side: int = 112
    # the long side is centre-cropped to this, so a 16:9 frame (199 px) is kept whole
    max_long_side: int = 200
    # audio: mono PCM at this rate, MFCC from python_speech_features
    sample_rate: int = 16000
    n_mfcc: int = 32
    n_filt: int = 40
    nfft: int = 512
    winlen: float = 0.025
    winstep: float = 0.01
    # shards
    shard_size_mb: int = 1024
    compression: str | None = None
    extra: dict = field(default_factory=dict)
    # frame storage: "jpeg" (each frame a JPEG, libjpeg-turbo via simplejpeg; decoded by the
    # loader workers) or "raw" (uint8 arrays); quality 1..100 of the JPEG encoder
    codec: str = "jpeg"
    quality: int = 90

    def __post_init__(self):
        for name in ("segments", "snippets", "frames", "short_side", "max_long_side",
                     "sample_rate", "n_mfcc", "n_filt", "nfft", "shard_size_mb"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.codec not in CODECS:
            raise ValueError(f"codec must be one of {', '.join(CODECS)}, got {self.codec!r}")
        if not 1 <= self.quality <= 100:
            raise ValueError(f"quality must be in 1..100, got {self.quality}")
        if self.max_long_side < self.short_side:
            raise ValueError("max_long_side must be >= short_side")
        if self.n_filt < self.n_mfcc:
            raise ValueError(f"n_filt ({self.n_filt}) must be >= n_mfcc ({self.n_mfcc}): "
                             "python_speech_features silently cuts numcep to nfilt")
        if self.nfft < round(self.winlen * self.sample_rate):
            raise ValueError(f"nfft ({self.nfft}) is shorter than a window "
                             f"({round(self.winlen * self.sample_rate)} samples)")

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["format_version"] = FORMAT_VERSION
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "PreprocessParams":
        names = {f.name for f in dataclasses.fields(cls)}
        if "codec" not in d:   # written before codecs existed (format 1): raw frames
            d = {**d, "codec": "raw"}
        return cls(**{k: v for k, v in d.items() if k in names})

    def replace(self, **changes) -> "PreprocessParams":
        return dataclasses.replace(self, **changes)
