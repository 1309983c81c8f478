"""`vaanet preprocess`: scan a dataset, decode every video once in parallel, write shards.

Workers (joblib: loky processes by default, any joblib backend, or a dask cluster) only decode
and return arrays; the parent process alone writes shards (pipeline/writer.py), so a crash or a
kill -9 at any moment leaves an output that the same command completes: committed videos are
never decoded again, failed videos are recorded once (retried with --retry-failed).

Exit status: 0 every video is ok, 1 some videos failed (listed in failures.jsonl),
2 usage error (bad options, wrong layout, output made with other parameters, a damaged
index.json or params.json), 3 the disk is full (DiskFull: free space, rerun the same command).

Test hook: the environment variable VAANET_TEST_CRASH_AFTER=N makes the run end abruptly with
os._exit(9) (as a kill -9 would) right after its N-th video is committed. Tests use it to check
that a resumed run completes without duplicates and without decoding anything twice.
"""
from __future__ import annotations

import hashlib
import itertools
import os
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from pipeline import atomic
from pipeline import format as fmt
from pipeline.datasets import folder_definition, load_definition, scan
from pipeline.params import FORMAT_VERSION, PreprocessParams, official_params
from pipeline.splits import make_splits, membership

# smaller frames and fewer segments for the built-in demo (the "demo" model preset matches)
DEMO_PARAMS = dict(segments=4, snippets=8, frames=8, short_side=64, max_long_side=96)
CRASH_HOOK = "VAANET_TEST_CRASH_AFTER"


class OutputRefused(ValueError):
    """The output directory cannot be used: other settings, not ours, or busy."""


DISK_FULL_EXIT = 3


class DiskFull(RuntimeError):
    """The output's file system is full (or over quota): the CLI prints the sentence and exits
    with DISK_FULL_EXIT."""


def is_disk_full(e: BaseException | None) -> bool:
    """ENOSPC/EDQUOT anywhere in the exception's chain (h5py and joblib wrap it)."""
    import errno
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if "No space left on device" in str(e) or "Disk quota exceeded" in str(e):
            return True
        e = e.__cause__ or e.__context__
    return False


@dataclass
class RunResult:
    out: Path
    scanned: int = 0
    selected: int = 0
    already_done: int = 0
    decoded: int = 0
    ok_now: int = 0
    failed_now: list = field(default_factory=list)   # (id, reason)
    ok_total: int = 0
    failed_total: int = 0
    shards: int = 0
    bytes_on_disk: int = 0
    seconds: float = 0.0
    salvaged: int = 0
    repaired: int = 0     # listed videos whose shard was missing or unreadable, decoded again
    changed: list = field(default_factory=list)   # ids whose source file changed: decoded again
    gone: list = field(default_factory=list)      # ids whose source file disappeared
    pruned: bool = False                          # ... and were removed (--prune-missing)
    damaged: dict = field(default_factory=dict)   # id -> why its stored entry is damaged
    damaged_unselected: list = field(default_factory=list)   # of those, left out by --limit
    verify: bool = True                           # False: --no-verify skipped the checksums
    verified: int = 0                             # stored videos checked against checksums
    verified_bytes: int = 0
    verify_seconds: float = 0.0

    @property
    def exit_code(self) -> int:
        return 1 if self.failed_total else 0


def default_params(dataset: str) -> PreprocessParams:
    return PreprocessParams(**DEMO_PARAMS) if dataset == "demo" else PreprocessParams()


def profile_params(dataset: str, profile: str = "paper", mfcc: str | None = None,
                   changes: dict | None = None) -> PreprocessParams:
    """The parameters of `vaanet preprocess --profile P --mfcc M` plus the options given
    (`changes`). The librosa recipe's window is nfft samples: without --winlen it gets that.
    Raises ValueError for a combination PreprocessParams refuses."""
    changes = dict(changes or {})
    if mfcc is not None:
        changes["mfcc"] = mfcc
    if profile == "official":
        return official_params(**changes)
    base = default_params(dataset)
    if changes.get("mfcc") == "librosa" and "winlen" not in changes:
        nfft, rate = changes.get("nfft", base.nfft), changes.get("sample_rate", base.sample_rate)
        changes["winlen"] = nfft / rate
    return base.replace(**changes)


def file_sha1(path, block: int = 1 << 20) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as f:
        while chunk := f.read(block):
            h.update(chunk)
    return h.hexdigest()


def decode_one(i: int, path: str, params: dict):
    """Runs in a worker: never raises, returns (i, result dict) with the arrays or the failure."""
    from pipeline.errors import VideoError
    from pipeline.extract import extract_video
    try:
        sha1 = file_sha1(path)
        p = PreprocessParams.from_dict(params)
        ex = extract_video(path, p)
        frames = ex.frames
        if p.codec == "jpeg":   # encoded here, in parallel, and ~7x less to send to the writer
            from pipeline.codec import encode_frames
            frames = encode_frames(frames, p.quality)
        return i, {"ok": True, "frames": frames, "mfcc": ex.mfcc, "info": ex.info, "sha1": sha1}
    except VideoError as e:
        return i, {"ok": False, "reason": e.reason, "log": e.log_tail}
    except OSError as e:
        return i, {"ok": False, "reason": f"unreadable file: {e.strerror or e}", "log": ""}
    except Exception as e:   # a bug must not stop the other videos; the traceback is kept
        return i, {"ok": False, "reason": f"internal error: {type(e).__name__}: {e}",
                   "log": "".join(traceback.format_exc().splitlines(True)[-12:])}


def round_robin(videos):
    """Interleave classes so that --limit N takes a few videos of every class."""
    by_class: dict[str, list] = {}
    for v in videos:
        by_class.setdefault(v.cls, []).append(v)
    mixed = itertools.zip_longest(*by_class.values())
    return [v for group in mixed for v in group if v is not None]


# ---- the output directory ----

def output_files(out: Path) -> list[Path]:
    names = [fmt.PARAMS, fmt.SPLITS, fmt.INDEX, fmt.FAILURES, fmt.JOURNAL]
    files = [out / n for n in names if (out / n).exists()]
    for pattern in (fmt.SHARD_GLOB, "*" + fmt.PARTIAL_SUFFIX, "*" + fmt.SALVAGE_SUFFIX, "*.tmp"):
        files += sorted(out.glob(pattern))
    return files


def check_output(out: Path, dataset: str, params: PreprocessParams, overwrite: bool,
                 source: dict | None = None):
    """Refuse to mix runs: an existing output must have the same dataset and parameters, and the
    same root, classes and polarity (`source`) where its params.json records them."""
    if not out.exists():
        return
    if overwrite:
        # params.json last: a run killed half-way through still reads as a vaanet output
        for p in sorted(output_files(out), key=lambda p: p.name == fmt.PARAMS):
            p.unlink()
        return
    pj = out / fmt.PARAMS
    if not pj.exists():
        if any(out.iterdir()):
            raise OutputRefused(f"{out} is not empty and holds no {fmt.PARAMS}: not a vaanet "
                                 "output; choose another --out")
        return
    old = fmt.read_json(pj)
    new = params.to_dict()
    diffs = []
    if old.get("dataset") != dataset:
        diffs.append(f"dataset {old.get('dataset')} -> {dataset}")
    for k, v in (source or {}).items():
        if k in old and old[k] != v:
            diffs.append(f"{k} {old[k]} -> {v}")
    # a parameter added after the output was made has the default that reproduces what was done
    defaults = PreprocessParams().to_dict()
    for k in sorted(set(old["params"]) | set(new)):
        was = old["params"].get(k, defaults.get(k))
        if was != new.get(k):
            diffs.append(f"{k} {was} -> {new.get(k)}")
    if diffs:
        raise OutputRefused(f"{out} was preprocessed with other settings ({'; '.join(diffs)}). "
                             "Rerun with the same settings to resume, pass --overwrite to "
                             "delete it and start again, or choose another --out")


def lock(out: Path):
    """One run per output directory: an exclusive lock on the directory itself (no lock file)."""
    import fcntl
    fd = os.open(out, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise OutputRefused(f"another `vaanet preprocess` is writing {out}") from None
    return fd


def default_jobs() -> int:
    """All usable cores (joblib counts CPU affinity and container quotas)."""
    import joblib
    return joblib.cpu_count()


def is_dask(backend) -> bool:
    return bool(backend) and (backend == "dask" or "://" in backend)


def check_backend(backend):
    """Fail before any work when the backend cannot be used."""
    import joblib
    if is_dask(backend):
        try:
            import dask.distributed  # noqa: F401
        except ImportError:
            raise ValueError("--backend dask or a scheduler address needs dask: "
                             "pip install 'vaanet[dask]'") from None
    elif backend and backend not in joblib.parallel.BACKENDS:
        raise ValueError(f"unknown --backend {backend!r}: expected one of "
                         f"{', '.join(sorted(joblib.parallel.BACKENDS))}, dask or tcp://HOST:PORT")


def make_parallel(jobs, backend):
    """A joblib Parallel yielding results as they finish, plus what to close afterwards."""
    import joblib
    client = None
    if is_dask(backend):   # workers anywhere; they must see the videos at the same paths
        from dask.distributed import Client
        client = Client(backend if "://" in backend else None)
        backend, jobs = "dask", -1
    # parallel_config (not Parallel(backend=...)) is what registers joblib's dask backend
    with joblib.parallel_config(backend=backend or "loky", n_jobs=jobs or default_jobs()):
        try:
            par = joblib.Parallel(return_as="generator_unordered")
        except ValueError:      # a backend that keeps order only
            par = joblib.Parallel(return_as="generator")
    return par, client


# ---- the run ----

def run(dataset: str, root, out, params: PreprocessParams, **kw) -> RunResult:
    """Preprocess `root` into `out` (see `_run`); a full disk raises DiskFull with what to do."""
    try:
        return _run(dataset, root, out, params, **kw)
    except BaseException as e:
        if is_disk_full(e):
            raise DiskFull(f"no space left on the device holding {out}: the videos already "
                           "written there are kept (the next run resumes after them); free some "
                           "space and run the same `vaanet preprocess` command again") from None
        raise


def _run(dataset: str, root, out, params: PreprocessParams, *, split_file=None,
         polarity_file=None, jobs=None, backend=None, limit=None, seed=None, overwrite=False,
         retry_failed=False, prune_missing=False, verify=True, progress=True,
         echo=print) -> RunResult:
    # the run's steps in their order (definition, output check, repair, decode loop, summary), kept in one place so the commit order of shards and journal reads as it happens
    from tqdm import tqdm
    from pipeline.writer import ShardWriter

    out = Path(out)
    check_backend(backend)
    d = folder_definition(root, polarity_file) if dataset == "folder" else load_definition(dataset)
    videos = scan(root, d)
    splits = make_splits(videos, d, split_file, seed)
    out.mkdir(parents=True, exist_ok=True)
    fd = lock(out)
    try:
        source = {"root": str(Path(root).resolve()), "classes": list(d.classes),
                  "polarity": list(d.polarity)}
        check_output(out, dataset, params, overwrite, source)
        if not (out / fmt.PARAMS).exists():
            atomic.write_json(out / fmt.PARAMS, {
                "format_version": FORMAT_VERSION, "dataset": dataset, **source,
                "params": params.to_dict()}, only_if_changed=True)
        atomic.write_json(out / fmt.SPLITS, splits, only_if_changed=True)
        selected = round_robin(videos)[:limit] if limit else videos
        writer = ShardWriter(out, params, dataset=dataset, classes=d.classes,
                             polarity=d.polarity, membership=membership(splits["splits"]),
                             split_names=list(splits["splits"]))
        # a new output's first index.json already says "not complete" (open() keeps an existing
        # output's record until the decoding starts)
        writer.header["run"] = {"complete": False, "expected": len(selected)}
        writer.open(verify=verify, progress=progress)   # an existing output: check what it keeps
        if retry_failed:
            writer.forget_failures({v.id for v in selected})
        from pipeline import sources
        changed, gone, restat = sources.check(writer.records, videos, file_sha1)
        writer.forget(changed)
        if prune_missing:
            writer.forget(gone)
        if changed or restat or (gone and prune_missing):
            writer.write_index()
        done = writer.done
        todo = [v for v in selected if v.id not in done]
        res = RunResult(out, scanned=len(videos), selected=len(selected),
                        already_done=len(selected) - len(todo), salvaged=writer.salvaged,
                        repaired=len(writer.repaired), changed=changed, gone=gone,
                        pruned=prune_missing, damaged=dict(writer.damaged), verify=verify,
                        damaged_unselected=sorted(set(writer.damaged) - {v.id for v in selected}),
                        verified=writer.verified, verified_bytes=writer.verified_bytes,
                        verify_seconds=writer.verify_seconds)
        # the completion record: cleared before any decoding, set only once every selected video
        # is committed, so a killed run reads as unfinished (inspect shows it, train refuses it);
        # a rerun with nothing to do rewrites nothing
        if todo:
            writer.header["run"] = {"complete": False, "expected": len(selected)}
            writer.write_index()
        crash_after = int(os.environ.get(CRASH_HOOK, 0))
        t0 = time.time()
        try:
            if todo:
                _decode_all(todo, params, jobs, backend, writer, res, crash_after, progress, tqdm)
            writer.close()
            writer.header["run"] = {"complete": True, "expected": len(selected)}
            writer.write_index()
            writer.remove_orphans()   # after the index: a damaged shard's videos stored again
        except BaseException:
            try:
                writer.abandon()   # journal + partial stay: the same command resumes
            except OSError:        # closing may fail on a full disk too; the journal says what is safe
                pass
            raise
        res.seconds = time.time() - t0
    finally:
        os.close(fd)
    records = fmt.read_json(out / fmt.INDEX)["videos"]
    res.ok_total = sum(r["status"] == fmt.OK for r in records)
    res.failed_total = sum(r["status"] == fmt.FAILED for r in records)
    res.shards = len(list(out.glob(fmt.SHARD_GLOB)))
    res.bytes_on_disk = sum(p.stat().st_size for p in output_files(out))
    echo(summary(res, dataset, root, jobs, backend))
    return res


def _decode_all(todo, params, jobs, backend, writer, res, crash_after, progress, tqdm):
    from joblib import delayed
    parallel, client = make_parallel(jobs, backend)
    p = params.to_dict()
    try:
        results = parallel(delayed(decode_one)(i, str(v.path), p) for i, v in enumerate(todo))
        bar = tqdm(results, total=len(todo), unit="video", disable=not progress,
                   desc="preprocess", dynamic_ncols=True)
        for i, r in bar:
            v = todo[i]
            res.decoded += 1
            if r["ok"]:
                writer.add(v, r["frames"], r["mfcc"], r["info"], r["sha1"])
                res.ok_now += 1
            else:
                writer.add_failure(v, r["reason"], r["log"])
                res.failed_now.append((v.id, r["reason"]))
                bar.set_postfix(failed=len(res.failed_now))
            if crash_after and res.decoded == crash_after:
                os._exit(9)
    finally:
        if client is not None:
            client.close()


def human_bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000


def summary(res: RunResult, dataset, root, jobs, backend) -> str:
    lines = [f"preprocess {dataset}: {res.scanned} videos under {root}"
             + (f", {res.selected} selected by --limit" if res.selected != res.scanned else "")]
    if res.already_done:
        lines.append(f"  already done: {res.already_done} (not decoded again"
                     + (f"; {res.salvaged} recovered from an interrupted shard" if res.salvaged
                        else "") + ")")
    if res.changed:
        lines.append(f"  source changed: {len(res.changed)} videos decoded again ("
                     + ", ".join(res.changed[:5]) + (", ..." if len(res.changed) > 5 else "") + ")")
    if res.gone:
        lines.append(f"  source gone: {len(res.gone)} listed videos no longer exist ("
                     + ", ".join(res.gone[:5]) + (", ..." if len(res.gone) > 5 else "") + "): "
                     + ("removed from the index (--prune-missing)" if res.pruned else
                        "kept; rerun with --prune-missing to remove them from the index"))
    if res.repaired:
        lines.append(f"  repaired: {res.repaired} listed videos whose shard was missing or "
                     "unreadable are decoded again")
    if res.verified:
        lines.append(f"  verified: {res.verified} stored videos ({human_bytes(res.verified_bytes)}"
                     f" of shards) against their checksums in {res.verify_seconds:.1f} s")
    elif not res.verify and res.already_done:
        lines.append("  verification skipped (--no-verify): the stored videos' checksums were "
                     "not checked")
    if res.damaged:
        named = [f"{i} ({why})" for i, why in sorted(res.damaged.items())[:5]]
        lines.append(f"  damaged: {len(res.damaged)} stored videos decoded again: "
                     + "; ".join(named) + ("; ..." if len(res.damaged) > 5 else ""))
        if res.damaged_unselected:
            lines.append(f"  of those, {len(res.damaged_unselected)} outside --limit were only "
                         "removed from the index (run without --limit to decode them again): "
                         + ", ".join(res.damaged_unselected[:5])
                         + (", ..." if len(res.damaged_unselected) > 5 else ""))
    if res.decoded:
        per = res.seconds / res.decoded
        workers = "dask workers" if is_dask(backend) else f"jobs {jobs or default_jobs()}"
        lines.append(f"  decoded now: {res.decoded} in {res.seconds:.1f} s ({per:.2f} s/video, "
                     f"{workers}, backend {backend or 'loky'}): "
                     f"{res.ok_now} ok, {len(res.failed_now)} failed")
        for vid, reason in res.failed_now[:10]:
            lines.append(f"    failed: {vid}: {reason}")
        if len(res.failed_now) > 10:
            lines.append(f"    ... and {len(res.failed_now) - 10} more")
    elif res.verify:
        lines.append("  nothing to decode: the output is complete")
    else:
        lines.append("  nothing to decode: every video is stored (its data not verified)")
    lines.append(f"  output {res.out}: {res.ok_total} ok, {res.failed_total} failed, "
                 f"{res.shards} shards, {human_bytes(res.bytes_on_disk)}")
    if res.failed_total:
        lines.append(f"  failures with ffmpeg's last lines: {res.out / fmt.FAILURES} "
                     "(rerun with --retry-failed after fixing the files); exit status 1")
    return "\n".join(lines)


def demo_root(out, root) -> Path:
    """Where the demo videos live: --root, else data/demo_videos, else <out>/../demo_videos."""
    if root:
        return Path(root)
    return Path("data/demo_videos") if out is None else Path(out).parent / "demo_videos"


def ensure_demo_videos(root: Path, seed: int = 0, echo=print) -> Path:
    """Generate the demo videos; make_demo_videos keeps files it already made (cheap rerun)."""
    from pipeline.demo import make_demo_videos
    echo(f"demo videos: {root}")
    return make_demo_videos(root, seed=seed)
