"""JPEG frames decoded by the training process on its device, after the transfer.

Decoding 160 JPEG frames costs a loader worker most of a sample's CPU (bench/loader.py). With
`--decode device` the workers only read the frames' JPEG files and hand them over undecoded
(trainer/loader.py: `_jpeg_batch`); here they become the same uint8 clips
[B, t, k, crop, crop, 3] the workers would have made, on the device:

- CUDA: torchvision's `decode_jpeg(..., device="cuda")` (nvJPEG), every frame of the batch in
  one call. Needs a torchvision built for this torch; it is not a dependency of vaanet. nvJPEG's
  inverse DCT and colour conversion may differ from libjpeg-turbo's by a grey level or two.
- CPU (or when asked): libjpeg-turbo (simplejpeg) in this process, the workers' decoder: the
  clips are bit-identical to the workers' (tests/test_device_decode.py). Slower than decoding in
  the workers; there for checking and for machines without nvJPEG.

Random choices (snippet, window, crop) are made by the workers as always, so a batch holds the
same frames wherever they are decoded.
"""
from __future__ import annotations

import numpy as np
import torch

from trainer.errors import RunError


def nvjpeg_decoder():
    """torchvision.io.decode_jpeg when torchvision loads beside this torch, else None."""
    try:
        from torchvision.io import decode_jpeg
    except Exception:   # absent, or built for another torch (its operators fail to load)
        return None
    return decode_jpeg


def check_device_decode(device) -> str:
    """The decoder `--decode device` will use on `device` ("nvjpeg" or "libjpeg-turbo"), or a
    RunError that says what is missing."""
    device = torch.device(device)
    if device.type == "cuda":
        decode_jpeg = nvjpeg_decoder()
        if decode_jpeg is None:
            raise RunError(
                f"--decode device on CUDA needs torchvision built for torch {torch.__version__} "
                "(its decode_jpeg runs nvJPEG); install the matching torchvision, or use "
                "--decode workers")
        try:   # a build without nvJPEG fails here, not at the first batch
            import simplejpeg
            probe = simplejpeg.encode_jpeg(np.zeros((8, 8, 3), np.uint8), colorsubsampling="444")
            decode_jpeg([torch.frombuffer(bytearray(probe), dtype=torch.uint8)], device=device)
        except Exception as e:   # noqa: BLE001 - any failure means: not usable here
            raise RunError(f"--decode device: torchvision cannot decode JPEG on {device} "
                           f"({type(e).__name__}: {e}); use --decode workers") from None
        return "nvjpeg"
    return "libjpeg-turbo"


def decode_clips(batch: dict, device, backend: str | None = None) -> torch.Tensor:
    """uint8 [B, t, k, crop, crop, 3] on `device` from a batch of undecoded frames.

    backend: "nvjpeg" or "libjpeg-turbo"; None picks nvJPEG on CUDA."""
    device = torch.device(device)
    if backend is None:
        backend = "nvjpeg" if device.type == "cuda" else "libjpeg-turbo"
    t, k, c = (int(v) for v in batch["clip"])
    offsets = batch["jpeg_offsets"].numpy()
    crops = batch["crop_yx"].numpy()
    n = len(crops)
    if len(offsets) != n * t * k + 1:
        raise ValueError(f"{len(offsets) - 1} JPEG frames for {n} clips of {t} x {k}")
    sources = batch.get("sources")
    if backend == "nvjpeg":
        try:
            return _nvjpeg(batch["jpeg"], offsets, crops, t, k, c, device)
        except Exception:
            # a damaged file: libjpeg-turbo, sample by sample, names its video; otherwise the
            # failure is nvJPEG's own and goes on as it is
            _libjpeg(batch["jpeg"], offsets, crops, t, k, c, sources)
            raise
    if backend == "libjpeg-turbo":
        return _libjpeg(batch["jpeg"], offsets, crops, t, k, c, sources).to(device, non_blocking=True)
    raise ValueError(f"backend must be 'nvjpeg' or 'libjpeg-turbo', got {backend!r}")


def _libjpeg(data: torch.Tensor, offsets: np.ndarray, crops: np.ndarray, t: int, k: int, c: int,
             sources=None) -> torch.Tensor:
    """The clips decoded here; a file that does not decode raises the loader's SampleError for
    its video (sources: trainer.sample_errors.sample_source of each sample)."""
    import simplejpeg
    from pipeline.codec import decode_into
    from trainer.sample_errors import unreadable_sample
    raw = data.numpy()
    out = torch.empty((len(crops), t, k, c, c, 3), dtype=torch.uint8)
    frames = t * k
    for b, (y, x) in enumerate(crops):
        lo, hi = offsets[b * frames], offsets[(b + 1) * frames]
        try:
            h, w = simplejpeg.decode_jpeg_header(raw[lo:offsets[b * frames + 1]].tobytes())[:2]
            whole = decode_into(raw[lo:hi], offsets[b * frames:(b + 1) * frames + 1] - lo,
                                np.empty((frames, h, w, 3), np.uint8))
        except ValueError as e:   # simplejpeg's error for a file it cannot decode
            if sources is None:
                raise
            raise unreadable_sample(tuple(sources[b]), e) from e
        out[b] = torch.from_numpy(whole[:, y:y + c, x:x + c].reshape(t, k, c, c, 3))
    return out


def _nvjpeg(data: torch.Tensor, offsets: np.ndarray, crops: np.ndarray, t: int, k: int, c: int,
            device: torch.device) -> torch.Tensor:
    from torchvision.io import ImageReadMode, decode_jpeg
    files = [data[int(a):int(b)] for a, b in zip(offsets[:-1], offsets[1:])]
    images = decode_jpeg(files, mode=ImageReadMode.RGB, device=device)   # [3, H, W] each
    frames = t * k
    clips = []
    for b, (y, x) in enumerate(crops):
        clip = torch.stack(images[b * frames:(b + 1) * frames])[:, :, y:y + c, x:x + c]
        clips.append(clip.permute(0, 2, 3, 1).reshape(t, k, c, c, 3))
    return torch.stack(clips)
