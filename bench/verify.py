"""What checking an existing output costs: the checksum pass of a `vaanet preprocess` rerun
(every stored byte read back and crc32'd, per GB of shards), with the page cache warm (the shards
just written) and cold (their pages dropped with posix_fadvise DONTNEED, this benchmark's files
only), and the metadata check `vaanet train`, `evaluate` and `ablate` run before anything
(per 1000 videos).

    python bench/verify.py                     # 1 GB of shards, 2000 small videos
    python bench/verify.py --size-mb 4096 --videos 10000

Synthetic videos written through the real ShardWriter (raw codec, random bytes: the pass reads
and checksums bytes whatever the codec). Results: bench/results/verify.md and verify.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline import format as fmt  # noqa: E402
from pipeline.params import PreprocessParams  # noqa: E402
from pipeline.reader import ShardReader  # noqa: E402
from pipeline.writer import ShardWriter  # noqa: E402


def writer(out: Path, params: PreprocessParams) -> ShardWriter:
    return ShardWriter(out, params, dataset="bench", classes=["a"], polarity=[1],
                       membership={}, split_names=[])


def make_output(out: Path, n: int, shape, seed: int = 0) -> Path:
    """n videos of uint8 frames `shape` [S,t,k,H,W,3] (random bytes) and a small MFCC."""
    params = PreprocessParams(segments=shape[1], snippets=shape[0], frames=shape[2],
                              short_side=min(shape[3:5]), max_long_side=max(shape[3:5]),
                              codec="raw", shard_size_mb=1024)
    w = writer(out, params).open()
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 256, shape, dtype=np.uint8)
    for i in range(n):
        frames.reshape(-1)[:8] = np.frombuffer(i.to_bytes(8, "little"), np.uint8)  # distinct
        video = SimpleNamespace(id=f"a/v{i:06d}", label=0, cls="a", path=out / "none.mp4")
        w.add(video, frames, np.zeros((100, 32), np.float32), {}, sha1="0" * 40)
    w.close()
    return out


def drop_cache(out: Path):
    for p in out.glob(fmt.SHARD_GLOB):
        fd = os.open(p, os.O_RDONLY)
        try:
            os.fdatasync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def rerun_check(out: Path, verify: bool) -> tuple[float, int]:
    params = PreprocessParams.from_dict(json.loads((out / fmt.INDEX).read_text())["params"])
    w = writer(out, params)
    t0 = time.perf_counter()
    w.open(verify=verify)
    seconds = time.perf_counter() - t0
    assert not w.damaged and not w.repaired, (w.damaged, w.repaired)
    return seconds, w.verified_bytes


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size-mb", type=float, default=1024, help="shards to verify [1024]")
    ap.add_argument("--videos", type=int, default=2000, help="small videos for the metadata check")
    ap.add_argument("--workdir", default=None, help="[a temporary folder, removed]")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=a.workdir) as tmp:
        big = Path(tmp) / "big"
        shape = (8, 10, 16, 112, 149, 3)     # the paper's geometry: 64 MB per raw video
        per = int(np.prod(shape))
        make_output(big, max(1, round(a.size_mb * 1e6 / per)), shape)
        res = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
               "shard_bytes": sum(p.stat().st_size for p in big.glob(fmt.SHARD_GLOB))}
        meta_s, _ = rerun_check(big, verify=False)
        warm_s, nbytes = rerun_check(big, verify=True)
        drop_cache(big)
        cold_s, _ = rerun_check(big, verify=True)
        gb = nbytes / 1e9
        res.update(verified_bytes=nbytes, metadata_only_s=meta_s, verify_warm_s=warm_s,
                   verify_cold_s=cold_s, s_per_gb_warm=warm_s / gb, s_per_gb_cold=cold_s / gb)

        small = make_output(Path(tmp) / "small", a.videos, (1, 2, 4, 8, 8, 3))
        reader = ShardReader(small)
        t0 = time.perf_counter()
        assert reader.damaged_entries() == []
        res["train_check_s_per_1000_videos"] = (time.perf_counter() - t0) / a.videos * 1000
    lines = [f"# Checking an existing output ({res['machine']})", "",
             f"- rerun checksum pass over {gb:.2f} GB of shards: {res['s_per_gb_warm']:.2f} s/GB "
             f"with the page cache warm, {res['s_per_gb_cold']:.2f} s/GB cold (the shards' pages "
             f"dropped); metadata alone (--no-verify) {meta_s:.3f} s",
             f"- metadata check of train/evaluate/ablate: "
             f"{res['train_check_s_per_1000_videos']:.2f} s per 1000 videos"]
    results = Path(__file__).resolve().parent / "results"
    results.mkdir(exist_ok=True)
    (results / "verify.json").write_text(json.dumps(res, indent=2) + "\n")
    (results / "verify.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
