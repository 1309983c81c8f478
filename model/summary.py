"""A readable architecture summary of a VAANet or a DFAN: inputs, modules and their parameter
counts.

    print(format_summary(VAANet(preset("official"))))
    print(format_summary(build_model(preset("dfan")), "dfan"))

Counts are per top-level module (with the authors' module name beside ours), so they can be
compared with the published code's: for the official preset with 8 classes they are
resnet 85,245,120, conv0 1,050,112, sa_net 770, cwa_net 262,162, ta_net 670,
a_resnet 11,167,552, a_fc 131,840, aa_net 530, av_fc 6,152 and the unused fc 4,104.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch.nn as nn

from model.official import OFFICIAL_NAMES, has_official_layout

# what each of our top-level modules is, in words
ROLES = {
    "norm": "input normalisation (no parameters)",
    "backbone": "3D ResNet, cut after layer4",
    "image_norm": "ImageNet normalisation of the middle frames (no parameters)",
    "object_backbone": "2D ResNet (ImageNet) on middle frames: object features",
    "scene_backbone": "2D ResNet (Places365) on middle frames: scene features",
    "action_reduce": "Conv1d 1x1 + BN + ReLU: action channels -> width",
    "object_reduce": "Conv1d 1x1 + BN + ReLU: object channels -> width",
    "scene_reduce": "Conv1d 1x1 + BN + ReLU: scene channels -> width",
    "action_spatial": "VS: spatial attention on the action map",
    "object_spatial": "VS: spatial attention on the object map",
    "scene_spatial": "VS: spatial attention on the scene map",
    "reduce": "Conv1d 1x1 + BN + ReLU: channel reduction",
    "spatial": "VS: spatial attention over positions",
    "channel": "VCW: channel-wise attention",
    "temporal": "VT: temporal attention over segments",
    "visual_fc": "Linear 512 -> C (kept, never used)",
    "audio_backbone": "2D ResNet-18 on MFCC segments, cut after layer4",
    "audio_embed": "Linear 512 -> 256 + BN + tanh",
    "audio_temporal": "AT: audio temporal attention",
    "classifier": "Linear: fused (or single-stream) vector -> C classes",
}


@dataclass
class Row:
    name: str
    official: str
    kind: str
    params: int
    trainable: int
    role: str


def module_rows(model: nn.Module) -> list[Row]:
    """One row per top-level module; the authors' names only when the layout is theirs."""
    official = getattr(model.cfg, "arch", "vaanet") == "vaanet" and has_official_layout(model.cfg)
    rows = []
    for name, module in model.named_children():
        params = list(module.parameters())
        rows.append(Row(name, OFFICIAL_NAMES.get(name, "-") if official else "-",
                        type(module).__name__,
                        sum(p.numel() for p in params),
                        sum(p.numel() for p in params if p.requires_grad), ROLES.get(name, "")))
    return rows


def parameter_counts(model: nn.Module, official_names: bool = False) -> dict[str, int]:
    """{top-level module: parameter count}, under our names or the authors' ones."""
    return {(r.official if official_names else r.name): r.params for r in module_rows(model)}


def _vaanet_lines(model: nn.Module, preset_name: str | None) -> list[str]:
    cfg = model.cfg
    lines = [f"VAANet  preset {preset_name or '-'}  attention {cfg.attention_spec}  "
             f"streams {cfg.streams}  classes {cfg.num_classes}"]
    if cfg.visual:
        lines.append(f"  visual input  [B, {cfg.segments}, 3, {cfg.frames}, {cfg.crop}, {cfg.crop}] "
                     f"0..255, norm {cfg.norm!r}; 3D ResNet-{cfg.visual_depth} "
                     f"{'frozen' if cfg.freeze_visual else 'trainable'}"
                     + (f" (BN {'updates in train mode' if cfg.frozen_bn_updates else 'in eval mode'})"
                        if cfg.freeze_visual else "")
                     + f"; {model.positions} positions x {cfg.visual_channels} channels per segment")
    return lines


def _dfan_lines(model: nn.Module, preset_name: str | None) -> list[str]:
    cfg = model.cfg
    lines = [f"DFAN  preset {preset_name or '-'}  attention {cfg.attention_spec}  "
             f"kinds {'+'.join(model.kinds) or '-'}  streams {cfg.streams}  classes {cfg.num_classes}"]
    if cfg.visual:
        depth = {"action": f"3D ResNet-{cfg.visual_depth} on the snippet (norm {cfg.norm!r})",
                 "object": f"ResNet-{cfg.object_depth} on the middle frame (ImageNet norm)",
                 "scene": f"ResNet-{cfg.scene_depth} on the middle frame (ImageNet norm)"}
        lines.append(f"  visual input  [B, {cfg.segments}, 3, {cfg.frames}, {cfg.crop}, {cfg.crop}] "
                     f"0..255; backbones {'frozen' if cfg.freeze_visual else 'trainable'}; "
                     f"{model.positions} positions x {cfg.dfan_width} channels per kind and segment")
        lines += [f"    {kind:<7} {depth[kind]}" for kind in model.kinds]
    return lines


def format_summary(model: nn.Module, preset_name: str | None = None) -> str:
    cfg = model.cfg
    if getattr(cfg, "arch", "vaanet") == "dfan":
        lines = _dfan_lines(model, preset_name)
    else:
        lines = _vaanet_lines(model, preset_name)
    if cfg.audio:
        lines.append(f"  audio input   [B, {cfg.audio_segments}, {cfg.audio_len}, {cfg.n_mfcc}] MFCC "
                     f"({cfg.audio_sampling} sampling); ResNet-18, first conv "
                     f"{tuple(cfg.audio_first_kernel)}")
    lines.append(f"  output        logits [B, {cfg.num_classes}] and the attention weights")
    rows = module_rows(model)
    header = f"  {'module':<16}{'official':<10}{'type':<20}{'params':>13}{'trainable':>13}  role"
    lines += ["", header, "  " + "-" * (len(header) + 10)]
    for r in rows:
        lines.append(f"  {r.name:<16}{r.official:<10}{r.kind:<20}{r.params:>13,}{r.trainable:>13,}"
                     f"  {r.role}")
    total = sum(r.params for r in rows)
    trainable = sum(r.trainable for r in rows)
    lines.append(f"  {'total':<46}{total:>13,}{trainable:>13,}")
    return "\n".join(lines)

