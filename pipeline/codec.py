"""Frame codecs of the shards: raw uint8 arrays, or one baseline JPEG per frame.

JPEG goes through simplejpeg (libjpeg-turbo, encodes from and decodes into numpy arrays with
no PIL image in between; 3x faster than Pillow on 112-px frames here). Frames are encoded with
4:4:4 chroma (no subsampling: the thin coloured edges of animation survive) and decoded with
libjpeg-turbo's accurate DCT. The bytes of all frames of a video are concatenated into one
uint8 array; `offsets[i]:offsets[i + 1]` is frame i (frames in [S, t, k] order), so a reader
fetches one snippet with one contiguous read.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class EncodedFrames:
    data: np.ndarray      # uint8 [nbytes]: the JPEG files one after the other
    offsets: np.ndarray   # int64 [S*t*k + 1]: frame i is data[offsets[i]:offsets[i + 1]]
    shape: tuple          # the decoded shape (S, t, k, H, W, 3)

    @property
    def nbytes(self) -> int:
        return int(self.data.nbytes + self.offsets.nbytes)


def encode_frames(frames: np.ndarray, quality: int) -> EncodedFrames:
    """uint8 [..., H, W, 3] -> EncodedFrames (one JPEG per frame, in C order of the leading axes)."""
    import simplejpeg
    flat = frames.reshape(-1, *frames.shape[-3:])
    parts = [simplejpeg.encode_jpeg(np.ascontiguousarray(f), quality=int(quality),
                                    colorspace="RGB", colorsubsampling="444") for f in flat]
    offsets = np.zeros(len(parts) + 1, np.int64)
    offsets[1:] = np.cumsum([len(b) for b in parts])
    data = np.frombuffer(b"".join(parts), np.uint8) if parts else np.zeros(0, np.uint8)
    return EncodedFrames(data=data, offsets=offsets, shape=tuple(frames.shape))


def decode_into(data, offsets: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Decode the consecutive JPEGs bounded by `offsets` (relative to `data`) into `out`
    [len(offsets) - 1, H, W, 3] uint8. A frame of another size raises ValueError."""
    import simplejpeg
    data = memoryview(np.ascontiguousarray(data)).cast("B")
    for i in range(len(offsets) - 1):
        frame = data[offsets[i]:offsets[i + 1]]
        try:   # straight into the output (no copy); a larger frame does not fit the buffer
            img = simplejpeg.decode_jpeg(frame, colorspace="RGB", buffer=out[i])
        except ValueError:
            img = simplejpeg.decode_jpeg(frame, colorspace="RGB")
        if img.shape != out.shape[1:]:
            raise ValueError(f"a stored JPEG frame is {img.shape}, expected {out.shape[1:]}")
    return out


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio of two uint8 arrays in dB (inf when equal)."""
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0 ** 2 / mse))
