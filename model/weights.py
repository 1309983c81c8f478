"""Pretrained weight import: Hara's 3D ResNets, torchvision's ImageNet ResNets (18 for audio;
18/34/50 for DFAN's object stream) and Places365's torchvision-layout ResNets (DFAN's scene stream).

All files are read with `safe_load`, i.e. torch.load(weights_only=True): tensors and plain
containers only. A file that carries pickled code (an object whose unpickling would call a
function) is refused with a clear error, and that code never runs.

Loading is strict: every parameter and buffer of the model comes from the file and every entry of
the file lands in the model, except what the caller lets go explicitly:
- the classifier `fc` (Kinetics-400 / ImageNet-1000 / Places-365 classes) is skipped unless
  keep_fc=True;
  the features VAANet uses stop at layer4;
- BatchNorm `num_batches_tracked` counters may be absent: files saved before PyTorch 0.4.1
  (Hara's release, torchvision's first ResNet files) lack them, and they change no output;
- load_torchvision(first_conv="fresh") leaves the first convolution out on purpose.
Anything else (a depth mismatch, a wrong shape) raises an error listing the missing and
unexpected keys. Every loader returns a LoadReport of what it did.
"""
from __future__ import annotations

import os
import pickle
import re
from dataclasses import dataclass, field

import torch
import torch.nn as nn

from model.resnet2d import ARCHS as ARCHS2D, Bottleneck as Bottleneck2D
from model.resnet3d import ARCHS as ARCHS3D, Bottleneck

BN_COUNTER = "num_batches_tracked"


class UnsafeFileError(ValueError):
    """The file holds pickled code (not only tensors and containers); it was not executed."""


def safe_load(path):
    """torch.load(path, map_location="cpu", weights_only=True), with errors that say what happened."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no such weight file: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r"GLOBAL ([\w.]+)", str(e))
        if found is None:
            raise ValueError(f"cannot read {path} as a PyTorch weight file: {str(e).splitlines()[0]}") from None
        raise UnsafeFileError(
            f"refused: the file contains pickled code ({found.group(1)}) that loading would run: {path}. "
            "Only tensors and plain containers are accepted (torch.load weights_only=True). If the file "
            "comes from a source you trust, re-save just its state dict: "
            "torch.save(torch.load(path, weights_only=False)['state_dict'], new_path)") from None
    except Exception as e:  # not a torch file, truncated, ...: the unpickler fails in many ways
        raise ValueError(f"cannot read {path} as a PyTorch weight file: {type(e).__name__}: {e}") from e


def strip_prefix(state: dict, prefix: str = "module.") -> dict:
    """Drop `prefix` (DataParallel's `module.`) from the keys that carry it."""
    return {(k[len(prefix):] if k.startswith(prefix) else k): v for k, v in state.items()}


@dataclass
class LoadReport:
    source: str
    loaded: list[str] = field(default_factory=list)   # model entries now holding the file's values
    skipped: list[str] = field(default_factory=list)  # file entries not used (on request)
    kept: list[str] = field(default_factory=list)     # model entries left as they were
    notes: list[str] = field(default_factory=list)

    def __str__(self):
        lines = [f"{self.source}: loaded {len(self.loaded)} entries, skipped {len(self.skipped)} from the file"
                 + (f" ({examples(self.skipped)})" if self.skipped else "")
                 + f", kept {len(self.kept)} of the model" + (f" ({examples(self.kept)})" if self.kept else "")]
        return "\n".join(lines + [f"  note: {n}" for n in self.notes])


def examples(keys, n: int = 4) -> str:
    keys = list(keys)
    return ", ".join(keys[:n]) + (f", ... (+{len(keys) - n})" if len(keys) > n else "")


def _matches(key: str, prefixes) -> bool:
    return any(key == p or key.startswith(p) for p in prefixes)


def copy_state(model: nn.Module, state: dict, *, skip=(), keep=(), source: str = "state dict",
               hint: str = "") -> LoadReport:
    """Strictly copy `state` into `model`.

    skip: key prefixes of the file not to load; keep: key prefixes of the model to leave as they are.
    Missing BatchNorm counters are allowed. Anything else that does not match raises ValueError
    listing the missing and unexpected keys and the shape mismatches (plus `hint`).
    """
    target = model.state_dict()
    missing = [k for k in target if k not in state and not _matches(k, keep) and not k.endswith(BN_COUNTER)]
    unexpected = [k for k in state if k not in target and not _matches(k, skip)]
    shapes = [f"{k}: file {tuple(state[k].shape)}, model {tuple(target[k].shape)}" for k in target
              if k in state and not _matches(k, skip) and not _matches(k, keep)
              and tuple(state[k].shape) != tuple(target[k].shape)]
    if missing or unexpected or shapes:
        def listing(keys):
            return f"{len(keys)} keys" + (f", e.g. {examples(keys)}" if keys else "")
        msg = [f"{source} does not fit {_describe(model)}:",
               f"  missing from the file: {listing(missing)}",
               f"  unexpected in the file: {listing(unexpected)}"]
        if shapes:
            msg.append(f"  shape mismatches: {len(shapes)}, e.g. " + "; ".join(shapes[:3]))
        if hint:
            msg.append(hint)
        raise ValueError("\n".join(msg))

    report = LoadReport(source=source)
    merged, counters = dict(target), 0
    for k in target:
        if k in state and not _matches(k, skip) and not _matches(k, keep):
            merged[k] = state[k]
            report.loaded.append(k)
        elif k.endswith(BN_COUNTER) and not _matches(k, keep):
            counters += 1
        else:
            report.kept.append(k)
    report.skipped = [k for k in state if _matches(k, skip)]
    if counters:
        report.notes.append(f"{counters} BatchNorm num_batches_tracked counters not in the file "
                            "(saved before PyTorch 0.4.1); left as they were")
    model.load_state_dict(merged, strict=True)
    return report


def _describe(model: nn.Module) -> str:
    if hasattr(model, "shortcut"):
        return f"{type(model).__name__}(depth={model.depth}, shortcut={model.shortcut!r})"
    if hasattr(model, "depth"):
        return f"{type(model).__name__}(depth={model.depth}, in_channels={getattr(model, 'in_channels', '?')})"
    return type(model).__name__


def _unwrap(path_or_state, what: str):
    """-> (state dict, the enclosing dict's metadata or {}, source name)."""
    if isinstance(path_or_state, (str, os.PathLike)):
        obj, source = safe_load(path_or_state), os.fspath(path_or_state)
    else:
        obj, source = path_or_state, f"{what} state dict"
    if not isinstance(obj, dict):
        raise ValueError(f"{source}: expected a state dict or a dict with 'state_dict', "
                         f"found {type(obj).__name__}")
    meta = {}
    if "state_dict" in obj and isinstance(obj["state_dict"], dict):
        meta, obj = {k: v for k, v in obj.items() if k != "state_dict"}, obj["state_dict"]
    bad = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise ValueError(f"{source}: expected a state dict (name -> tensor) or a dict with 'state_dict'; "
                         f"found non-tensor entries {examples(bad)}")
    return strip_prefix(obj), meta, source


# ---- Hara et al. 3D ResNets ---------------------------------------------------------------------

def hara_layout(state: dict):
    """Guess (depth or None, shortcut) of a Hara state dict from its keys (prefix stripped)."""
    blocks = [len({k.split(".")[1] for k in state if k.startswith(f"layer{i}.")}) for i in range(1, 5)]
    bottleneck = any(".conv3." in k for k in state)
    depth = next((d for d, (block, layers) in ARCHS3D.items()
                  if layers == blocks and (block is Bottleneck) == bottleneck), None)
    return depth, "B" if any(".downsample." in k for k in state) else "A"


def load_hara(model: nn.Module, path_or_state, keep_fc: bool = False) -> LoadReport:
    """Load Hara's Kinetics (or any of their release's) weights into a ResNet3D.

    path_or_state: a file path, a dict {'epoch', 'arch', 'state_dict', ...}, or a bare state dict;
    keys with or without `module.`. `arch` (e.g. 'resnet-101') must name the model's depth.
    keep_fc=False skips the 400-class fc (the model's own fc stays as initialised).
    """
    state, meta, source = _unwrap(path_or_state, "Hara")
    arch = meta.get("arch")
    if arch is not None and hasattr(model, "depth"):
        found = re.fullmatch(r"resnet-?(\d+)", str(arch))
        if found is None:
            raise ValueError(f"{source}: arch {arch!r} is not a plain 3D ResNet; this loader takes Hara's "
                             "'resnet-10' .. 'resnet-152' (ResNeXt, WideResNet, PreActResNet and DenseNet "
                             "have other layers)")
        if int(found.group(1)) != model.depth:
            raise ValueError(f"{source}: arch {arch!r} does not match the model (resnet-{model.depth}); "
                             f"build it with resnet3d({found.group(1)})")
    depth, shortcut = hara_layout(state)
    hint = ""
    built = (getattr(model, "depth", None), getattr(model, "shortcut", None))
    if depth is not None and (depth, shortcut) != built:
        hint = f"The file looks like a 3D ResNet-{depth} with shortcut {shortcut}: build resnet3d({depth}" \
               + (", shortcut='A')" if shortcut == "A" else ")")
    elif keep_fc and "fc.weight" in state:
        hint = f"The file's fc has {state['fc.weight'].shape[0]} classes: load with keep_fc=False, " \
               "or build the model with that num_classes"
    fc = () if keep_fc else ("fc.",)
    report = copy_state(model, state, skip=fc, keep=fc, source=source, hint=hint)
    if meta:
        shown = [f"{k}={meta[k]!r}" for k in ("arch", "epoch") if k in meta]
        report.notes.append("file metadata: " + (", ".join(shown) or "no arch or epoch"))
    return report


# ---- torchvision ImageNet ResNet-18 -------------------------------------------------------------

def adapt_first_conv(weight: torch.Tensor, shape) -> torch.Tensor:
    """Fit an ImageNet first-conv weight [64, 3, 7, 7] to `shape` [64, c, kh, kw] by summing.

    Summing over RGB (c = 1) gives exactly the response of the original filter to a grey image
    copied into the three channels. Likewise, summing over an axis the new kernel does not span
    (the (7, 1) kernel of the official audio conv has width 1) gives exactly the response of the
    7x7 filter to an input that is constant across those 7 columns. Either way the output keeps the
    scale that the pretrained bn1 statistics expect, rather than picking one column of the filter.
    """
    out, c, kh, kw = shape
    if weight.dim() != 4:
        raise ValueError(f"first conv: expected a 2D conv weight [64, 3, 7, 7], found shape {tuple(weight.shape)}")
    if weight.shape[0] != out:
        raise ValueError(f"first conv: file has {weight.shape[0]} filters, model {out}")
    if c != weight.shape[1]:
        if c != 1:
            raise ValueError(f"first conv: cannot map {weight.shape[1]} input channels to {c} "
                             "(only to 1 or to as many)")
        weight = weight.sum(dim=1, keepdim=True)
    for dim, size in ((2, kh), (3, kw)):
        if size != weight.shape[dim]:
            if size != 1:
                raise ValueError(f"first conv: cannot map kernel {tuple(weight.shape[2:])} to {(kh, kw)} "
                                 "(an axis must keep its size or shrink to 1)")
            weight = weight.sum(dim=dim, keepdim=True)
    return weight


def load_torchvision(model: nn.Module, path_or_state, first_conv: str = "sum",
                     keep_fc: bool = False) -> LoadReport:
    """Load a torchvision ImageNet ResNet state dict (e.g. resnet18-f37072fd.pth) into a ResNet2D.

    first_conv "sum": the RGB 7x7 conv1 is summed to the model's conv1 (see adapt_first_conv).
    first_conv "fresh": conv1 is not loaded and gets PyTorch's default Conv2d init, as in the
    authors' code (they replaced conv1 by a new nn.Conv2d after loading ImageNet weights); bn1
    and everything after it still come from the file. The 1000-class fc is skipped unless keep_fc.
    """
    if first_conv not in ("sum", "fresh"):
        raise ValueError(f"first_conv must be 'sum' or 'fresh', got {first_conv!r}")
    state, _, source = _unwrap(path_or_state, "torchvision")
    fc = () if keep_fc else ("fc.",)
    notes, hint = [], ""
    if first_conv == "sum":
        if "conv1.weight" in state:
            target = tuple(model.state_dict()["conv1.weight"].shape)
            original = tuple(state["conv1.weight"].shape)
            try:
                state = dict(state, **{"conv1.weight": adapt_first_conv(state["conv1.weight"], target)})
                if target != original:
                    notes.append(f"conv1 {original} summed to {target}")
            except ValueError as e:  # reported below with the other mismatches
                hint = str(e)
        report = copy_state(model, state, skip=fc, keep=fc, source=source, hint=hint)
    else:
        conv1 = ("conv1.weight",)
        report = copy_state(model, state, skip=fc + conv1, keep=fc + conv1, source=source)
        model.conv1.reset_parameters()
        notes.append("conv1 freshly initialised (PyTorch default), as in the authors' code")
    report.notes += notes
    return report


# ---- RGB image ResNets (DFAN's object and scene streams) ----------------------------------------

def image_layout(state: dict):
    """Guess the depth (18, 34, 50 or None) of a torchvision-named 2D ResNet state dict."""
    blocks = [len({k.split(".")[1] for k in state if k.startswith(f"layer{i}.")}) for i in range(1, 5)]
    bottleneck = any(".conv3." in k for k in state)
    return next((d for d, (block, layers) in ARCHS2D.items()
                 if layers == blocks and (block is Bottleneck2D) == bottleneck), None)


def load_image_backbone(model: nn.Module, path_or_state, what: str = "ImageNet",
                        keep_fc: bool = False) -> LoadReport:
    """An RGB ResNet with torchvision names into a 3-channel ResNet2D, strictly.

    Takes torchvision's ImageNet files (resnet50-0676ba61.pth, ...: a bare state dict) and the
    Places365 release (resnet50_places365.pth.tar: {'epoch', 'arch': 'resnet50', 'state_dict'
    with `module.` keys, ...}), or any state dict of that layout; `what` names the source in
    messages. The 1000/365-class fc is skipped unless keep_fc. Nothing is adapted: the first
    conv must already be RGB, and a depth mismatch is an error that names the file's depth.
    """
    if getattr(model, "in_channels", 3) != 3:
        raise ValueError(f"load_image_backbone needs a 3-channel (RGB) ResNet2D, got in_channels="
                         f"{model.in_channels}; for the 1-channel audio net use load_torchvision")
    state, meta, source = _unwrap(path_or_state, what)
    arch = meta.get("arch")
    if arch is not None and hasattr(model, "depth"):
        found = re.fullmatch(r"resnet-?(\d+)", str(arch))
        if found is None:
            raise ValueError(f"{source}: arch {arch!r} is not a plain ResNet; this loader takes "
                             "torchvision-layout 'resnet18' / 'resnet34' / 'resnet50' files")
        if int(found.group(1)) != model.depth:
            raise ValueError(f"{source}: arch {arch!r} does not match the model (ResNet-{model.depth}); "
                             f"build it with depth {found.group(1)}")
    depth = image_layout(state)
    hint = ""
    if depth is not None and depth != getattr(model, "depth", None):
        hint = f"The file looks like a ResNet-{depth} ({what}): build the model with depth {depth}"
    elif "conv1.weight" in state and state["conv1.weight"].dim() == 4 and state["conv1.weight"].shape[1] != 3:
        hint = f"The file's conv1 takes {state['conv1.weight'].shape[1]} channels, not RGB"
    fc = () if keep_fc else ("fc.",)
    report = copy_state(model, state, skip=fc, keep=fc, source=source, hint=hint)
    report.notes.append(f"{what} weights" + (f" (arch {arch!r})" if arch is not None else ""))
    return report


def load_dfan(model: nn.Module, action=None, object=None, scene=None, audio=None) -> list[LoadReport]:
    """Pretrained backbones into a DFAN: action = Hara 3D ResNet file (model.backbone), object =
    ImageNet and scene = Places365 RGB ResNets (torchvision names), audio = torchvision ResNet-18
    (as VAANet's). Each is a path or a state dict; None leaves that backbone as initialised.
    A weight given for a feature kind or stream the model does not have is an error."""
    cfg = getattr(model, "cfg", None)
    if cfg is None or getattr(cfg, "arch", None) != "dfan":
        raise ValueError(f"load_dfan expects a DFAN model, got {type(model).__name__}")
    reports = []
    for kind, weights, what in (("action", action, "Hara"), ("object", object, "ImageNet"),
                                ("scene", scene, "Places365")):
        if weights is None:
            continue
        if kind not in model.kinds:
            raise ValueError(f"{kind} weights given, but the model has no {kind} stream (dfan_kinds "
                             f"{'+'.join(cfg.dfan_kinds)}, streams {cfg.streams})")
        if kind == "action":
            reports.append(load_hara(model.backbone, weights))
        else:
            reports.append(load_image_backbone(getattr(model, f"{kind}_backbone"), weights, what))
    if audio is not None:
        if not cfg.audio:
            raise ValueError(f"audio weights given, but the model has no audio stream (streams {cfg.streams})")
        reports.append(load_torchvision(model.audio_backbone, audio))
    return reports
