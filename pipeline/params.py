"""Every preprocessing parameter, recorded in the shards so a reader knows how they were made."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

# 2: frames may be stored as JPEG (`codec`); 1: raw uint8 frames only (still read, as codec "raw")
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
CODECS = ("raw", "jpeg")

PROFILES = ("paper", "official")
MFCC_RECIPES = ("psf", "librosa")
# what the authors' data had (their code; the paper gives none of these numbers): 12 segments
# of 16 frames, 32 librosa MFCC per 2048-sample window, hop 512, at 44.1 kHz. The `official`
# profile fixes these; it also routes the frames through JPEG at height 240 and the sound
# through an MP3 round trip (pipeline/official_video.py, pipeline/official_audio.py)
OFFICIAL = dict(segments=12, frames=16, sample_rate=44100, n_mfcc=32, nfft=2048,
                winlen=2048 / 44100, winstep=512 / 44100, mfcc="librosa")


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
    # "paper": the sources decoded directly; "official": as the authors' data (OFFICIAL above)
    profile: str = "paper"
    # MFCC recipe: python_speech_features' ("psf") or librosa's (pipeline/mfcc_librosa.py,
    # whose window is nfft samples: winlen must be nfft / sample_rate)
    mfcc: str = "psf"

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

        if self.mfcc not in MFCC_RECIPES:
            raise ValueError(f"mfcc must be one of {', '.join(MFCC_RECIPES)}, got {self.mfcc!r}")
        if self.mfcc == "librosa" and round(self.winlen * self.sample_rate) != self.nfft:
            raise ValueError(f"the librosa MFCC's window is nfft ({self.nfft}) samples: winlen must "
                             f"be nfft / sample_rate ({self.nfft / self.sample_rate:.7f} s), got "
                             f"{self.winlen} s")
        if self.profile not in PROFILES:
            raise ValueError(f"profile must be one of {', '.join(PROFILES)}, got {self.profile!r}")
        if self.profile == "official":
            wrong = [f"{k} {getattr(self, k)} (needs {v:.7g})" if isinstance(v, float)
                     else f"{k} {getattr(self, k)} (needs {v})"
                     for k, v in OFFICIAL.items() if not _same(getattr(self, k), v)]
            if wrong:
                raise ValueError("profile official fixes what the authors' data had; "
                                 f"these differ: {'; '.join(wrong)}")

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


def _same(a, b) -> bool:
    return abs(a - b) <= 1e-9 * abs(b) if isinstance(b, float) else a == b


def official_params(**changes) -> PreprocessParams:
    """The `official` profile's parameters, with `changes` on top (any that OFFICIAL fixes
    must keep its value)."""
    return PreprocessParams(**{**OFFICIAL, "profile": "official", **changes})
