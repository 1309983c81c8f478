"""The explanation picture, in the spirit of the VAANet paper's Figure 3 (matplotlib, Agg canvas:
no display needed).

    +------------------------------------------------------------+
    |  title: video, prediction (probability), label when known  |
    |  [seg 1]   [seg 2]   ...   [seg t]   middle frames + heat  |
    |  VT  [ w1 ][ w2 ] ... [ wt ]          temporal weights      |
    |  AT  [ a1 ][ a2 ] ...... [ a_ta ]     audio temporal weights|
    +------------------------------------------------------------+

Size: 200 px of width per segment (at least 4 segments' worth, i.e. 800 px) by 440 px.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

DPI = 100
HEIGHT_PX = 440
SEGMENT_PX = 200
ALPHA = 0.6  # share of the heat colour over the frame where the heat is largest


def figure_size(segments: int) -> tuple[int, int]:
    """(width, height) in pixels of the picture for `segments` segments."""
    return SEGMENT_PX * max(segments, 4), HEIGHT_PX


def overlay(frame: np.ndarray, heat: np.ndarray | None) -> np.ndarray:
    """uint8 [H, W, 3] frame blended with the jet colours of heat [H, W] in 0..1; the colour's
    share grows with the heat, so where the model did not look the frame shows as it is."""
    if heat is None:
        return frame
    from matplotlib import colormaps
    colours = colormaps["jet"](np.clip(heat, 0, 1))[..., :3] * 255
    share = ALPHA * np.clip(heat, 0, 1)[..., None]
    return ((1 - share) * frame + share * colours).clip(0, 255).astype(np.uint8)


def _weights_row(ax, weights, label: str, missing: str) -> None:
    ax.set_yticks([])
    ax.set_ylabel(label, rotation=0, ha="right", va="center")
    if weights is None:
        ax.set_xticks([])
        ax.text(0.5, 0.5, missing, ha="center", va="center", transform=ax.transAxes, color="0.3")
        return
    w = np.asarray(weights, dtype=float).reshape(1, -1)
    ax.imshow(w, aspect="auto", cmap="viridis", vmin=0, vmax=max(float(w.max()), 1e-12))
    n = w.shape[1]
    ax.set_xticks(range(n))
    ax.set_xticklabels([str(i + 1) for i in range(n)], fontsize=7)
    if n <= 16:
        for i, v in enumerate(w[0]):
            ax.text(i, 0, f"{v:.2f}", ha="center", va="center", fontsize=8,
                    color="white" if v < 0.6 * w.max() else "black")


def explain_figure(path, frames: np.ndarray, heat: np.ndarray | None, temporal, audio_temporal,
                   title: str, heat_label: str = "") -> Path:
    """Write the PNG: frames uint8 [t, H, W, 3], heat [t, H, W] in 0..1 or None, temporal [t]
    or None, audio_temporal [t_a] or None. Written to a temporary file, then renamed."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    t = len(frames)
    width, height = figure_size(t)
    fig = Figure(figsize=(width / DPI, height / DPI), dpi=DPI)
    FigureCanvasAgg(fig)
    fig.suptitle(title, fontsize=11, y=0.975)
    left, right = 0.07, 0.985
    step = (right - left) / t
    for i in range(t):
        ax = fig.add_axes([left + i * step + 0.004, 0.36, step - 0.008, 0.52])
        ax.imshow(overlay(frames[i], None if heat is None else heat[i]))
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"segment {i + 1}", fontsize=8)
    if heat_label:
        fig.text(left, 0.315, f"heat map: {heat_label}", fontsize=8, color="0.25")
    _weights_row(fig.add_axes([left, 0.19, right - left, 0.09]), temporal, "VT",
                 "no VT attention (segments averaged)")
    _weights_row(fig.add_axes([left, 0.05, right - left, 0.09]), audio_temporal, "AT",
                 "no AT attention / no audio stream")
    path = Path(path)
    from pipeline import atomic
    with atomic.open(path, "wb") as f:
        fig.savefig(f, dpi=DPI, format="png")
    return path
