"""Where the model looked: Grad-CAM on the 3D backbone's last convolutional map, plus every
attention weight, for `vaanet predict --explain OUT_DIR`.

Grad-CAM (Selvaraju et al., ICCV 2017), as the VAANet paper's Figure 3 used it: for the target
class c (the prediction, or --class NAME) and the backbone's layer4 map A [C, k', h, w] of each
segment, alpha_ch = mean over (k', h, w) of d logit_c / d A_ch, and the map is
ReLU(sum_ch alpha_ch A_ch) averaged over the k' time steps -> [h, w] per segment.

Written as a few lines of hooks rather than with the `grad-cam` package (README, "Predict and
explain", says why): a forward hook on `layer4` swaps its output for a detached leaf that
requires grad, the gradient is taken with torch.autograd.grad with respect to that leaf only
(no parameter gradient, nothing accumulated in .grad), and the model's frozen-backbone
no_grad region is lifted for the pass by running it with a copy of its config whose
freeze_visual is False (eval mode: nothing else changes). DFAN gets one map per visual kind
(action 3D, object and scene 2D); the figure shows the action kind's (the first kind present
when action is ablated).
"""
from __future__ import annotations

import contextlib
import logging
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

log = logging.getLogger(__name__)
HEATMAPS = ("gradcam", "attention")


def cam_layers(model) -> dict:
    """kind -> the module whose output is the last convolutional map ('action' for VAANet)."""
    if not model.cfg.visual:
        return {}
    if model.cfg.arch == "dfan":
        from model.dfan import BACKBONES
        return {kind: getattr(model, BACKBONES[kind]).layer4 for kind in model.kinds}
    return {"action": model.backbone.layer4}


@contextlib.contextmanager
def _graph_through_backbone(model):
    """Let the forward pass record the graph after layer4 even for a frozen backbone."""
    cfg = model.cfg
    if cfg.visual and cfg.freeze_visual:
        model.cfg = cfg.replace(freeze_visual=False)
    try:
        yield
    finally:
        model.cfg = cfg


def gradcam(model, visual, audio, target: int | None = None):
    """Forward pass with Grad-CAM. Returns (output, targets [B], cams {kind: [B, t, h, w]
    float numpy, before any normalisation}); target None = each sample's predicted class."""
    layers = cam_layers(model)
    leaves: dict = {}

    def hook(kind):
        def swap(module, inputs, output):
            leaves[kind] = output.detach().requires_grad_(True)
            return leaves[kind]
        return swap

    handles = [layer.register_forward_hook(hook(kind)) for kind, layer in layers.items()]
    try:
        with _graph_through_backbone(model), torch.enable_grad():
            out = model(visual, audio)
            logits = out.logits.float()
            b = logits.shape[0]
            targets = (logits.argmax(1) if target is None
                       else torch.full((b,), int(target), device=logits.device))
            cams = {}
            if leaves:
                score = logits.gather(1, targets[:, None]).sum()  # samples are independent (eval)
                grads = torch.autograd.grad(score, list(leaves.values()), allow_unused=True)
                for (kind, a), g in zip(leaves.items(), grads):
                    g = torch.zeros_like(a) if g is None else g
                    dims = tuple(range(2, a.dim()))
                    cam = F.relu((g.mean(dim=dims, keepdim=True) * a).sum(dim=1))  # [t*B, (k',) h, w]
                    if cam.dim() == 4:
                        cam = cam.mean(dim=1)                     # average over the k' time steps
                    t = cam.shape[0] // b                          # segment-major, as the model runs
                    cams[kind] = cam.view(t, b, *cam.shape[1:]).transpose(0, 1).detach().cpu().numpy()
    finally:
        for h in handles:
            h.remove()
    detached = type(out)(*[None if x is None else x.detach() for x in out])
    return detached, targets.cpu().numpy(), cams


def upsample(maps: np.ndarray, size: int) -> np.ndarray:
    """[t, h, w] -> [t, size, size], bilinear (the map covers the whole crop)."""
    x = torch.from_numpy(np.ascontiguousarray(maps, dtype=np.float32))[:, None]
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)[:, 0].numpy()


def normalise(maps: np.ndarray) -> np.ndarray:
    """Scale to 0..1 by the video's largest value, so segments stay comparable."""
    top = float(maps.max()) if maps.size else 0.0
    return maps / top if top > 0 else np.zeros_like(maps)


class Explainer:
    """Called by trainer.predict.predict_videos in place of its forward pass: writes
    OUT_DIR/<video stem>.png (the figure) and .npz (the numbers) per video, returns the
    probabilities."""

    def __init__(self, out_dir, classes: list, heatmap: str = "gradcam", target_class: str | None = None):
        if heatmap not in HEATMAPS:
            raise ValueError(f"heatmap must be one of {', '.join(HEATMAPS)}, got {heatmap!r}")
        self.out_dir = Path(out_dir)
        self.heatmap = heatmap
        self.target = None
        if target_class is not None:
            names = {c.lower(): i for i, c in enumerate(classes)}
            if target_class.lower() not in names:
                raise ValueError(f"--class {target_class!r} is not a class of the model "
                                 f"({', '.join(classes)})")
            self.target = names[target_class.lower()]
        self.used: set = set()

    def check(self, model) -> None:
        """Refuse what this model cannot show before any video is decoded."""
        if self.heatmap == "attention" and (not model.cfg.visual or "VS" not in model.cfg.attention):
            raise ValueError(f"--heatmap attention needs the VS attention; this model has "
                             f"{model.cfg.attention_spec} (use --heatmap gradcam)")

    def name(self, video: str) -> str:
        stem, n = Path(video).stem, 1
        name = stem
        while name in self.used:
            n += 1
            name = f"{stem}-{n}"
        self.used.add(name)
        return name

    def __call__(self, loaded, reader, ids, b, rows) -> np.ndarray:
        from trainer.figure import explain_figure
        model = loaded.model
        out, targets, cams = gradcam(model, b["visual"], b["audio"], self.target)
        if self.target is not None:
            targets[:] = self.target
        probs = torch.softmax(out.logits.float(), dim=1).cpu().numpy()
        frames = middle_frames(loaded, reader, ids, b)               # [B, t, H, W, 3] uint8
        kind = next(iter(cams), None)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        for j, vid in enumerate(ids):
            row = rows[vid]
            numbers = {"probs": probs[j], "classes": np.array(loaded.classes), "target": targets[j],
                       "frames": frames[j]}
            for field in ("spatial", "channel", "temporal", "audio_temporal"):
                value = getattr(out, field)
                if value is not None:
                    numbers[field] = value[j].float().cpu().numpy()
            for k, cam in cams.items():
                numbers[f"gradcam_{k}"] = cam[j]
            if kind is not None:
                numbers["gradcam"] = cams[kind][j]
            heat = self.heat(model, numbers, frames.shape[2])
            name = self.name(row["video"])
            guess = int(probs[j].argmax())
            title = (f"{Path(row['video']).name}: {loaded.classes[guess]} ({100 * probs[j][guess]:.1f}%)"
                     + (f", label {row['label']}" if row.get("label") else ""))
            if heat is not None and int(targets[j]) != guess:
                title += f"; heat map for {loaded.classes[int(targets[j])]}"
            png = self.out_dir / f"{name}.png"
            explain_figure(png, frames[j], heat, numbers.get("temporal"), numbers.get("audio_temporal"),
                           title, heat_label=self.heat_label(model, kind))
            save_npz(self.out_dir / f"{name}.npz", numbers)
            row["explain"] = str(png)
        return probs

    def heat(self, model, numbers: dict, size: int):
        if self.heatmap == "attention":
            w = numbers["spatial"]
            if w.ndim == 3:   # DFAN: one map per kind; the figure's kind is the first one
                w = w[:, 0]
            g = int(round(np.sqrt(w.shape[-1])))
            return normalise(upsample(w.reshape(-1, g, g), size))
        if "gradcam" not in numbers:
            return None
        return normalise(upsample(numbers["gradcam"], size))

    def heat_label(self, model, kind) -> str:
        if self.heatmap == "attention":
            return "VS spatial attention"
        if kind is None:
            return "no visual stream: no heat map"
        net = "3D" if kind == "action" else "2D"
        return f"Grad-CAM, {net} backbone layer4" + (f" ({kind})" if model.cfg.arch == "dfan" else "")


def middle_frames(loaded, reader, ids, b) -> np.ndarray:
    """The middle frame (k // 2) of every segment's clip, exactly as the model saw it, or for a
    model without the visual stream as the loader would have cut it: [B, t, H, W, 3] uint8."""
    k = loaded.cfg.frames // 2
    if b["visual"] is not None:
        return b["visual"][:, :, :, k].permute(0, 1, 3, 4, 2).cpu().numpy()
    from trainer.loader import ClipDataset
    ds = ClipDataset(reader, ids, loaded.cfg.replace(streams="both"), train=False)
    return ds.__getitems__(list(range(len(ids))))["visual"][:, :, k].numpy()


def save_npz(path: Path, numbers: dict) -> None:
    from pipeline import atomic
    with atomic.open(path, "wb") as f:
        np.savez_compressed(f, **numbers)
