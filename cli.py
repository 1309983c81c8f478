"""The `vaanet` command line: one command per user verb.

Commands stay thin: they parse and validate options, then call into `pipeline`, `model` and
`trainer`, and print what those return. Heavy imports (torch, h5py) happen inside the commands
so that `vaanet --help` is instant. The library logs through `logging`; `main` configures it.
"""
from __future__ import annotations

import contextlib
import logging
import sys

import click


class _TqdmHandler(logging.Handler):
    """Log records to stderr through tqdm.write, so that a progress bar is not broken by them."""

    def emit(self, record):
        try:
            from tqdm import tqdm
            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:
            self.handleError(record)


def _configure_logging(quiet: bool, verbose: bool) -> None:
    """vaanet's own loggers (pipeline, model, trainer) at INFO, DEBUG with --verbose, WARNING with
    --quiet; other libraries' records at WARNING. Called once per command (idempotent)."""
    root = logging.getLogger()
    for h in [h for h in root.handlers if isinstance(h, _TqdmHandler)]:
        root.removeHandler(h)
    handler = _TqdmHandler()
    handler.setFormatter(logging.Formatter("%(message)s" if not verbose
                                           else "%(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    if root.level == logging.NOTSET or root.level > logging.WARNING:
        root.setLevel(logging.WARNING)
    level = logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO
    for name in ("pipeline", "model", "trainer"):
        logging.getLogger(name).setLevel(level)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="vaanet")
@click.option("--quiet", "-q", is_flag=True,
              help="Only warnings and errors: no progress messages and no progress bars.")
@click.option("--verbose", "-v", is_flag=True, help="Also debug messages, with their origin.")
@click.pass_context
def main(ctx, quiet, verbose):
    """Emotion recognition in user-generated videos (VAANet, AAAI 2020; DFAN, ICME 2020).

    \b
    Two stages, decoupled by files on disk:
      vaanet preprocess --dataset e6 --root E6/   decode every video once into HDF5 shards
      vaanet train --data data/processed/e6       stream the shards into the network
    Start with the built-in demo:  vaanet preprocess --dataset demo && vaanet train
    Messages go to stderr (-q: none, -v: more), results to stdout.
    """
    if quiet and verbose:
        raise click.UsageError("--quiet and --verbose exclude each other")
    ctx.obj = {"quiet": quiet}
    _configure_logging(quiet, verbose)


def _quiet() -> bool:
    """The top-level --quiet (no progress bars)."""
    obj = click.get_current_context().find_root().obj
    return bool(obj and obj.get("quiet"))


# ---- ETL commands (pipeline/) -------------------------------------------------------------
# preprocess, inspect: defined below this line.

def _param_option(name, help):
    return click.option(f"--{name.replace('_', '-')}", name, type=int, default=None,
                        metavar="N", help=help)


@main.command()
@click.option("--dataset", type=click.Choice(["e6", "ve8", "folder", "demo"]), required=True,
              help="Layout and class list: Ekman-6, VideoEmotion-8, your own class folders, or "
                   "the built-in generated demo.")
@click.option("--root", type=click.Path(file_okay=False, path_type=str), default=None,
              help="Folder with one subfolder per class holding the videos (not for demo).")
@click.option("--out", type=click.Path(file_okay=False, path_type=str), default=None,
              help="Output folder  [default: data/processed/DATASET]")
@click.option("--split-file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Train/test split: text lines 'train CLASS/NAME' / 'test CLASS/NAME', or "
                   "JSON {\"train\": [...], \"test\": [...]} or a splits.json.")
@click.option("--polarity-file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="folder only: lines 'CLASS positive|negative' (or JSON {\"negative\": [...]}).")
@click.option("--jobs", type=click.IntRange(min=1), default=None, metavar="N",
              help="Parallel decoding workers  [default: all cores]")
@click.option("--backend", default=None, metavar="NAME|tcp://HOST:PORT",
              help="joblib backend: loky (default, processes), multiprocessing, threading, or "
                   "dask / a dask scheduler address (needs `pip install vaanet[dask]` and the "
                   "videos at the same path on every worker).")
@click.option("--limit", type=click.IntRange(min=1), default=None, metavar="N",
              help="Process only N videos (taken from every class in turn): a quick try.")
@_param_option("segments", "t: equal segments per video  [default: 10; demo 4]")
@_param_option("snippets", "S: snippets (start positions spread over each segment) kept per "
                           "segment; training draws one per segment every epoch, evaluation "
                           "takes the middle one  [default: 8]")
@_param_option("frames", "k: successive frames per snippet  [default: 16; demo 8]")
@_param_option("short_side", "Frames resized to this short side  [default: 112; demo 64]")
@_param_option("max_long_side", "Long side centre-cropped to at most this  [default: 200; "
                                 "demo 96]")
@_param_option("sample_rate", "Audio resampled to this rate (Hz, mono)  [default: 16000]")
@_param_option("n_mfcc", "MFCC coefficients per audio frame  [default: 32]")
@_param_option("n_filt", "Mel filters, at least --n-mfcc  [default: 40]")
@_param_option("nfft", "FFT size, at least one window of samples  [default: 512]")
@click.option("--codec", type=click.Choice(["jpeg", "raw"]), default=None,
              help="Frame storage: jpeg (each frame a JPEG, ~7x smaller, decoded by the loader "
                   "workers) or raw uint8 (no loss, no decode)  [default: jpeg]")
@click.option("--quality", type=click.IntRange(1, 100), default=None, metavar="Q",
              help="JPEG quality of --codec jpeg  [default: 90]")
@click.option("--winlen", type=click.FloatRange(min=0, min_open=True), default=None, metavar="S",
              help="MFCC window length in seconds  [default: 0.025]")
@click.option("--winstep", type=click.FloatRange(min=0, min_open=True), default=None, metavar="S",
              help="MFCC hop in seconds  [default: 0.01, i.e. 100 frames/s]. The authors' "
                   "features: --profile official.")
@click.option("--profile", type=click.Choice(["paper", "official"]), default="paper",
              show_default=True,
              help="official: the data the authors' checkpoints were trained on (for `vaanet "
                   "import-checkpoint` models): 12 segments of 16 frames, every frame through "
                   "JPEG at height 240 first, the sound through an MP3 round trip and librosa's "
                   "MFCC (32 per 2048 samples, hop 512, 44.1 kHz). Options it fixes cannot be "
                   "changed; --short-side, --max-long-side, --snippets and the rest can.")
@click.option("--mfcc", "mfcc_recipe", type=click.Choice(["psf", "librosa"]), default=None,
              help="MFCC recipe: python_speech_features' (psf, default of the paper profile) or "
                   "librosa's (the authors' code; windows of --nfft samples, hop --winstep)  "
                   "[default: psf; official: librosa]")
@click.option("--shard-size-mb", type=click.FloatRange(min=0, min_open=True), default=None,
              metavar="MB", help="Target shard file size  [default: 1024]")
@click.option("--seed", type=int, default=None,
              help="Seed of the random splits (ve8, folder) and of the demo videos  [default: 0]")
@click.option("--overwrite", is_flag=True,
              help="Delete an existing output made with other settings and start again.")
@click.option("--retry-failed", is_flag=True, help="Decode videos that failed before again.")
@click.option("--prune-missing", is_flag=True,
              help="Remove from the index the videos whose source file no longer exists "
                   "(otherwise they are kept and reported).")
@click.option("--no-verify", is_flag=True,
              help="On an existing output, skip reading every stored video back against its "
                   "checksums (for huge outputs; damage only the checksums reveal then stays "
                   "until a run without it).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def preprocess(dataset, root, out, split_file, polarity_file, jobs, backend, limit, shard_size_mb,
               seed, overwrite, retry_failed, quiet, profile, mfcc_recipe, prune_missing,
               no_verify, **overrides):
    """Decode every video once into HDF5 shards that `vaanet train` streams.

    \b
    Layout of --root (class folders matched ignoring case; ids are CLASS/NAME):
      ROOT/anger/clip01.mp4   ROOT/anger/clip02.avi   ROOT/joy/...
    Video files: mp4 avi webm mkv mov flv 3gp m4v mpg; other files are skipped with a warning.

    \b
    Splits, stored in OUT/splits.json:
      e6, demo  one split "alternating": each class's sorted files alternate train, test,
                ... (not the paper's E-6 819/818 split: pass that as --split-file)
      ve8, folder  ten seeded stratified random splits "0".."9", 2/3 of every class train
      --split-file replaces either rule.

    \b
    Output (OUT): index.json (every video: label, class, splits, shapes, status, sha1),
    shard-NNNNN.h5 (frames uint8 [S,t,k,H,W,3] and mfcc float32 [T,n] per video), splits.json,
    params.json, failures.jsonl (id, path, reason, ffmpeg's last lines).

    \b
    Interrupted (even kill -9)? Run the same command again: finished videos are kept and not
    decoded again. On a finished output it changes nothing.

    \b
    Examples:
      vaanet preprocess --dataset demo
      vaanet preprocess --dataset e6 --root ~/data/Ekman6 --split-file e6_split.txt
      vaanet preprocess --dataset ve8 --root ~/data/VideoEmotion8 --jobs 8
      vaanet preprocess --dataset folder --root my_videos --polarity-file polarity.txt
      vaanet preprocess --dataset ve8 --root ~/data/VE8 --profile official --out ve8-official

    \b
    Exit status: 0 all videos ok, 1 some videos failed (see failures.jsonl),
    2 usage error (options, layout, an output made with other settings, or a damaged
    index.json/params.json: --overwrite), 3 disk full (free space, rerun the same command),
    130 interrupted (Ctrl-C; rerun the same command).

    \b
    A rerun also repairs: it reads every stored video back against its checksums (a progress
    bar; --no-verify skips that) and decodes again the videos whose data or shard metadata is
    damaged, whose shard is missing or unreadable, and whose source file changed (size/mtime,
    then SHA-1); videos whose source is gone are
    reported (--prune-missing removes them). index.json records whether the run finished
    (`vaanet inspect` shows "unfinished"; train/evaluate/ablate refuse it without
    --allow-incomplete).
    """
    # long only through its option checks: each turns one option into a usage error before any work
    import warnings
    from pipeline import preprocess as pp

    if dataset != "demo" and root is None:
        raise click.UsageError(f"--root is required for --dataset {dataset}: the folder with one "
                               "subfolder per class")
    if polarity_file and dataset != "folder":
        raise click.UsageError(f"--polarity-file is for --dataset folder; {dataset} has its "
                               f"polarity in data/datasets/{dataset}.json")
    changes = {k: v for k, v in overrides.items() if v is not None}
    if shard_size_mb is not None:
        changes["shard_size_mb"] = int(shard_size_mb) if shard_size_mb == int(shard_size_mb) \
            else shard_size_mb
    try:
        params = pp.profile_params(dataset, profile, mfcc_recipe, changes)
    except ValueError as e:
        raise click.UsageError(str(e)) from None
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = lambda msg, *a, **k: click.echo(f"warning: {msg}", err=True)
        try:
            if dataset == "demo" and root is None:
                root = pp.demo_root(out, None)
                pp.ensure_demo_videos(root, seed=seed or 0, echo=click.echo)
            result = pp.run(dataset, root, out or f"data/processed/{dataset}", params,
                            split_file=split_file, polarity_file=polarity_file, jobs=jobs,
                            backend=backend, limit=limit, seed=seed, overwrite=overwrite,
                            retry_failed=retry_failed, prune_missing=prune_missing,
                            verify=not no_verify,
                            progress=not (quiet or _quiet()),
                            echo=click.echo)
        except ValueError as e:
            raise click.UsageError(str(e)) from None
        except pp.DiskFull as e:
            click.echo(f"error: {e}", err=True)
            raise SystemExit(pp.DISK_FULL_EXIT)
        except KeyboardInterrupt:
            click.echo("\ninterrupted: run the same command again to resume", err=True)
            raise SystemExit(130)
    raise SystemExit(result.exit_code)


@main.command()
@click.argument("directory", type=click.Path(exists=True, file_okay=False))
@click.option("--json", "as_json", is_flag=True,
              help="One JSON object per video (id, label, class, splits, has_audio, frames_shape, "
                   "mfcc_shape, status, ...) instead of the summary.")
@click.option("--verify", is_flag=True,
              help="Read every sample back: recompute every array's checksum (names each damaged "
                   "video and its shard), check shapes, dtypes and finite values.")
def inspect(directory, as_json, verify):
    """Summarise a preprocessed directory: videos per class and split, failures, size, parameters.

    \b
    Examples:
      vaanet inspect data/processed/demo
      vaanet inspect data/processed/e6 --json | grep '"has_audio": false'
      vaanet inspect data/processed/e6 --verify     # exit status 1 if anything is wrong
    """
    import json as _json
    from pipeline import inspect as ins

    try:
        if as_json:
            for rec in ins.records(directory):
                click.echo(_json.dumps(rec))
        else:
            click.echo(ins.summary(directory))
    except (FileNotFoundError, ValueError) as e:
        raise click.UsageError(str(e)) from None
    if verify:
        problems = ins.verify(directory, progress=not as_json)
        for p in problems:
            click.echo(f"problem: {p}", err=True)
        n = len(ins.records(directory))
        click.echo(f"verify: {'OK' if not problems else f'{len(problems)} problems'} "
                   f"({n} videos in the index)", err=as_json)
        if problems:
            raise SystemExit(1)


# ---- model commands (model/) --------------------------------------------------------------
# model-info, import-checkpoint: defined below this line.

@main.command("model-info")
@click.option("--preset", "preset_name",
              type=click.Choice(["paper", "official", "demo", "dfan", "dfan-demo"]),
              default="paper", show_default=True, help="Model preset (dfan*: the DFAN network).")
@click.option("--attn", default=None, metavar="SPEC",
              help="Attentions, e.g. VS+VCW+VT+AT (the default), VS+VCW, AT, or none; "
                   "DFAN: VS, VT, AT (default VS+VT).")
@click.option("--num-classes", type=int, default=None, help="Classes (default: the preset's).")
@click.option("--streams", type=click.Choice(["visual", "audio", "both"]), default=None,
              help="Override the streams the attention spec implies (paper's ablation table).")
@click.option("--kinds", default=None, metavar="SPEC",
              help="DFAN feature kinds, e.g. action+object+scene (the default) or action+scene.")
def model_info(preset_name, attn, num_classes, streams, kinds):
    """Print the architecture and per-module parameter counts of a preset (trainable as
    `vaanet train` trains it: the demo presets' frozen 3D ResNet counts as frozen).

    \b
    Examples:
      vaanet model-info --preset official --num-classes 8   (counts of the authors' code)
      vaanet model-info --attn VS+VCW                      (a visual-only ablation)
      vaanet model-info --preset dfan --kinds action+scene (DFAN without object features)
    """
    import torch

    from model.build import build_model
    from model.config import preset
    from model.summary import format_summary

    from trainer.run_config import PRESET_DEFAULTS
    overrides = {k: v for k, v in dict(attention=attn, num_classes=num_classes, streams=streams,
                                        dfan_kinds=kinds).items() if v is not None}
    # the preset's training default (demo: the 3D ResNet frozen), so the counts are train's
    freeze = PRESET_DEFAULTS.get(preset_name, {}).get("freeze_visual")
    if freeze is not None:
        overrides["freeze_visual"] = freeze
    try:
        cfg = preset(preset_name, **overrides)
        if kinds is not None and cfg.arch != "dfan":
            raise ValueError(f"--kinds applies to DFAN presets only (dfan, dfan-demo), not "
                             f"{preset_name!r}")
    except ValueError as e:
        raise click.UsageError(str(e)) from None
    with torch.device("meta"):  # shapes only: no memory, no random init
        model = build_model(cfg)
    click.echo(format_summary(model, preset_name))


@main.command("import-checkpoint")
@click.argument("src", type=click.Path(exists=True, dir_okay=False))
@click.argument("dst", type=click.Path(dir_okay=False))
@click.option("--num-classes", type=int, default=None,
              help="Expected classes (checked against the file; default: read from it).")
@click.option("--dataset", default=None, metavar="NAME",
              help="Dataset definition giving the class names (default: ve8 for 8 classes, e6 for 6).")
def import_checkpoint(src, dst, num_classes, dataset):
    """Convert a checkpoint of the authors' VAANet code into a vaanet checkpoint.

    SRC is the {'epoch', 'state_dict', 'optimizer'} file their training script saved; it is read
    with torch.load(weights_only=True), so a file carrying pickled code is refused. DST gets a
    vaanet checkpoint of the `official` preset (usable by `vaanet evaluate`) and, beside it,
    DST's name with .config.json: the model configuration and classes.
    """
    from pathlib import Path

    from model.official import build_from_official
    from pipeline import atomic
    from pipeline.datasets import load_definition
    from trainer import checkpoint

    try:
        model, cfg, meta = build_from_official(src, num_classes=num_classes)
    except ValueError as e:
        raise click.UsageError(str(e)) from None
    if dataset is None:
        dataset = {8: "ve8", 6: "e6"}.get(cfg.num_classes)
        if dataset is not None:
            click.echo(f"{cfg.num_classes} classes: assuming dataset {dataset} (use --dataset to choose)")
    if dataset is not None:
        try:
            definition = load_definition(dataset)
        except (ValueError, KeyError, FileNotFoundError) as e:
            raise click.UsageError(str(e)) from None
        if len(definition.classes) != cfg.num_classes:
            raise click.UsageError(f"dataset {dataset} has {len(definition.classes)} classes, the "
                                   f"checkpoint {cfg.num_classes}")
        classes, polarity = list(definition.classes), list(definition.polarity)
    else:
        classes, polarity = [f"class{i}" for i in range(cfg.num_classes)], None
    dst = Path(dst)
    epoch = int(meta.get("epoch", 0))
    checkpoint.save(dst, model=model.state_dict(), optimizer=None, scaler=None, epoch=epoch,
                    model_config=cfg.to_dict(), run_config={}, classes=classes, polarity=polarity,
                    best=None, imported_from=str(src))
    config_path = dst.with_name(dst.stem + ".config.json")
    atomic.write_json(config_path, {"model_config": cfg.to_dict(), "classes": classes,
                                    "polarity": polarity, "epoch": epoch, "imported_from": str(src)})
    click.echo(f"imported {src} (epoch {epoch}, {cfg.num_classes} classes, 3D ResNet-"
               f"{cfg.visual_depth}, {cfg.segments} visual / {cfg.audio_segments} audio segments)"
               f"\nwrote {dst} and {config_path}")


# ---- trainer commands (model/) ------------------------------------------------------------
# train, evaluate, ablate: defined below this line.

def _given(ctx, values: dict) -> dict:
    """Only the options the user actually gave, so that a --config file's values survive."""
    from click.core import ParameterSource
    return {k: v for k, v in values.items()
            if ctx.get_parameter_source(k) not in (ParameterSource.DEFAULT, None)}


_ALLOW_INCOMPLETE = click.option(
    "--allow-incomplete", is_flag=True, default=False,
    help="Use a preprocessed folder whose `vaanet preprocess` run did not finish (refused "
         "otherwise, saying how many videos are missing).")


def _allow_incomplete(flag: bool) -> None:
    """--allow-incomplete reaches trainer.data.open_data (and torchrun's processes) this way."""
    if flag:
        import os
        from trainer.data import ALLOW_INCOMPLETE_ENV
        os.environ[ALLOW_INCOMPLETE_ENV] = "1"


def _training_options(f):
    """Options shared by `train` and `ablate` (every one overrides --config FILE)."""
    # a list of option declarations, not logic
    options = [
        click.option("--data", type=click.Path(file_okay=False), default=None,
                     help="Preprocessed dataset folder (`vaanet preprocess --out`). Default: "
                          "data/processed/demo when it exists (and then --preset demo)."),
        click.option("--preset", type=click.Choice(["paper", "official", "demo", "dfan", "dfan-demo"]),
                     default=None,
                     help="Model preset and its training defaults: paper (150 epochs, batch 32, "
                          "lr 2e-4, t=10, k=16, ResNet-101 + ResNet-18), official (the authors' code, "
                          "100 epochs), demo (tiny, CPU), dfan (DFAN: action, object and scene "
                          "features) or dfan-demo (tiny DFAN). [default: paper]"),
        click.option("--loss", type=click.Choice(["ce", "pcce"]), default=None,
                     help="Cross-entropy or polarity-consistent CE. [default: pcce]"),
        click.option("--lam", type=float, default=None, help="PCCE lambda. [default: 0.5]"),
        click.option("--epochs", type=int, default=None),
        click.option("--batch-size", type=int, default=None,
                     help="Global batch: with --gpus N each process takes batch/N, so it must "
                          "divide by N (else refused, naming the nearest valid sizes). "
                          "[default: the preset's, 32; demo 4]"),
        click.option("--lr", type=float, default=None, help="Adam learning rate."),
        click.option("--visual-weights", type=click.Path(dir_okay=False), default=None,
                     help="Hara 3D ResNet checkpoint (e.g. resnet-101-kinetics.pth)."),
        click.option("--audio-weights", type=click.Path(dir_okay=False), default=None,
                     help="torchvision ResNet-18 ImageNet state dict (resnet18-f37072fd.pth)."),
        click.option("--object-weights", type=click.Path(dir_okay=False), default=None,
                     help="DFAN only: torchvision ImageNet ResNet state dict for the object stream."),
        click.option("--scene-weights", type=click.Path(dir_okay=False), default=None,
                     help="DFAN only: Places365 ResNet checkpoint for the scene stream."),
        click.option("--freeze-visual/--no-freeze-visual", default=None,
                     help="Freeze the 3D ResNet (no gradient). [default: the preset's]"),
        click.option("--split", default=None,
                     help="Split of the data to train on, or 'all' for every split (VE-8 protocol: "
                          "mean +- std over its 10 splits). [default: the data's first split]"),
        click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default=None,
                     help="[default: auto, CUDA when present]"),
        click.option("--amp", type=click.Choice(["auto", "none", "bf16", "fp16"]), default=None,
                     help="Mixed precision: bf16, or fp16 with a gradient scaler (CUDA); auto: bf16 "
                          "on a CUDA device that supports it, none on CPU (config.json records the "
                          "choice). [default: auto]"),
        click.option("--channels-last/--no-channels-last", default=None,
                     help="Run the 3D convolutions in channels_last_3d (NDHWC) on CUDA. "
                          "[default: off]"),
        click.option("--sync-bn/--no-sync-bn", default=None,
                     help="With several GPU processes: BatchNorm statistics over the whole global "
                          "batch (SyncBatchNorm) instead of each GPU's share. [default: off]"),
        click.option("--workers", type=int, default=None,
                     help="Loader worker processes per GPU process. [default: (cores - processes) "
                          "// processes, between 1 and 16]"),
        click.option("--decode", type=click.Choice(["workers", "device"]), default=None,
                     help="Where JPEG frames are decoded: in the loader workers (libjpeg-turbo), or "
                          "after the transfer on the training device (nvJPEG on CUDA, through TorchCodec "
                          "or torchvision built for this torch). [default: workers]"),
        click.option("--seed", type=int, default=None, help="[default: 0]"),
        click.option("--val-fraction", type=float, default=None,
                     help="Seeded share of each class of the training split held out for model "
                          "selection; 0 selects the last epoch. [default: 0.1]"),
        click.option("--select-on-test", is_flag=True, default=None,
                     help="Select the best epoch on the TEST split instead (as the authors' code; "
                          "named so in every output)."),
        click.option("--resume", is_flag=True, default=None,
                     help="Continue a killed run from RUN_DIR/last.pt with the same options; "
                          "only --epochs (more), --workers, --decode, --device, --amp, "
                          "--channels-last may "
                          "change (recorded in config.json), any other difference is refused."),
        click.option("--config", "config_file", type=click.Path(dir_okay=False), default=None,
                     help="JSON (or YAML, with pyyaml) file of option values; flags override it. "
                          "A run's RUN_DIR/config.json is one."),
        click.option("--gpus", type=int, default=1, show_default=True,
                     help="Processes (GPUs) on this machine: N > 1 relaunches this command under "
                          "torchrun with DistributedDataParallel."),
        _ALLOW_INCOMPLETE,
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _check_gpus(gpus: int, device: str) -> None:
    """--gpus N against the visible GPUs when the run uses CUDA; on CPU, N gloo processes."""
    if gpus < 1:
        raise click.UsageError(f"--gpus must be >= 1, got {gpus}")
    import torch
    if gpus > 1 and device != "cpu" and torch.cuda.is_available():
        visible = torch.cuda.device_count()
        if gpus > visible:
            raise click.UsageError(f"--gpus {gpus} but only {visible} GPU(s) are visible "
                                   f"(CUDA_VISIBLE_DEVICES); use --gpus {visible} or fewer")
    elif gpus > 1 and device == "cuda":
        raise click.UsageError(f"--gpus {gpus} --device cuda but no CUDA device is available")


@contextlib.contextmanager
def _training_run_ends():
    """How `train` and `ablate` end on a failure they expect: a usage error (exit 2), a full disk
    (its message says what is intact and how to go on; exit 3), another --gpus process's failure
    (its status); the process group is left in every case."""
    from trainer import distributed, run_config
    from trainer.errors import DiskFullError
    try:
        yield
    except run_config.RunError as e:
        raise click.UsageError(str(e)) from None
    except DiskFullError as e:
        click.echo(f"Error: {e}", err=True)
        raise SystemExit(DiskFullError.EXIT_STATUS) from None
    except distributed.PeerFailed as e:  # rank 0 has said what happened; stop with its status
        if distributed.rank() == 0:
            click.echo(f"Error: {e}", err=True)
        raise SystemExit(e.status) from None
    finally:
        distributed.cleanup()


def _relaunch(gpus: int, batch_size: int, out: str | None = None, device: str = "auto") -> None:
    """`--gpus N`: run the same command line under torchrun with N processes, then exit; `out`
    is passed on explicitly so that every process writes to the folder resolved here. N is
    checked against the visible GPUs, and a global batch that does not divide over N is refused
    here, before any process starts."""
    from trainer import distributed, run_config
    from trainer.train import per_process_batch
    _check_gpus(gpus, device)
    if gpus > 1 and not distributed.under_torchrun():
        try:
            per_process_batch(batch_size, gpus)
        except run_config.RunError as e:
            raise click.UsageError(str(e)) from None
        argv, skip = [], False
        for a in sys.argv[1:]:
            if skip:
                skip = False
            elif a == "--gpus":
                skip = True
            elif not a.startswith("--gpus="):
                argv.append(a)
        if out is not None and "--out" not in argv and not any(a.startswith("--out=") for a in argv):
            argv += ["--out", out]
        raise SystemExit(distributed.launch(gpus, argv))


def _resolve_run(ctx, values: dict, config_file, out_prefix: str = "", fresh_out: bool = False):
    from trainer import run_config
    try:
        return run_config.resolve(_given(ctx, values), config_file, out_prefix, fresh_out)
    except run_config.RunError as e:
        raise click.UsageError(str(e)) from None


@main.command()
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="RUN_DIR. [default: runs/<data folder name>-<preset>, or with -2, -3, ... "
                   "when that exists; with --resume the existing one]")
@click.option("--attn", default=None, metavar="SPEC",
              help="Attentions: VS, VCW, VT (visual) and AT (audio) joined by '+', or none; "
                   "the streams follow (AT alone: audio only). [default: VS+VCW+VT+AT]")
@_training_options
@click.pass_context
def train(ctx, config_file, gpus, **values):
    """Train VAANet (or DFAN) on preprocessed shards; test the best and last model.

    \b
    Each epoch: training loss and accuracy, validation metrics (a seeded carve-out of the
    training split selects the best epoch), data-wait share and samples/s. At the end the
    test split is evaluated with the best and the last model.
    RUN_DIR gets: config.json (resolved options), last.pt and best.pt (written atomically;
    --resume continues from last.pt), metrics.jsonl (one record per epoch, then the tests),
    predictions-{best,last}-test.csv, results.json, results.md, and TensorBoard events in
    RUN_DIR/tensorboard when tensorboard is installed (pip install tensorboard).
    \b
    Demo:  vaanet preprocess --dataset demo && vaanet train
    
    Exit status: 0 done, 2 usage error (options, data: unfinished, or a damaged shard entry,
    named, which the same `vaanet preprocess` command repairs; a --resume that changes the run,
    not one optimisation step), 3 disk full (last.pt of the previous epoch is intact:
    free space, then the same command with --resume), 1 a bug (traceback). With --gpus N
    every process stops with the status of the one that failed.
    """
    from trainer import distributed
    _allow_incomplete(values.pop("allow_incomplete"))
    # without --out, a repeated command starts a new run (runs/NAME-2, ...); under torchrun the
    # launching process has resolved the folder already and passed it with --out
    cfg = _resolve_run(ctx, values, config_file, fresh_out=not distributed.under_torchrun())
    if cfg.data is None:
        raise click.UsageError("no --data given and data/processed/demo does not exist: pass "
                               "--data DIR or run `vaanet preprocess --dataset demo` first")
    _relaunch(gpus, cfg.batch_size, cfg.out, cfg.device)
    with _training_run_ends():
        if cfg.split == "all":
            from trainer.protocol import run_all_splits, summary_markdown
            text = summary_markdown(run_all_splits(cfg, quiet=_quiet()))
        else:
            from trainer.train import results_table, train as run_training
            text = results_table(run_training(cfg, quiet=_quiet())) + (
                f"\n\nrun folder: {cfg.out} (checkpoints, metrics.jsonl, predictions, results.md); "
                f"vaanet evaluate --run {cfg.out}")
    if distributed.rank() == 0:
        click.echo(text)


@main.command()
@click.option("--run", "run_dir", type=click.Path(file_okay=False), default=None,
              help="RUN_DIR of `vaanet train`: evaluates its best.pt (see --which) on its data and split.")
@click.option("--checkpoint", "ckpt", type=click.Path(dir_okay=False), default=None,
              help="A checkpoint file (best.pt / last.pt) instead of --run.")
@click.option("--which", type=click.Choice(["best", "last"]), default="best", show_default=True,
              help="With --run: which checkpoint.")
@click.option("--data", type=click.Path(file_okay=False), default=None,
              help="Preprocessed dataset folder. [default: the run's]")
@click.option("--split", default=None, help="[default: the run's split]")
@click.option("--part", type=click.Choice(["test", "train"]), default="test", show_default=True)
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Folder for the predictions CSV and metrics JSON. [default: the checkpoint's folder]")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--amp", type=click.Choice(["auto", "none", "bf16", "fp16"]), default="auto", show_default=True,
              help="auto: bf16 on a CUDA device that supports it, none on CPU.")
@click.option("--channels-last", is_flag=True, default=False,
              help="Run the 3D convolutions in channels_last_3d on CUDA.")
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--workers", type=click.IntRange(min=0), default=None,
              help="Loader worker processes. [default: cores - 1, between 1 and 16]")
@_ALLOW_INCOMPLETE
def evaluate(run_dir, ckpt, which, data, split, part, out, device, amp, channels_last, batch_size,
             workers, allow_incomplete):
    """Deterministic evaluation of a trained model (fixed snippet, centre crop, no flip).

    \b
    Writes predictions-<checkpoint>-split<S>-<part>.csv (id, label, prediction, label and
    predicted polarity, correct, one probability per class) and eval-...json (accuracy,
    per-class accuracy, mean class accuracy, polarity accuracy, macro-F1, confusion matrix).
    Two runs on the same checkpoint and data give identical files.
    """
    from trainer import run_config
    from trainer.evaluate import evaluate as run_evaluation
    from trainer.metrics import format_report
    _allow_incomplete(allow_incomplete)
    try:
        res = run_evaluation(run=run_dir, ckpt_path=ckpt, data=data, split=split, part=part,
                             which=which, device=device, batch_size=batch_size, workers=workers,
                             amp=amp, out=out, channels_last=channels_last)
    except run_config.RunError as e:
        raise click.UsageError(str(e)) from None
    click.echo(format_report(res["report"], res["classes"], f"split {res['split']}, {res['part']} part:"))
    click.echo(f"predictions: {res['predictions']}\nmetrics:     {res['metrics']}")


@main.command()
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Folder of the runs and the table. [default: runs/ablate-<data folder name>-<preset>]")
@click.option("--attn", "attns", multiple=True, metavar="SPEC",
              help="A row's attentions (repeatable), e.g. --attn VS --attn VS+VCW; 'paper' runs the "
                   "paper's whole ablation (AT, VS, VS+VCW, VS+VCW+VT, VS+VCW+VT+AT with PCCE, and "
                   "VS+VCW+VT, VS+VCW+VT+AT with CE). [default: paper]")
@_training_options
@click.pass_context
def ablate(ctx, attns, config_file, gpus, **values):
    """Train and test one configuration per --attn (and --loss), then print one table.

    \b
    Columns: attention, streams, loss, test accuracy per class, overall accuracy, and for VE-8
    and E-6 the paper's accuracy for the same row. Written to OUT/ablation.md and
    OUT/ablation.csv; each row's run is OUT/<attention>-<loss>/ (a full `vaanet train` RUN_DIR).
    With --split all each row runs every split and reports the mean.
    """
    from trainer import distributed
    _allow_incomplete(values.pop("allow_incomplete"))
    given_loss = values.pop("loss")
    # without --out, the same command again starts a new table (-2, -3, ...), as train does
    cfg = _resolve_run(ctx, values, config_file, out_prefix="ablate-",
                       fresh_out=not distributed.under_torchrun())
    if cfg.data is None:
        raise click.UsageError("no --data given and data/processed/demo does not exist")
    _relaunch(gpus, cfg.batch_size, cfg.out, device=cfg.device)
    with _training_run_ends():
        from trainer.ablate import markdown, run_ablation
        table = run_ablation(cfg, list(attns), [given_loss] if given_loss else [], quiet=_quiet())
    if distributed.rank() == 0:
        click.echo(markdown(table))



# predict, report: defined below this line.

@main.command()
@click.argument("videos", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--checkpoint", "ckpt", type=click.Path(dir_okay=False), default=None,
              help="A checkpoint file (best.pt, last.pt, or one made by `vaanet import-checkpoint`).")
@click.option("--run", "run_dir", type=click.Path(file_okay=False), default=None,
              help="RUN_DIR of `vaanet train`: its best.pt (see --which).")
@click.option("--which", type=click.Choice(["best", "last"]), default="best", show_default=True,
              help="With --run: which checkpoint.")
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Write every video's row with all class probabilities to FILE.json or FILE.csv.")
@click.option("--explain", "explain_dir", type=click.Path(file_okay=False), default=None,
              help="Write per video OUT_DIR/<name>.png (segments' middle frames with a heat map, VT "
                   "and AT weights) and OUT_DIR/<name>.npz (every attention weight, Grad-CAM maps).")
@click.option("--heatmap", type=click.Choice(["gradcam", "attention"]), default="gradcam",
              show_default=True, help="With --explain: Grad-CAM on the 3D backbone's last conv map, "
                                      "or the VS spatial attention upsampled.")
@click.option("--class", "target_class", default=None, metavar="NAME",
              help="With --explain: the class Grad-CAM explains. [default: the predicted one]")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--jobs", type=click.IntRange(min=1), default=None,
              help="Videos decoded at once. [default: min(4, cores)]")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def predict(videos, ckpt, run_dir, which, out, explain_dir, heatmap, target_class, device,
            batch_size, jobs, quiet):
    """Predict the emotion of your own videos with a trained model (no preprocessing needed).

    \b
    VIDEOS are files or folders (searched recursively for video files; other files are
    skipped with a warning). Each video is decoded by the ETL's code with the preprocessing
    the checkpoint was trained on and sampled as `vaanet evaluate` samples (middle snippet,
    centre crop). Prints video, predicted class, probability, polarity, audio present.
    \b
    Examples:
      vaanet predict my_clips/ --run runs/demo-demo --out predictions.csv
      vaanet predict clip.mp4 --checkpoint best.pt --explain explained/ --class joy
    \b
    Exit status: 0 all videos predicted, 1 some could not be decoded (their rows say why),
    2 usage error (missing or foreign checkpoint, no videos found, bad option).
    """
    import logging

    from trainer import explain as ex
    from trainer import predict as pr
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    if out is not None and not out.lower().endswith((".json", ".csv")):
        raise click.UsageError(f"--out must end in .json or .csv, got {out}")
    if explain_dir is None and (target_class is not None or heatmap != "gradcam"):
        raise click.UsageError("--class and --heatmap apply with --explain OUT_DIR only")
    try:
        found, skipped = pr.find_videos(videos)
        for f in skipped:
            click.echo(f"warning: skipped {f}: not a video file", err=True)
        loaded = pr.load_model(ckpt, run_dir, which, device)
        explainer = None
        if explain_dir is not None:
            explainer = ex.Explainer(explain_dir, loaded.classes, heatmap, target_class)
            explainer.check(loaded.model)
    except ValueError as e:
        raise click.UsageError(str(e)) from None
    rows = pr.predict_videos(found, loaded, batch_size=batch_size, jobs=jobs, progress=not quiet,
                             explainer=explainer)
    click.echo(pr.format_table(rows))
    for r in rows:
        for note in r["notes"]:
            click.echo(f"note: {r['video']}: {note}", err=True)
    if out is not None:
        click.echo(f"wrote {pr.write_rows(out, rows, loaded)}")
    if explain_dir is not None:
        click.echo(f"explanations (PNG + NPZ per video): {explain_dir}")
    failed = sum(r["status"] != "ok" for r in rows)
    if failed:
        click.echo(f"{failed} of {len(rows)} videos could not be predicted", err=True)
        raise SystemExit(1)


@main.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
def report(run_dir):
    """Plots and one RUN_DIR/report.html (images in RUN_DIR/report/), openable from disk.

    \b
    A run: loss and accuracy per epoch (training, validation), the test confusion matrix and
    per-class accuracy, the result table. A protocol (--split all): accuracy per split with
    mean +- std. An ablation: every row's accuracy beside the paper's. Written automatically
    at the end of train, ablate and --split all.
    """
    from trainer.report import write_report
    try:
        click.echo(f"wrote {write_report(run_dir)}")
    except ValueError as e:
        raise click.UsageError(str(e)) from None


if __name__ == "__main__":
    main()
