"""Checkpoints of the authors' VAANet code <-> our VAANet (official preset).

The authors' training script saves {'epoch', 'state_dict', 'optimizer'}; the state dict of the
audio-visual model has 792 entries under these module names (docs/reference.md, "Authors'
checkpoint"), which map onto ours prefix for prefix (the layers below each prefix have the
same names on both sides):

    resnet.0 / .1 / .4-.7      backbone.conv1 / bn1 / layer1-layer4   (Hara's 3D ResNet)
    conv0                      reduce                                 (2048 -> 512, BN, ReLU)
    sa_net, cwa_net, ta_net    spatial, channel, temporal             (conv.0, conv.1, fc)
    fc                         visual_fc                              (present, never used)
    a_resnet.0 / .1 / .4-.7    audio_backbone.conv1 / bn1 / layer1-4  (torchvision ResNet-18)
    a_fc                       audio_embed                            (512 -> 256, BN, tanh)
    aa_net                     audio_temporal
    av_fc                      classifier                             (768 -> C)

The file is read with torch.load(weights_only=True): a file carrying pickled code is refused.
"""
from __future__ import annotations

import os

import torch

from model.config import ModelConfig, preset
from model.weights import BN_COUNTER, examples, hara_layout, safe_load, strip_prefix

# (official prefix, our prefix); checked in order, first match wins
PREFIXES = [
    ("resnet.0.", "backbone.conv1."),
    ("resnet.1.", "backbone.bn1."),
    *[(f"resnet.{i + 3}.", f"backbone.layer{i}.") for i in range(1, 5)],
    ("conv0.", "reduce."),
    ("sa_net.", "spatial."),
    ("cwa_net.", "channel."),
    ("ta_net.", "temporal."),
    ("fc.", "visual_fc."),
    ("a_resnet.0.", "audio_backbone.conv1."),
    ("a_resnet.1.", "audio_backbone.bn1."),
    *[(f"a_resnet.{i + 3}.", f"audio_backbone.layer{i}.") for i in range(1, 5)],
    ("a_fc.", "audio_embed."),
    ("aa_net.", "audio_temporal."),
    ("av_fc.", "classifier."),
]

# our top-level module -> the authors' module name (for summaries)
OFFICIAL_NAMES = {ours.split(".")[0]: off.split(".")[0] for off, ours in PREFIXES}

OFFICIAL_KEYS = 792  # entries of an audio-visual checkpoint with a 3D ResNet-101


def has_official_layout(cfg: ModelConfig) -> bool:
    """Whether a model of this config has exactly the modules of the authors' VAANet."""
    return (cfg.streams == "both" and cfg.attention == {"VS", "VCW", "VT", "AT"}
            and cfg.unused_visual_fc)


def _rename(key: str, pairs) -> str | None:
    for src, dst in pairs:
        if key.startswith(src):
            return dst + key[len(src):]
    return None


def _rename_all(state: dict, pairs, problem) -> dict:
    """Every key renamed by `pairs`; keys with no pair raise ValueError(problem(those keys))."""
    out, unknown = {}, []
    for k, v in state.items():
        name = _rename(k, pairs)
        if name is None:
            unknown.append(k)
        else:
            out[name] = v
    if unknown:
        raise ValueError(problem(unknown))
    return out


def to_ours(state: dict) -> dict:
    """Official key names -> ours. Keys that belong to no known module raise ValueError."""
    return _rename_all(state, PREFIXES, lambda unknown: (
        f"{len(unknown)} keys belong to no module of the official VAANet: {examples(unknown)}; "
        f"known prefixes: {', '.join(sorted({p.split('.')[0] for p, _ in PREFIXES}))}"))


def to_official(state: dict) -> dict:
    """Our key names -> the official ones (every key must have a counterpart)."""
    return _rename_all(state, [(ours, off) for off, ours in PREFIXES], lambda unknown: (
        f"{len(unknown)} parameters have no counterpart in the official VAANet: "
        f"{examples(unknown)}"))


def read_checkpoint(path_or_state) -> tuple[dict, dict, str]:
    """-> (state dict with official names, metadata such as 'epoch', source description)."""
    if isinstance(path_or_state, (str, os.PathLike)):
        obj, source = safe_load(path_or_state), os.fspath(path_or_state)
    else:
        obj, source = path_or_state, "official state dict"
    if not isinstance(obj, dict):
        raise ValueError(f"{source}: expected the authors' checkpoint {{'epoch', 'state_dict', "
                         f"'optimizer'}} or a bare state dict, found {type(obj).__name__}")
    meta = {}
    if isinstance(obj.get("state_dict"), dict):
        meta = {k: v for k, v in obj.items() if k in ("epoch", "arch")}
        obj = obj["state_dict"]
    if obj.get("format") == "vaanet-checkpoint" or "model" in obj:
        raise ValueError(f"{source} is a vaanet training checkpoint, not one of the authors' code; "
                         "load it with `vaanet evaluate` or trainer.checkpoint.load")
    bad = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise ValueError(f"{source}: expected a state dict (name -> tensor), found non-tensor "
                         f"entries {examples(bad)}")
    return strip_prefix(obj), meta, source


def official_config(state: dict, source: str = "checkpoint", num_classes: int | None = None,
                    **overrides) -> ModelConfig:
    """The official-preset ModelConfig that fits a state dict with official names.

    Classes, visual and audio segments and the 3D ResNet depth are read from the tensors;
    `num_classes`, when given, must agree. Other fields can be overridden (e.g. crop).
    """
    needed = ["av_fc.weight", "ta_net.fc.weight", "aa_net.fc.weight", "sa_net.fc.weight"]
    absent = [k for k in needed if k not in state]
    if absent:
        raise ValueError(f"{source} is not an audio-visual VAANet checkpoint of the authors' code: "
                         f"missing {', '.join(absent)} (found {len(state)} keys, e.g. "
                         f"{examples(state, 4)})")
    found = state["av_fc.weight"].shape[0]
    if num_classes is not None and num_classes != found:
        raise ValueError(f"{source} was trained for {found} classes (av_fc.weight is "
                         f"{list(state['av_fc.weight'].shape)}), not {num_classes}")
    backbone = {k[len("backbone."):]: v for k, v in to_ours(state).items()
                if k.startswith("backbone.")}
    depth, _ = hara_layout(backbone)
    if depth is None:
        raise ValueError(f"{source}: the `resnet.*` entries are not a 3D ResNet of a known depth")
    fields = dict(num_classes=found, visual_depth=depth,
                  segments=state["ta_net.fc.weight"].shape[0],
                  audio_segments=state["aa_net.fc.weight"].shape[0])
    return preset("official", **{**fields, **overrides})


def load_official(model, path_or_state) -> dict:
    """Copy an authors' checkpoint into `model` (a VAANet built from an official-preset config).

    Strict: every entry of the file lands in the model and every entry of the model comes from the
    file (BatchNorm counters may be absent, as in files of old PyTorch versions). Otherwise raises
    ValueError listing the missing and unexpected keys in the authors' names. Returns the file's
    metadata (e.g. {'epoch': 100}).
    """
    state, meta, source = read_checkpoint(path_or_state)
    _copy(model, state, source)
    return meta


def _copy(model, state: dict, source: str) -> None:
    cfg = getattr(model, "cfg", None)
    if cfg is None or not has_official_layout(cfg):
        found = (f"attention {cfg.attention_spec}, streams {cfg.streams}, unused_visual_fc="
                 f"{cfg.unused_visual_fc}" if cfg is not None else type(model).__name__)
        raise ValueError(f"the model cannot hold an official checkpoint ({found}); build it with "
                         "preset('official'): every attention, both streams, unused_visual_fc")
    expected = to_official(model.state_dict())
    missing = [k for k in expected if k not in state and not k.endswith(BN_COUNTER)]
    unexpected = [k for k in state if k not in expected]
    shapes = [f"{k}: file {list(state[k].shape)}, model {list(expected[k].shape)}"
              for k in expected if k in state and state[k].shape != expected[k].shape]
    if missing or unexpected or shapes:
        lines = [f"{source} does not fit the model (official layout, {cfg.num_classes} classes, "
                 f"3D ResNet-{cfg.visual_depth}, {cfg.segments} visual / {cfg.audio_segments} "
                 "audio segments):",
                 f"  missing from the file: {len(missing)} keys"
                 + (f", e.g. {examples(missing)}" if missing else ""),
                 f"  unexpected in the file: {len(unexpected)} keys"
                 + (f", e.g. {examples(unexpected)}" if unexpected else "")]
        if shapes:
            lines.append(f"  shape mismatches: {len(shapes)}, e.g. " + "; ".join(shapes[:3]))
        lines.append(f"  an official audio-visual checkpoint has {OFFICIAL_KEYS} keys; this file "
                     f"has {len(state)}")
        raise ValueError("\n".join(lines))
    merged = model.state_dict()
    merged.update(to_ours(state))
    model.load_state_dict(merged, strict=True)


def build_from_official(path_or_state, num_classes: int | None = None, **overrides):
    """-> (VAANet holding the checkpoint's weights, its ModelConfig, the file's metadata)."""
    from model.vaanet import VAANet

    state, meta, source = read_checkpoint(path_or_state)
    cfg = official_config(state, source, num_classes, **overrides)
    model = VAANet(cfg)
    _copy(model, state, source)
    return model, cfg, meta


def official_state_dict(model) -> dict:
    """The model's state dict under the authors' names (what their code would save)."""
    cfg = model.cfg
    if not has_official_layout(cfg):
        raise ValueError("only the full audio-visual model (preset 'official': every attention, both "
                         f"streams, unused_visual_fc) has an official layout; got attention "
                         f"{cfg.attention_spec}, streams {cfg.streams}, "
                         f"unused_visual_fc={cfg.unused_visual_fc}")
    return to_official({k: v.detach().clone() for k, v in model.state_dict().items()})


def official_checkpoint(model, epoch: int = 0) -> dict:
    """`model` as the authors' training script saves it: {'epoch', 'state_dict', 'optimizer'}
    (the optimizer state left empty); model/ writes no files, the caller saves it."""
    return {"epoch": epoch, "state_dict": official_state_dict(model),
            "optimizer": {"state": {}, "param_groups": []}}
