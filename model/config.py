"""Every architecture choice of VAANet (and of its sibling DFAN) in one plain dataclass, plus
the named presets.

The "paper" preset takes the paper's stated values; where the paper is silent it takes the
authors' code (docs/provenance.md lists every element and its source). Every place where
"paper" departs from the paper's equations is a field here, so `--config` can switch to the
literal text: attention_scorer "linear" (no BN + tanh), attention_scale False (no x P / x C),
temporal_pool "sum", reduce_visual False (no 2048 -> 512), audio_embed False (no 512 -> 256
tanh), temporal_bias_init None. Where the authors' code differs from the paper in what it
states (segments, frozen backbone, audio cut), the "official" preset sets the code's value, so
that a checkpoint trained by that code loads strictly and gives the same logits.

    cfg = preset("paper", attention="VS+VCW+VT", num_classes=6)
    cfg = preset("official")          # the authors' code, for their checkpoints
    cfg = preset("demo")              # tiny, trains on a laptop CPU in minutes
    cfg = preset("dfan")              # DFAN (Qiu et al., ICME 2020), our reading: model/dfan.py
    cfg = preset("dfan-demo")         # tiny DFAN, same data sizes as "demo"

`arch` picks the network ("vaanet" or "dfan"; model/build.py builds either). The DFAN fields
(object_depth, scene_depth, dfan_width, dfan_kinds) are read only when arch == "dfan"; the
shared fields keep their meaning there (segments, frames, crop, visual_depth for the action
stream, freeze_visual for all three visual backbones, the audio fields for its optional audio
stream). DFAN has spatial (VS) and temporal (VT) attention, plus AT with audio, but no VCW.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

# the four attention modules of the paper, in the order they act
ATTENTIONS = ("VS", "VCW", "VT", "AT")
VISUAL_ATTENTIONS = frozenset({"VS", "VCW", "VT"})
STREAMS = ("visual", "audio", "both")
NORMS = ("hara", "official")
AUDIO_SAMPLINGS = ("paper", "aligned", "official")
SCORERS = ("bn_tanh", "linear")
TEMPORAL_POOLS = ("mean", "sum")
VISUAL_DEPTHS = (10, 18, 34, 50, 101, 152)
ARCHS = ("vaanet", "dfan")
# DFAN's three visual feature kinds, in the order they are concatenated
DFAN_KINDS = ("action", "object", "scene")
IMAGE_DEPTHS = (18, 34, 50)  # 2D ResNets for the object and scene streams


def parse_kinds(spec) -> tuple:
    """'action+scene' (or ',' separated, or a list) -> ('action', 'scene') in DFAN_KINDS order.

    An unknown name or an empty set raises ValueError listing the valid names.
    """
    parts = spec.replace(",", "+").split("+") if isinstance(spec, str) else list(spec)
    names = set()
    for part in parts:
        name = str(part).strip().lower()
        if name not in DFAN_KINDS:
            raise ValueError(f"unknown DFAN feature kind {str(part).strip()!r} in {spec!r}: valid "
                             f"kinds are {', '.join(DFAN_KINDS)} joined with '+' (e.g. "
                             "'action+object+scene')")
        names.add(name)
    if not names:
        raise ValueError(f"DFAN needs at least one feature kind of {', '.join(DFAN_KINDS)}, "
                         f"got {spec!r}")
    return tuple(k for k in DFAN_KINDS if k in names)


def parse_attention(spec) -> frozenset:
    """'VS+VCW+VT+AT' (any case, '+' or ',' separated) -> frozenset({'VS','VCW','VT','AT'}).

    'none' or '' selects no attention at all (every dimension pooled uniformly). A frozenset or
    list of names is accepted too, so a parsed value can be passed again.
    """
    if isinstance(spec, (set, frozenset, list, tuple)):
        parts = [str(p) for p in spec]
    else:
        text = str(spec).strip()
        if text.lower() in ("", "none"):
            return frozenset()
        parts = text.replace(",", "+").split("+")
    names = set()
    for part in parts:
        name = part.strip().upper()
        if name not in ATTENTIONS:
            raise ValueError(f"unknown attention {part.strip()!r} in {spec!r}: valid names are "
                             f"{', '.join(ATTENTIONS)} joined with '+' (e.g. 'VS+VCW+VT+AT'), "
                             "or 'none'")
        names.add(name)
    return frozenset(names)


def format_attention(attention) -> str:
    """The canonical spec string of a set of attentions: 'VS+VCW+VT+AT' order, 'none' if empty."""
    names = [a for a in ATTENTIONS if a in attention]
    return "+".join(names) if names else "none"


def streams_for(attention) -> str:
    """Which streams the paper's ablation table uses for an attention set.

    AT alone is the audio stream alone; VS, VS+VCW and VS+VCW+VT are the visual stream alone;
    visual attention plus AT uses both. With no attention at all both streams are used.
    """
    has_visual = bool(attention & VISUAL_ATTENTIONS)
    has_audio = "AT" in attention
    if has_visual and not has_audio:
        return "visual"
    if has_audio and not has_visual:
        return "audio"
    return "both"


@dataclass(frozen=True)
class ModelConfig:
    # "vaanet" (model/vaanet.py) or "dfan" (model/dfan.py)
    arch: str = "vaanet"
    num_classes: int = 8
    # which attention modules exist; a switched-off one is absent and its dimension is averaged
    attention: frozenset = field(default_factory=lambda: frozenset(ATTENTIONS))
    # "visual", "audio" or "both"; None derives it from `attention` as the paper's ablation does
    streams: str | None = None

    # visual stream: t segments, one snippet of k frames each, crop x crop pixels
    visual_depth: int = 101
    segments: int = 10
    frames: int = 16
    crop: int = 112
    # the backbone's channels are reduced to this by Conv1d(k=1) + BN + ReLU (authors' code;
    # the paper attends over the backbone's own n channels: reduce_visual False)
    visual_channels: int = 512
    reduce_visual: bool = True
    # paper: trained end to end; the official code freezes the backbone (no gradient)
    freeze_visual: bool = False
    # the official code's frozen backbone still sits in train mode: its BatchNorm normalises
    # with batch statistics and updates its running statistics. False keeps a frozen backbone
    # in eval mode (running statistics used, never changed). No effect when not frozen.
    frozen_bn_updates: bool = False
    # input normalisation: "hara" (0..255 minus the ActivityNet mean, for Hara's Kinetics
    # weights) or "official" (x/255 - 100/255 as in the authors' code)
    norm: str = "hara"

    # audio stream: t_a segments of audio_len MFCC frames (time x n_mfcc) through a ResNet-18
    audio_depth: int = 18
    audio_segments: int = 10
    # audio_len MFCC frames per audio segment; the paper mode's centre crop q is
    # audio_segments * audio_len (audio_crop, when given, sets it and audio_len follows)
    audio_len: int = 480
    audio_crop: int | None = None
    n_mfcc: int = 32
    # 512 -> audio_channels Linear + BN + tanh per audio segment (authors' code; the paper feeds
    # the pooled 512 conv5 features to AT: audio_embed False)
    audio_channels: int = 256
    audio_embed: bool = True
    # the ResNet-18's first conv on the 1-channel MFCC image: (7, 1) with stride (2, 1) and
    # padding (3, 0) in the authors' code (the paper does not say), so it never mixes
    # coefficients; a square 7 gives torchvision's 7x7 / stride 2 / padding 3 instead
    audio_first_kernel: tuple = (7, 1)
    # "paper": the whole soundtrack's MFCC centre-cropped to q = audio_segments * audio_len
    # frames (tiled when shorter), split into audio_segments equal parts (the paper, "Audio
    # Representation Extraction"; q is not given there: 10 x 480 = 4800 frames = 48 s at the
    # default 10 ms hop, as the authors' code's 4096 x 512 / 44100 = 47.5 s);
    # "official": 4096 frames tiled or cut from the start, then split (the authors' loader);
    # "aligned": this project's windows of audio_len frames centred on the visual segments
    audio_sampling: str = "paper"

    # the attention scorers: "bn_tanh" Conv1d + BN + tanh (authors' code) or "linear" (the
    # paper's Eq. 2, 4, 7); softmax weights x P (VS) and x C (VCW) so they average 1 (authors'
    # code; the paper has none); temporal pooling "mean" (authors' code) or "sum" (Eq. 9)
    attention_scorer: str = "bn_tanh"
    attention_scale: bool = True
    temporal_pool: str = "mean"

    # temporal attention Linear bias at init; the official code sets 1.0 for the visual one and
    # leaves PyTorch's default (None here) for the audio one
    temporal_bias_init: float | None = 1.0
    audio_temporal_bias_init: float | None = 1.0
    # the official audio-visual model carries a Linear(512, C) `fc` it never uses; kept in the
    # official preset so its checkpoints load strictly and parameter counts match
    unused_visual_fc: bool = False

    # DFAN only (arch="dfan"): 2D ResNets on the middle frame of each snippet for the object
    # (ImageNet weights) and scene (Places365 weights) streams; the action stream is the 3D
    # ResNet of visual_depth. Each kind is reduced to dfan_width channels; dfan_kinds ablates them.
    object_depth: int = 50
    scene_depth: int = 50
    dfan_width: int = 512
    dfan_kinds: tuple = DFAN_KINDS

    def __post_init__(self):
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 (frozen dataclass)
        set_("attention", parse_attention(self.attention))
        kernel = self.audio_first_kernel
        set_("audio_first_kernel", (kernel, kernel) if isinstance(kernel, int) else tuple(kernel))
        set_("dfan_kinds", parse_kinds(self.dfan_kinds))
        if self.audio_crop is not None:
            if self.audio_crop <= 0 or self.audio_crop % self.audio_segments:
                raise ValueError(f"audio_crop (q = {self.audio_crop}) must be a positive multiple "
                                 f"of audio_segments ({self.audio_segments})")
            set_("audio_len", self.audio_crop // self.audio_segments)
        for name, allowed in (("attention_scorer", SCORERS), ("temporal_pool", TEMPORAL_POOLS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}, "
                                 f"got {getattr(self, name)!r}")
        if self.arch not in ARCHS:
            raise ValueError(f"arch must be one of {', '.join(ARCHS)}, got {self.arch!r}")
        if self.arch == "dfan":
            if "VCW" in self.attention:
                raise ValueError("DFAN has no channel-wise attention (VCW): its attentions are VS "
                                 f"(spatial), VT (temporal) and AT (audio); got {self.attention_spec}")
            for name in ("object_depth", "scene_depth"):
                if getattr(self, name) not in IMAGE_DEPTHS:
                    raise ValueError(f"{name} must be one of {IMAGE_DEPTHS} (2D ResNet), "
                                     f"got {getattr(self, name)!r}")
            if self.dfan_width <= 0:
                raise ValueError(f"dfan_width must be positive, got {self.dfan_width}")
        if self.streams is None:
            set_("streams", streams_for(self.attention))
        if self.streams not in STREAMS:
            raise ValueError(f"streams must be one of {', '.join(STREAMS)}, got {self.streams!r}")
        if self.streams == "visual" and "AT" in self.attention:
            raise ValueError("attention AT needs the audio stream, but streams='visual'")
        if self.streams == "audio" and self.attention & VISUAL_ATTENTIONS:
            raise ValueError(f"attention {format_attention(self.attention & VISUAL_ATTENTIONS)} "
                             "needs the visual stream, but streams='audio'")
        if self.visual_depth not in VISUAL_DEPTHS:
            raise ValueError(f"visual_depth must be one of {VISUAL_DEPTHS}, got {self.visual_depth}")
        if self.audio_depth != 18:
            raise ValueError(f"audio_depth must be 18 (ResNet-18), got {self.audio_depth}")
        if self.norm not in NORMS:
            raise ValueError(f"norm must be one of {', '.join(NORMS)}, got {self.norm!r}")
        if self.audio_sampling not in AUDIO_SAMPLINGS:
            raise ValueError(f"audio_sampling must be one of {', '.join(AUDIO_SAMPLINGS)}, "
                             f"got {self.audio_sampling!r}")
        for name in ("num_classes", "segments", "frames", "crop", "visual_channels",
                     "audio_segments", "audio_len", "n_mfcc", "audio_channels"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")

    @property
    def visual(self) -> bool:
        return self.streams in ("visual", "both")

    @property
    def audio(self) -> bool:
        return self.streams in ("audio", "both")

    @property
    def attention_spec(self) -> str:
        return format_attention(self.attention)

    def replace(self, **changes) -> "ModelConfig":
        """A copy with changes; a new attention set re-derives streams unless streams is given."""
        if "attention" in changes and "streams" not in changes:
            changes["streams"] = None
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["attention"] = format_attention(self.attention)
        d["audio_first_kernel"] = list(self.audio_first_kernel)
        d["dfan_kinds"] = list(self.dfan_kinds)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown model config keys {unknown}; known: {sorted(names)}")
        return cls(**d)


PRESETS = {
    # the paper's stated settings: t = 10, k = 16, 112 px, backbone trained end to end
    "paper": dict(),
    # exactly the authors' published code
    "official": dict(segments=12, audio_segments=16, audio_len=256, freeze_visual=True,
                     frozen_bn_updates=True, norm="official", audio_sampling="official",
                     audio_temporal_bias_init=None, unused_visual_fc=True),
    # tiny: matches `vaanet preprocess --dataset demo` (4 segments x 8 frames, 64 px)
    "demo": dict(num_classes=4, visual_depth=10, segments=4, frames=8, crop=64,
                 audio_segments=4, audio_len=64),
    # DFAN (our reading of the abstract, model/dfan.py): action (3D ResNet-101), object (ResNet-50,
    # ImageNet) and scene (ResNet-50, Places365) features of frozen backbones, spatial and
    # temporal attention, visual only; t = 10, k = 16, 112 px as the VAANet paper preset
    "dfan": dict(arch="dfan", attention="VS+VT", freeze_visual=True),
    # tiny DFAN with the data sizes of "demo"
    "dfan-demo": dict(arch="dfan", attention="VS+VT", freeze_visual=True, num_classes=4,
                      visual_depth=10, object_depth=18, scene_depth=18, segments=4, frames=8,
                      crop=64, audio_segments=4, audio_len=64),
}


def preset(name: str, **overrides) -> ModelConfig:
    """The named preset ("paper", "official", "demo", "dfan", "dfan-demo") with some fields
    overridden.

    A new `attention` re-derives `streams` unless `streams` is given too.
    """
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}: choose one of {', '.join(PRESETS)}")
    fields = {f.name for f in dataclasses.fields(ModelConfig)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ValueError(f"unknown model config fields {unknown}; known: {sorted(fields)}")
    return ModelConfig(**{**PRESETS[name], **overrides})


# the fields that make "paper" follow the paper's equations literally where it takes the authors'
# code (docs/provenance.md); as a run config: {"model": PAPER_LITERAL}
PAPER_LITERAL = dict(attention_scorer="linear", attention_scale=False, temporal_pool="sum",
                     reduce_visual=False, audio_embed=False, temporal_bias_init=None,
                     audio_temporal_bias_init=None)
