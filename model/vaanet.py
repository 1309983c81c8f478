"""VAANet: the visual-audio attention network (Zhao et al., AAAI 2020).

Visual stream, per segment (one k-frame snippet of each of the t segments):

    clip [3, k, crop, crop] -> 3D ResNet layer4 [C3d, k', h, w] -> mean over k' -> F0 [C3d, P]
    F  = ReLU(BN(Conv1d_{C3d->512}(F0)))        reduction, P = h*w positions (16 at 112 px)
    VS : F  <- F * spatial weights              [P]   (model/spatial_attention.py)
    VCW: F  <- F * channel weights              [512] (model/channel_attention.py)
    v_i = mean over positions of F              one 512-vector per segment
    VT : v  = mean_i(v_i * temporal weights_i)  (model/temporal_attention.py)

Audio stream, per audio segment (L MFCC frames x n_mfcc coefficients):

    [1, L, n_mfcc] -> ResNet-18 layer4 -> mean over the map -> 512
    a_j = tanh(BN(Linear_{512->256}))           one 256-vector per audio segment
    AT : a  = mean_j(a_j * audio temporal weights_j)

Fusion: logits = Linear(concat(v, a)) (768 -> C); a single stream feeds its own vector.

A switched-off attention is absent from the module tree and its dimension is averaged
uniformly, which is what its weights would be if they were all 1 (the attentions' weights have
mean 1 for VS and VCW). Segments are processed segment-major ([t, B] flattened, as in the
authors' code) so every BatchNorm sees its batch in the same order as there.

The frozen backbone (cfg.freeze_visual) gets no gradient and runs under no_grad. Its
BatchNorm layers follow cfg.frozen_bn_updates: True (official code) leaves them in the model's
mode, so in train mode they normalise with batch statistics and update their running
statistics; False (paper preset default) keeps them in eval mode, using and preserving the
pretrained statistics.

Inputs: visual [B, t, 3, k, crop, crop] uint8 or float 0..255 (normalised here by
InputNorm(cfg.norm)); audio [B, t_a, L, n_mfcc] MFCC. The input of a stream that cfg.streams
switches off is ignored (it may be None or an empty tensor).

Against the authors' code (preset "official"; tests/test_official.py re-runs their forward):
same modules, names, order of operations and BatchNorm batches, so the same logits and
attention weights in eval and in train mode, up to float rounding. Written differently but equal:
the layer4 time axis is averaged (they squeeze it, which needs it to be 1, as for 16 frames),
and the audio map is averaged (their AvgPool2d(8, 2) covers the whole 8 x 2 map). Their unused
`fc` is kept but marked requires_grad=False (it never gets a gradient there either).
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import torch
import torch.nn as nn

from model.channel_attention import ChannelAttention
from model.config import ModelConfig
from model.normalize import InputNorm
from model.resnet2d import resnet18
from model.resnet3d import resnet3d
from model.spatial_attention import SpatialAttention
from model.temporal_attention import TemporalAttention


class VAANetOutput(NamedTuple):
    logits: torch.Tensor                      # [B, C]
    spatial: Optional[torch.Tensor]           # [B, t, P]   VS weights (mean 1 over P)
    channel: Optional[torch.Tensor]           # [B, t, 512] VCW weights (mean 1 over channels)
    temporal: Optional[torch.Tensor]          # [B, t]      VT weights (ReLU, >= 0)
    audio_temporal: Optional[torch.Tensor]    # [B, t_a]    AT weights (ReLU, >= 0)


def feature_grid(crop: int) -> int:
    """Side of the 3D ResNet's layer4 map for a crop x crop input: five stride-2 stages, each
    giving ceil(size / 2) (conv1, maxpool, layer2..4). 112 -> 4, 64 -> 2."""
    for _ in range(5):
        crop = (crop + 1) // 2
    return crop


class VAANet(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        c = cfg.visual_channels
        feats = 0
        att = dict(scorer_kind=cfg.attention_scorer)
        if cfg.visual:
            self.positions = feature_grid(cfg.crop) ** 2
            self.norm = InputNorm(cfg.norm)
            self.backbone = resnet3d(cfg.visual_depth)
            self.backbone.fc = nn.Identity()  # classification head of the pretrained net: unused
            if cfg.reduce_visual:
                self.reduce = nn.Sequential(
                    nn.Conv1d(self.backbone.out_channels, c, kernel_size=1, bias=True),
                    nn.BatchNorm1d(c),
                    nn.ReLU(),
                )
            else:   # the paper: attend over the backbone's own channels
                c = self.backbone.out_channels
                self.reduce = nn.Identity()
            if "VS" in cfg.attention:
                self.spatial = SpatialAttention(c, self.positions, scale=cfg.attention_scale, **att)
            if "VCW" in cfg.attention:
                self.channel = ChannelAttention(c, self.positions, scale=cfg.attention_scale, **att)
            if "VT" in cfg.attention:
                self.temporal = TemporalAttention(c, cfg.segments, cfg.temporal_bias_init,
                                                  pool=cfg.temporal_pool, **att)
            if cfg.unused_visual_fc and cfg.audio:
                # never called (see config.py); no gradient can reach it, so it is marked frozen:
                # Adam leaves it as it is either way, and DistributedDataParallel then does not
                # wait for its gradient
                self.visual_fc = nn.Linear(c, cfg.num_classes).requires_grad_(False)
            feats += c
        if cfg.audio:
            feats += self.add_audio_stream(cfg)
        self.classifier = nn.Linear(feats, cfg.num_classes)
        self._init_visual_head()
        if cfg.visual and cfg.freeze_visual:
            self.backbone.requires_grad_(False)
            self.train(self.training)

    def add_audio_stream(self, cfg: ModelConfig) -> int:
        """audio_backbone, audio_embed and (with AT) audio_temporal; returns the feature width."""
        # stride 2 and "same" padding along the axes the first kernel spans: (7, 1) gives
        # stride (2, 1), padding (3, 0) as in the authors' code
        self.audio_backbone = resnet18(in_channels=1, first_kernel=cfg.audio_first_kernel)
        self.audio_backbone.fc = nn.Identity()
        width = cfg.audio_channels if cfg.audio_embed else self.audio_backbone.out_channels
        if cfg.audio_embed:
            self.audio_embed = nn.Sequential(
                nn.Linear(self.audio_backbone.out_channels, cfg.audio_channels),
                nn.BatchNorm1d(cfg.audio_channels),
                nn.Tanh(),
            )
        else:   # the paper: the pooled conv5 features go to AT as they are
            self.audio_embed = nn.Identity()
        if "AT" in cfg.attention:
            self.audio_temporal = TemporalAttention(width, cfg.audio_segments,
                                                    cfg.audio_temporal_bias_init,
                                                    scorer_kind=cfg.attention_scorer,
                                                    pool=cfg.temporal_pool)
        return width

    def _init_visual_head(self):
        # as the authors' code: He normal (fan_out) for the 1-D convs of the reduction and the
        # visual attentions, BN to identity (PyTorch's default)
        for name in ("reduce", "spatial", "channel", "temporal"):
            if hasattr(self, name):
                for m in getattr(self, name).modules():
                    if isinstance(m, nn.Conv1d):
                        nn.init.kaiming_normal_(m.weight, mode="fan_out")

    def train(self, mode: bool = True) -> "VAANet":
        super().train(mode)
        if self.cfg.visual and self.cfg.freeze_visual and not self.cfg.frozen_bn_updates:
            self.backbone.eval()  # frozen means frozen statistics too (paper preset)
        return self

    # ---- streams ----------------------------------------------------------------------------
    def _check(self, x: torch.Tensor, name: str, expected: tuple) -> None:
        if x is None:
            raise ValueError(f"the model uses the {name} stream (streams={self.cfg.streams!r}) "
                             f"but got {name}=None")
        if x.dim() != len(expected) + 1 or tuple(x.shape[1:]) != expected:
            raise ValueError(f"{name} input must be [B, {', '.join(map(str, expected))}], got "
                             f"{list(x.shape)}")

    def forward_visual(self, visual: torch.Tensor):
        """[B, t, 3, k, crop, crop] 0..255 -> (v [B, 512], spatial, channel, temporal)."""
        cfg = self.cfg
        self._check(visual, "visual", (cfg.segments, 3, cfg.frames, cfg.crop, cfg.crop))
        b, t = visual.shape[:2]
        x = segment_major(visual)                                       # [t*B, 3, k, crop, crop]
        x = self.norm(x)
        if cfg.freeze_visual:
            with torch.no_grad():
                f = self.backbone.features(x)
        else:
            f = self.backbone.features(x)
        f = self.reduce(f.mean(dim=2).flatten(2))                       # [t*B, 512, P]
        spatial = channel = temporal = None
        if hasattr(self, "spatial"):
            f, spatial = self.spatial(f)
            spatial = spatial.view(t, b, -1).transpose(0, 1)
        if hasattr(self, "channel"):
            f, channel = self.channel(f)
            channel = channel.view(t, b, -1).transpose(0, 1)
        v = f.mean(dim=2).view(t, b, -1).permute(1, 2, 0)               # [B, 512, t]
        if hasattr(self, "temporal"):
            v, temporal = self.temporal(v)
        else:
            v = v.mean(dim=2)
        return v, spatial, channel, temporal

    def forward_audio(self, audio: torch.Tensor):
        """[B, t_a, L, n_mfcc] -> (a [B, 256], audio temporal weights [B, t_a] or None)."""
        cfg = self.cfg
        self._check(audio, "audio", (cfg.audio_segments, cfg.audio_len, cfg.n_mfcc))
        b, ta = audio.shape[:2]
        x = audio.float().transpose(0, 1).reshape(ta * b, 1, *audio.shape[2:])  # segment-major
        x = self.audio_backbone.features(x).mean(dim=(2, 3))             # [t_a*B, 512]
        a = self.audio_embed(x).view(ta, b, -1).permute(1, 2, 0)         # [B, 256, t_a]
        if hasattr(self, "audio_temporal"):
            return self.audio_temporal(a)
        return a.mean(dim=2), None

    def forward(self, visual: torch.Tensor | None = None,
                audio: torch.Tensor | None = None) -> VAANetOutput:
        """The streams cfg switches on, fused. DFAN runs this method as it is: its
        forward_visual returns the same (v, spatial, channel, temporal) tuple."""
        feats, spatial, channel, temporal, audio_temporal = [], None, None, None, None
        if self.cfg.visual:
            v, spatial, channel, temporal = self.forward_visual(visual)
            feats.append(v)
        if self.cfg.audio:
            a, audio_temporal = self.forward_audio(audio)
            feats.append(a)
        logits = self.classifier(torch.cat(feats, dim=1))
        return VAANetOutput(logits, spatial, channel, temporal, audio_temporal)


def segment_major(visual: torch.Tensor) -> torch.Tensor:
    """[B, t, C, k, H, W] -> [t*B, C, k, H, W] (segment-major). A clip stored channels-last
    ([B, t, k, H, W, C] in memory, as trainer.loader hands it over for channels-last models)
    stays channels-last (torch.channels_last_3d) through the one copy the reordering needs."""
    b, t, c = visual.shape[:3]
    if visual.stride(2) == 1 and c > 1:
        x = visual.permute(1, 0, 3, 4, 5, 2).reshape(t * b, *visual.shape[3:], c)
        return x.permute(0, 4, 1, 2, 3)
    return visual.transpose(0, 1).reshape(t * b, *visual.shape[2:])

