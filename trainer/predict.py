"""`vaanet predict`: a trained model on your own videos, no shards needed.

    rows = predict_videos(find_videos(["clips/"]), load_model(run="runs/demo-demo"))

Each video is decoded by the ETL's own code (pipeline.extract.extract_video) with the
preprocessing parameters the checkpoint was trained on (recorded in it as `data_params`; older
and imported checkpoints get parameters derived from the model configuration, with a notice).
The decoded arrays are served to the loader's own evaluation path (trainer.loader.ClipDataset
with train=False: middle snippet, centred frames, centre crop, no flip) through an in-memory
stand-in for the shard reader, so a video gets exactly the input `vaanet evaluate` would give
the model from its shards. Videos are decoded a batch at a time (threads: ffmpeg does the work)
and predicted in batches; a video that cannot be decoded gets a row with the reason.
"""
from __future__ import annotations

import csv
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pipeline.datasets import VIDEO_EXTENSIONS
from pipeline.params import PreprocessParams
from trainer.errors import RunError

log = logging.getLogger(__name__)
POLARITY_NAMES = {1: "positive", 0: "negative"}


class PredictError(RunError):
    """A usage error: missing or foreign checkpoint, no videos, bad option (exit status 2)."""


# ---- inputs ---------------------------------------------------------------------------------

def find_videos(paths) -> tuple[list[Path], list[Path]]:
    """(videos, skipped) named by `paths`: files as given (whatever their extension: a file named
    explicitly is tried, and fails with ffmpeg's reason if it is no video), directories scanned
    recursively for video extensions (`skipped`: their other files, for a warning). No video ->
    PredictError."""
    videos, skipped = [], []
    for p in map(Path, paths):
        if p.is_dir():
            for f in sorted(q for q in p.rglob("*") if q.is_file()):
                (videos if f.suffix.lower() in VIDEO_EXTENSIONS else skipped).append(f)
        elif p.is_file():
            videos.append(p)
        else:
            from pipeline.datasets import link_problem
            raise PredictError(f"{link_problem(p) or 'no such file or folder'}: {p}")
    videos = list(dict.fromkeys(videos))
    if not videos:
        raise PredictError(f"no videos found in {', '.join(map(str, paths))} (video files: "
                           f"{' '.join(e[1:] for e in VIDEO_EXTENSIONS)})")
    return videos, skipped


# ---- the model and its preprocessing --------------------------------------------------------

@dataclass
class Loaded:
    model: torch.nn.Module
    cfg: object                   # model.config.ModelConfig
    classes: list
    polarity: list | None
    params: PreprocessParams
    params_source: str            # "checkpoint" or "derived from the model configuration"
    path: Path
    device: torch.device


def params_for(ckpt: dict, cfg) -> tuple[PreprocessParams, str]:
    """The preprocessing the model was trained on: recorded in the checkpoint, or derived from
    the model configuration (its segments, frames, crop as short side, n_mfcc; the demo's frame
    size for the demo-sized presets; the authors' audio settings for `official` audio sampling,
    README "The authors' checkpoints")."""
    if ckpt.get("data_params"):
        return PreprocessParams.from_dict(ckpt["data_params"]), "checkpoint"
    from pipeline.preprocess import DEMO_PARAMS
    base = PreprocessParams()
    if (cfg.crop, cfg.frames, cfg.segments) == (DEMO_PARAMS["short_side"], DEMO_PARAMS["frames"],
                                                DEMO_PARAMS["segments"]):
        base = PreprocessParams(**DEMO_PARAMS)
    changes = dict(segments=cfg.segments, snippets=base.snippets if base.segments == cfg.segments else 1,
                   frames=cfg.frames, short_side=cfg.crop,
                   max_long_side=max(cfg.crop, round(base.max_long_side * cfg.crop / base.short_side)),
                   n_mfcc=cfg.n_mfcc)
    if cfg.audio_sampling == "official":  # the authors' MFCC: 2048-sample windows, hop 512, 44.1 kHz
        changes.update(sample_rate=44100, winlen=0.0464399, winstep=0.0116100, nfft=2048)
    params = base.replace(**changes)
    log.warning("the checkpoint records no preprocessing parameters (an older or imported "
                "checkpoint): using parameters derived from its model configuration (%s)",
                ", ".join(f"{k} {v}" for k, v in changes.items()))
    return params, "derived from the model configuration"


def check_geometry(cfg, params: PreprocessParams, path) -> None:
    """The videos are decoded with the checkpoint's preprocessing parameters: refuse a
    checkpoint whose model wants more (frames, a larger crop, other MFCC) than they give."""
    wanted = []
    if cfg.visual:
        wanted += [("frames per segment", cfg.frames, params.frames, cfg.frames > params.frames),
                   ("crop", cfg.crop, params.short_side, cfg.crop > params.short_side)]
    if cfg.audio:
        wanted += [("n_mfcc", cfg.n_mfcc, params.n_mfcc, cfg.n_mfcc != params.n_mfcc)]
    bad = [f"{name}: the model takes {m}, its data parameters give {d}" for name, m, d, b in wanted if b]
    if bad:
        raise PredictError(f"{path}: its model and its recorded preprocessing parameters do not "
                           f"fit ({'; '.join(bad)}); it cannot be applied to videos")


def load_model(checkpoint=None, run=None, which: str = "best", device: str = "auto") -> Loaded:
    """The model of a checkpoint file or RUN_DIR/<which>.pt, in eval mode on `device`."""
    from model.build import build_model
    from model.config import ModelConfig
    from trainer import checkpoint as ckpt_io
    from trainer.device import resolve_device
    path = ckpt_io.locate(checkpoint, run, which)
    try:
        ckpt = ckpt_io.load(path)
    except ValueError as e:
        raise PredictError(str(e)) from None
    try:
        cfg = ModelConfig.from_dict(ckpt["model_config"])
        model = build_model(cfg)
        model.load_state_dict(ckpt["model"])
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise PredictError(f"{path}: its weights do not fit the architecture it names "
                           f"({first[:300]})") from None
    classes = list(ckpt.get("classes") or [])
    if len(classes) != cfg.num_classes:
        raise PredictError(f"{path} names {len(classes)} classes for a {cfg.num_classes}-class model")
    params, source = params_for(ckpt, cfg)
    check_geometry(cfg, params, path)
    try:
        dev = resolve_device(device)
    except ValueError as e:
        raise PredictError(str(e)) from None
    model.to(dev).eval()
    return Loaded(model, cfg, classes, ckpt.get("polarity"), params, source, path, dev)


# ---- decoded videos served as a shard reader ------------------------------------------------

class DecodedVideos:
    """What ClipDataset reads from a ShardReader (ids, params, meta, frames, clip, mfcc), for videos
    decoded in memory by pipeline.extract; ids are the videos' positions as strings."""

    def __init__(self, params: PreprocessParams, extracted: dict):
        self.params = params
        self.items = extracted  # id -> pipeline.extract.Extracted
        self.ids = list(extracted)

    def meta(self, vid: str) -> dict:
        ex = self.items[vid]
        return {"id": vid, "label": 0, "frames_shape": list(ex.frames.shape),
                "has_audio": ex.info["has_audio"], "duration": ex.info["duration"]}

    def frames(self, vid: str, snippet: int | None = None) -> np.ndarray:
        f = self.items[vid].frames
        return f if snippet is None else f[snippet]

    def clip(self, vid: str, snippets, segments, starts, k: int, out: np.ndarray | None = None
             ) -> np.ndarray:
        """As ShardReader.clip, from the decoded frames [S, t, K, H, W, 3] (through the JPEG codec
        when the checkpoint's data stored JPEG, so the model sees what evaluation sees)."""
        f = self.items[vid].frames
        clip = np.stack([f[j, i, s:s + k] for j, i, s in zip(snippets, segments, starts)])
        if self.params.codec == "jpeg":  # the frames as the shards hold them: same encoder, same decoder
            from pipeline.codec import decode_into, encode_frames
            enc = encode_frames(clip, self.params.quality)
            flat = np.empty((clip.size // np.prod(clip.shape[-3:]), *clip.shape[-3:]), np.uint8)
            clip = decode_into(enc.data, enc.offsets, flat).reshape(clip.shape)
        if out is not None:   # the caller's buffer, as ShardReader.clip fills it
            np.copyto(out, clip)
            return out
        return clip

    def mfcc(self, vid: str) -> np.ndarray:
        return self.items[vid].mfcc


def decode(path: Path, params: PreprocessParams):
    """(Extracted, None) or (None, reason) for one video, never raising for a bad file."""
    from pipeline.errors import VideoError
    from pipeline.extract import extract_video
    try:
        return extract_video(path, params), None
    except VideoError as e:
        return None, e.reason
    except OSError as e:
        return None, f"unreadable file: {e.strerror or e}"
    except Exception as e:  # a bug on one video must not lose the others
        log.exception("internal error on %s", path)
        return None, f"internal error: {type(e).__name__}: {e}"


def batches(loaded: Loaded, reader: DecodedVideos, batch_size: int):
    """The evaluation path of the loader over `reader`: (ids, device batch) per batch."""
    from trainer.loader import ClipDataset, make_loader, to_device_batch
    ds = ClipDataset(reader, reader.ids, loaded.cfg, train=False)
    for batch in make_loader(ds, batch_size, train=False, workers=0, pin_memory=False):
        ids = [ds.ids[i] for i in batch["index"].tolist()]
        yield ids, to_device_batch(batch, loaded.device, train=False)


def label_from_folder(path: Path, classes: list) -> str:
    """The class named by the video's folder (dataset layout ROOT/<class>/video), else ''."""
    names = {c.lower(): c for c in classes}
    return names.get(path.parent.name.lower(), "")


# ---- the run ----------------------------------------------------------------------------------

def predict_videos(videos: list[Path], loaded: Loaded, batch_size: int = 8, jobs: int | None = None,
                   progress: bool = True, explainer=None) -> list[dict]:
    """One row per video, in order: video, status ("ok"/"failed"), prediction, probability,
    polarity, has_audio, label (from the folder name, when it is a class), notes, reason,
    probs {class: p}. `explainer(loaded, reader, ids, device batch, rows by id)` (see
    trainer/explain.py) replaces the plain forward pass when given."""
    from tqdm import tqdm
    jobs = jobs or min(4, os.cpu_count() or 1)
    rows = [{"video": str(v), "status": "failed", "prediction": "", "probability": None,
             "polarity": "", "has_audio": None, "label": label_from_folder(v, loaded.classes),
             "notes": [], "reason": "", "probs": {}} for v in videos]
    bar = tqdm(total=len(videos), desc="predict", unit="video", disable=not progress, leave=False)
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        for start in range(0, len(videos), batch_size):
            chunk = range(start, min(start + batch_size, len(videos)))
            decoded = pool.map(lambda i: decode(videos[i], loaded.params), chunk)
            extracted = {}
            for i, (ex, reason) in zip(chunk, decoded):
                if ex is None:
                    rows[i]["reason"] = reason
                    log.warning("%s: %s", videos[i], reason)
                    continue
                extracted[str(i)] = ex
                rows[i].update(has_audio=bool(ex.info["has_audio"]), notes=list(ex.info["notes"]))
                for note in ex.info["notes"]:
                    log.info("%s: %s", videos[i], note)
            if extracted:
                reader = DecodedVideos(loaded.params, extracted)
                for ids, b in batches(loaded, reader, batch_size):
                    if explainer is not None:
                        probs = explainer(loaded, reader, ids, b, {i: rows[int(i)] for i in ids})
                    else:
                        probs = forward_probs(loaded.model, b)
                    for vid, p in zip(ids, probs):
                        fill(rows[int(vid)], p, loaded)
            bar.update(len(chunk))
    bar.close()
    return rows


@torch.no_grad()
def forward_probs(model, b: dict) -> np.ndarray:
    return torch.softmax(model(b["visual"], b["audio"]).logits.float(), dim=1).cpu().numpy()


def fill(row: dict, p: np.ndarray, loaded: Loaded) -> None:
    guess = int(np.argmax(p))
    pol = loaded.polarity
    row.update(status="ok", prediction=loaded.classes[guess], probability=float(p[guess]),
               polarity=POLARITY_NAMES[int(pol[guess])] if pol else "",
               probs={c: float(x) for c, x in zip(loaded.classes, p)})


# ---- output -----------------------------------------------------------------------------------

def format_table(rows: list[dict]) -> str:
    """The console table: video, predicted class, probability, polarity, audio present."""
    head = ("video", "prediction", "prob", "polarity", "audio")
    body = []
    for r in rows:
        if r["status"] == "ok":
            body.append((r["video"], r["prediction"], f"{100 * r['probability']:.1f}%", r["polarity"] or "-",
                         "yes" if r["has_audio"] else "no"))
        else:
            body.append((r["video"], f"FAILED: {r['reason']}", "", "", ""))
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(head)]
    widths[1] = min(widths[1], 60)
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    return "\n".join([line(head), line(["-" * w for w in widths])] + [line(b) for b in body])


def write_rows(path, rows: list[dict], loaded: Loaded) -> Path:
    """JSON (.json: checkpoint, classes, parameters and the rows) or CSV (.csv: one line per
    video, p_<class> for every class), written atomically (pipeline/atomic.py)."""
    from pipeline import atomic
    path = Path(path)
    if path.suffix.lower() == ".json":
        doc = {"checkpoint": str(loaded.path), "classes": loaded.classes,
               "params": loaded.params.to_dict(), "params_source": loaded.params_source,
               "videos": rows}
        atomic.write_json(path, doc)
    else:
        with atomic.open(path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["video", "status", "prediction", "probability", "polarity", "has_audio",
                        "label", "reason", "notes"] + [f"p_{c}" for c in loaded.classes])
            for r in rows:
                w.writerow([r["video"], r["status"], r["prediction"],
                            "" if r["probability"] is None else f"{r['probability']:.6f}",
                            r["polarity"], "" if r["has_audio"] is None else int(r["has_audio"]),
                            r["label"], r["reason"], "; ".join(r["notes"])]
                           + [f"{r['probs'][c]:.6f}" if r["probs"] else "" for c in loaded.classes])
    return path
