"""DFAN: the dual focus attention network (Qiu, He, Wang, ICME 2020), as we read its abstract.

No code of DFAN is public, only the abstract: three kinds of visual features (action, object,
scene) are extracted per frame / snippet; a temporal attention module picks the most emotional
snippets and a spatial attention module the most emotional cues inside each frame. Its
accuracy, VE-8 53.3 and E-6 57.3, is second-hand: reported in the comparison table of CTEN
(CVPR 2023), not in DFAN's abstract. Everything below the abstract is OUR READING,
built from VAANet's blocks so that both networks share data, trainer and ablation tools:

    per segment i (one k-frame snippet of each of the t segments), for each kind in cfg.dfan_kinds:
    action: snippet [3, k, crop, crop] -> 3D ResNet (visual_depth, Hara, Kinetics) layer4
            -> mean over time -> [C3d, P]
    object: middle frame [3, crop, crop] -> 2D ResNet (object_depth, ImageNet) layer4 -> [C2d, P]
    scene:  middle frame [3, crop, crop] -> 2D ResNet (scene_depth, Places365) layer4 -> [C2d, P]
    F_kind   = ReLU(BN(Conv1d_{C->W}(map)))           1x1 reduction to W = dfan_width channels
    VS:  F_kind <- F_kind * spatial weights_kind      one SpatialAttention per kind, [P], mean 1
    s_kind_i = mean over positions of F_kind           W-vector per kind and segment
    s_i      = concat_kind(s_kind_i)                   K*W per segment (K kinds)
    VT:  v   = mean_i(s_i * temporal weights_i)        one TemporalAttention over the t segments
    AT (optional, cfg.streams "both"): the audio stream of VAANet, unchanged -> a [256]
    logits = Linear(concat(v, a)) -> C

Assumptions (ours, since the paper's details are not public):
- Features per segment, not per video frame: the action kind needs a snippet, so the object and
  scene kinds look at the snippet's middle frame (index k // 2) and all three share the segment
  index that temporal attention weights. The frames are the loader's crop (112 px in the paper
  preset), so the 2D nets see 112 px rather than ImageNet's 224; their layer4 map has the same
  grid as the 3D net's (5 stride-2 stages: 4 x 4 at 112 px, 2 x 2 at 64 px), P positions.
- Backbones: 3D ResNet-101 (Hara, Kinetics; the "action" features, as VAANet), ResNet-50
  ImageNet (objects) and ResNet-50 Places365 (scenes), the usual sources of these three
  feature kinds. "Extracted" features: the backbones are frozen by default (freeze_visual=True
  in the dfan presets, no gradient, BatchNorm in eval mode unless frozen_bn_updates) and
  trainable by option (freeze_visual=False applies to all three).
- Spatial attention ("cues inside each frame") is VAANet's VS, one per kind: what is salient
  in the scene map need not be where the action is. No channel-wise attention (not in the
  abstract); the config refuses VCW for DFAN.
- Temporal attention runs once, on the concatenated kinds, not once per kind: the abstract's
  module selects snippets, i.e. one weight per snippet judged from all its cues together,
  which also keeps a single [B, t] weight vector (the same output as VAANet's VT) and lets the
  kinds reinforce each other when a snippet is emotional in one of them only.
- Fusion by concatenation and one Linear (as VAANet); dropout is not used.
- Audio is off in the paper-size preset (the abstract mentions visual features only); with
  attention "...+AT" (streams "both") the audio stream is exactly VAANet's.
- Normalisation inside the model: cfg.norm ("hara") for the 3D stream, ImageNet's mean/std for
  both 2D streams (the official Places365 models use the same transform).

Output: the VAANetOutput of model/vaanet.py with logits [B, C]; spatial [B, t, K, P] (one map
per kind, in dfan_kinds order) or None; channel None; temporal [B, t] or None; audio_temporal
[B, t_a] or None. A switched-off attention or kind is absent from the module tree; a
switched-off attention's dimension is averaged uniformly, as in VAANet.

Module names: `backbone` is the action 3D ResNet (so Hara weights load as for VAANet),
`object_backbone`, `scene_backbone` the 2D ResNets; `{kind}_reduce`, `{kind}_spatial`,
`temporal`, then VAANet's `audio_backbone`, `audio_embed`, `audio_temporal`, and `classifier`.
Pretrained weights: model/weights.py load_dfan.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from model.config import ModelConfig
from model.normalize import InputNorm
from model.resnet2d import resnet2d
from model.resnet3d import resnet3d
from model.spatial_attention import SpatialAttention
from model.temporal_attention import TemporalAttention
from model.vaanet import VAANet, feature_grid

# kind -> the attribute holding its backbone
BACKBONES = {"action": "backbone", "object": "object_backbone", "scene": "scene_backbone"}


class DFAN(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        if cfg.arch != "dfan":
            raise ValueError(f"DFAN needs a config with arch='dfan' (e.g. preset('dfan')), "
                             f"got arch={cfg.arch!r}")
        self.cfg = cfg
        self.kinds = cfg.dfan_kinds if cfg.visual else ()
        w = cfg.dfan_width
        feats = 0
        if cfg.visual:
            self.positions = feature_grid(cfg.crop) ** 2
            if "action" in self.kinds:
                self.norm = InputNorm(cfg.norm)
                self.backbone = resnet3d(cfg.visual_depth)
            if {"object", "scene"} & set(self.kinds):
                self.image_norm = InputNorm("imagenet", channel_dim=-3)
            if "object" in self.kinds:
                self.object_backbone = resnet2d(cfg.object_depth, in_channels=3)
            if "scene" in self.kinds:
                self.scene_backbone = resnet2d(cfg.scene_depth, in_channels=3)
            for kind in self.kinds:
                net = getattr(self, BACKBONES[kind])
                net.fc = nn.Identity()  # classification head of the pretrained net: unused
                setattr(self, f"{kind}_reduce", nn.Sequential(
                    nn.Conv1d(net.out_channels, w, kernel_size=1, bias=True),
                    nn.BatchNorm1d(w),
                    nn.ReLU(),
                ))
            if "VS" in cfg.attention:
                for kind in self.kinds:
                    setattr(self, f"{kind}_spatial", SpatialAttention(w, self.positions))
            if "VT" in cfg.attention:
                self.temporal = TemporalAttention(w * len(self.kinds), cfg.segments,
                                                  cfg.temporal_bias_init)
            feats += w * len(self.kinds)
        if cfg.audio:  # VAANet's audio stream, module for module
            feats += VAANet.add_audio_stream(self, cfg)
        self.classifier = nn.Linear(feats, cfg.num_classes)
        # He normal (fan_out) for the 1-D convs of reductions and attentions, as VAANet's head
        for name, module in self.named_children():
            if name.endswith(("_reduce", "_spatial")) or name == "temporal":
                for m in module.modules():
                    if isinstance(m, nn.Conv1d):
                        nn.init.kaiming_normal_(m.weight, mode="fan_out")
        if cfg.freeze_visual:
            for net in self.backbones():
                net.requires_grad_(False)
            self.train(self.training)

    def backbones(self) -> list[nn.Module]:
        """The visual backbones present, in dfan_kinds order."""
        return [getattr(self, BACKBONES[kind]) for kind in self.kinds]

    def train(self, mode: bool = True) -> "DFAN":
        super().train(mode)
        if self.cfg.freeze_visual and not self.cfg.frozen_bn_updates:
            for net in self.backbones():
                net.eval()  # frozen means frozen statistics too
        return self

    # the audio stream, the input checks and the fusion are VAANet's own code
    _check = VAANet._check
    forward_audio = VAANet.forward_audio
    forward = VAANet.forward

    # ---- visual streams ---------------------------------------------------------------------
    def _backbone_map(self, kind: str, x: torch.Tensor, frame: torch.Tensor | None) -> torch.Tensor:
        """The layer4 map of one kind as [N, C, P]; x: snippets [N, 3, k, H, W] 0..255,
        frame: the ImageNet-normalised middle frames [N, 3, H, W]."""
        frozen = self.cfg.freeze_visual
        with torch.set_grad_enabled(torch.is_grad_enabled() and not frozen):
            if kind == "action":
                f = self.backbone.features(self.norm(x)).mean(dim=2)   # time averaged
            else:
                f = getattr(self, BACKBONES[kind]).features(frame)
        return f.flatten(2)

    def forward_visual(self, visual: torch.Tensor):
        """[B, t, 3, k, crop, crop] 0..255 -> (v [B, K*W], spatial [B, t, K, P] or None, None,
        temporal [B, t] or None): VAANet.forward_visual's tuple, with no channel weights."""
        cfg = self.cfg
        self._check(visual, "visual", (cfg.segments, 3, cfg.frames, cfg.crop, cfg.crop))
        b, t = visual.shape[:2]
        x = visual.transpose(0, 1).reshape(t * b, *visual.shape[2:])   # segment-major [t*B, ...]
        frame = None
        if hasattr(self, "image_norm"):
            frame = self.image_norm(x[:, :, cfg.frames // 2])          # middle frame [t*B, 3, H, W]
        vectors, maps = [], []
        for kind in self.kinds:
            f = getattr(self, f"{kind}_reduce")(self._backbone_map(kind, x, frame))  # [t*B, W, P]
            if hasattr(self, f"{kind}_spatial"):
                f, weights = getattr(self, f"{kind}_spatial")(f)
                maps.append(weights)
            vectors.append(f.mean(dim=2))
        v = torch.cat(vectors, dim=1).view(t, b, -1).permute(1, 2, 0)  # [B, K*W, t]
        spatial = torch.stack(maps, dim=1).view(t, b, len(maps), -1).transpose(0, 1) if maps else None
        if hasattr(self, "temporal"):
            v, temporal = self.temporal(v)
        else:
            v, temporal = v.mean(dim=2), None
        return v, spatial, None, temporal
