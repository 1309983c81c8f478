"""JPEG frames decoded by the training process on its device, after the transfer.

Decoding 160 JPEG frames costs a loader worker most of a sample's CPU (bench/loader.py). With
`--decode device` the workers only read the frames' JPEG files and hand them over undecoded
(trainer/loader.py: `_jpeg_batch`); here they become the same uint8 clips
[B, t, k, crop, crop, 3] the workers would have made, on the device:

- CUDA: nvJPEG, every frame of the batch in one call to a `decode_jpeg` that takes a list of
  files: TorchCodec's (`torchcodec.decoders`), else torchvision's (`torchvision.io`, deprecated
  there since torchvision 0.29 in favour of TorchCodec's). Either must be the build made for
  the installed torch; neither is a dependency of vaanet. nvJPEG's inverse DCT and colour
  conversion may differ from libjpeg-turbo's by a grey level or two.
- CPU (or when asked): libjpeg-turbo (simplejpeg) in this process, the workers' decoder: the
  clips are bit-identical to the workers' (tests/test_device_decode.py). Slower than decoding in
  the workers; there for checking and for machines without nvJPEG.

Random choices (snippet, window, crop) are made by the workers as always, so a batch holds the
same frames wherever they are decoded.
"""
from __future__ import annotations

import functools

import numpy as np
import torch

from trainer.errors import RunError

# the libraries whose decode_jpeg runs nvJPEG on CUDA, in the order they are tried
LIBRARIES = ("torchcodec", "torchvision")
CPU_BACKEND = "libjpeg-turbo"


@functools.lru_cache(maxsize=None)
def batch_decoder(library: str):
    """decode(files, device) -> list of uint8 [3, H, W] from `library`'s decode_jpeg, or None when
    that library does not load beside this torch (absent, or built for another torch)."""
    try:
        if library == "torchcodec":
            from torchcodec.decoders import decode_jpeg as codec_decode
            return lambda files, device: codec_decode(files, mode="RGB", device=device)
        if library == "torchvision":
            from torchvision.io import ImageReadMode, decode_jpeg as vision_decode
            return lambda files, device: vision_decode(files, mode=ImageReadMode.RGB, device=device)
    except Exception:   # noqa: BLE001 - a wrong build fails in many ways: not usable here
        return None
    raise ValueError(f"library must be one of {LIBRARIES}, got {library!r}")


def check_device_decode(device) -> str:
    """The backend `--decode device` will use on `device` (a library of LIBRARIES on CUDA,
    CPU_BACKEND otherwise), or a RunError that says what is missing."""
    device = torch.device(device)
    if device.type != "cuda":
        return CPU_BACKEND
    import simplejpeg
    probe = simplejpeg.encode_jpeg(np.zeros((8, 8, 3), np.uint8), colorsubsampling="444")
    failures = []
    for library in LIBRARIES:   # the next library is not even imported once one works
        decode = batch_decoder(library)
        if decode is None:
            continue
        try:   # a build without nvJPEG fails here, not at the first batch
            decode([torch.frombuffer(bytearray(probe), dtype=torch.uint8)], device)
            return library
        except Exception as e:   # noqa: BLE001 - any failure means: not usable here
            failures.append(f"{library}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
    if not failures:
        raise RunError(
            f"--decode device on CUDA needs TorchCodec (or torchvision) built for torch "
            f"{torch.__version__}: their decode_jpeg runs nvJPEG; install the matching release, "
            "or use --decode workers")
    raise RunError(f"--decode device: no library can decode JPEG on {device} ({'; '.join(failures)}); "
                   "use --decode workers")


def decode_clips(batch: dict, device, backend: str | None = None) -> torch.Tensor:
    """uint8 [B, t, k, crop, crop, 3] on `device` from a batch of undecoded frames.

    backend: "torchcodec" or "torchvision" (nvJPEG on CUDA; their CPU decoder elsewhere), or
    CPU_BACKEND; None picks check_device_decode's choice for the device."""
    device = torch.device(device)
    if backend is None:
        backend = _default_backend(str(device))
    t, k, c = (int(v) for v in batch["clip"])
    offsets = batch["jpeg_offsets"].numpy()
    crops = batch["crop_yx"].numpy()
    n = len(crops)
    if len(offsets) != n * t * k + 1:
        raise ValueError(f"{len(offsets) - 1} JPEG frames for {n} clips of {t} x {k}")
    sources = batch.get("sources")
    if backend in LIBRARIES:
        decode = batch_decoder(backend)
        if decode is None:
            raise RunError(f"{backend} does not load beside torch {torch.__version__}")
        try:
            return _batched(decode, batch["jpeg"], offsets, crops, t, k, c, device)
        except Exception:
            # a damaged file: libjpeg-turbo, sample by sample, names its video; otherwise the
            # failure is the library's own and goes on as it is
            _libjpeg(batch["jpeg"], offsets, crops, t, k, c, sources)
            raise
    if backend == CPU_BACKEND:
        return _libjpeg(batch["jpeg"], offsets, crops, t, k, c, sources).to(device, non_blocking=True)
    raise ValueError(f"backend must be one of {LIBRARIES + (CPU_BACKEND,)}, got {backend!r}")


@functools.lru_cache(maxsize=None)
def _default_backend(device: str) -> str:
    return check_device_decode(device)


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


def _batched(decode, data: torch.Tensor, offsets: np.ndarray, crops: np.ndarray, t: int, k: int,
             c: int, device: torch.device) -> torch.Tensor:
    """Every frame of the batch in one decode(files, device) call, then cropped and laid out."""
    files = [data[int(a):int(b)] for a, b in zip(offsets[:-1], offsets[1:])]
    images = decode(files, device)   # [3, H, W] each
    frames = t * k
    clips = []
    for b, (y, x) in enumerate(crops):
        clip = torch.stack(images[b * frames:(b + 1) * frames])[:, :, y:y + c, x:x + c]
        clips.append(clip.permute(0, 2, 3, 1).reshape(t, k, c, c, 3))
    return torch.stack(clips)
