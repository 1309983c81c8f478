"""The resolved training configuration of one run.

Precedence, lowest first: the defaults below, the preset's training defaults, a `--config FILE`
(JSON, or YAML when pyyaml is installed), then the flags given on the command line. The result
is saved as RUN_DIR/config.json, which is itself a valid `--config FILE`.
"""
from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path

from pipeline import atomic
from trainer.errors import RunError  # noqa: F401 (used here, and caught as run_config.RunError)




@contextlib.contextmanager
def user_input():
    """Around ONE call that checks user input inside code that cannot raise RunError itself
    (model/ and pipeline/ do not know the command line): its ValueError becomes a RunError.
    Never around more than that call, so that a bug elsewhere is not taken for a user mistake."""
    try:
        yield
    except RunError:
        raise
    except ValueError as e:
        raise RunError(str(e)) from e

DEMO_DATA = Path("data/processed/demo")

# training defaults per model preset: the paper's (150 epochs), the official code's (100 epochs),
# and a demo that trains on a laptop CPU in a couple of minutes: small batches give BatchNorm
# enough steps on the demo's 40 videos, and the 3D ResNet is frozen (random, as the official
# code freezes its pretrained one) because backward through 3D convolutions is slow on CPU
PRESET_DEFAULTS = {
    "paper": dict(epochs=150, batch_size=32, lr=2e-4),
    "official": dict(epochs=100, batch_size=32, lr=2e-4),
    "demo": dict(epochs=10, batch_size=4, lr=1e-3, freeze_visual=True),
    # DFAN: features from frozen backbones, as its paper describes them ("extracted")
    "dfan": dict(epochs=150, batch_size=32, lr=2e-4),
    "dfan-demo": dict(epochs=10, batch_size=4, lr=1e-3, freeze_visual=True),
}


@dataclass
class RunConfig:
    data: str | None = None          # preprocessed dataset folder (vaanet preprocess --out)
    out: str | None = None           # RUN_DIR: checkpoints, metrics, predictions
    preset: str = "paper"            # model preset: paper | official | demo | dfan | dfan-demo
    attn: str | None = None          # attention spec, e.g. "VS+VCW+VT+AT"; None: the preset's
    loss: str = "pcce"               # ce | pcce
    lam: float = 0.5                 # PCCE lambda
    epochs: int = 150
    batch_size: int = 32
    lr: float = 2e-4                 # Adam, no weight decay, no schedule (as the paper)
    visual_weights: str | None = None  # Hara 3D ResNet checkpoint (e.g. resnet-101-kinetics.pth)
    audio_weights: str | None = None   # torchvision resnet18 ImageNet state dict
    object_weights: str | None = None  # DFAN: ImageNet ResNet (torchvision names) for objects
    scene_weights: str | None = None   # DFAN: Places365 ResNet for scenes
    freeze_visual: bool | None = None  # None: the preset's choice
    split: str | None = None         # None: the data's first split; "all": every split (protocol)
    device: str = "auto"             # auto | cpu | cuda
    # auto: bf16 on a CUDA device that supports it, else none; config.json records the result
    amp: str = "auto"                # auto | none | bf16 | fp16 (fp16 uses a GradScaler)
    channels_last: bool = False      # 3D convolutions in channels_last_3d on CUDA
    # where JPEG frames are decoded: "workers" (libjpeg-turbo in the loader processes) or
    # "device" (after the transfer, by the training process: nvJPEG on CUDA)
    decode: str = "workers"
    # several CUDA processes: BatchNorm statistics over the whole global batch (SyncBatchNorm)
    sync_bn: bool = False
    # per process: the cores left beside the main processes, shared among the ranks (device.py)
    workers: int = field(default_factory=lambda: _default_workers())
    seed: int = 0
    val_fraction: float = 0.1        # seeded, per class, carved from the training split
    select_on_test: bool = False     # select the best epoch on the test split (named so in output)
    resume: bool = False
    model: dict = field(default_factory=dict)  # ModelConfig overrides (config file only)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def validate(self) -> "RunConfig":
        choices = {"preset": PRESET_DEFAULTS, "loss": ("ce", "pcce"), "device": ("auto", "cpu", "cuda"),
                   "amp": ("auto", "none", "bf16", "fp16"), "decode": ("workers", "device")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise RunError(f"{name} must be one of {', '.join(allowed)}; got {getattr(self, name)!r}")
        for name, kind in (("epochs", int), ("batch_size", int), ("workers", int), ("seed", int),
                           ("lr", float), ("lam", float), ("val_fraction", float)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float) if kind is float else int):
                raise RunError(f"{name} must be {'an integer' if kind is int else 'a number'}, got {value!r}")
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise RunError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise RunError(f"lr must be > 0, got {self.lr}")
        if not 0 <= self.val_fraction < 1:
            raise RunError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.workers < 0:
            raise RunError(f"workers must be >= 0, got {self.workers}")
        if not isinstance(self.model, dict):
            raise RunError(f"model must be a mapping of ModelConfig overrides, got {self.model!r}")
        return self


FIELDS = {f.name for f in dataclasses.fields(RunConfig)}


def read_file(path) -> dict:
    """Values from a JSON (or YAML) file; unknown keys are errors so that typos do not pass."""
    path = Path(path)
    if not path.is_file():
        raise RunError(f"config file not found: {path}")
    text = path.read_text()
    if path.suffix in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise RunError(f"{path} is YAML but pyyaml is not installed; "
                             "write JSON or `pip install pyyaml`") from None
        try:
            values = yaml.safe_load(text) or {}
        except yaml.YAMLError as e:
            raise RunError(f"{path} is not valid YAML: {e}") from None
    else:
        try:
            values = json.loads(text)
        except json.JSONDecodeError as e:
            raise RunError(f"{path} is not valid JSON: {e}") from None
    if not isinstance(values, dict):
        raise RunError(f"{path} must hold a mapping of option names to values")
    values = {k.replace("-", "_"): v for k, v in values.items()}
    for info in ("resolved_model", "resumed"):  # written beside the run config for information only
        values.pop(info, None)
    unknown = sorted(set(values) - FIELDS)
    if unknown:
        raise RunError(f"unknown keys in {path}: {', '.join(unknown)}; valid: {', '.join(sorted(FIELDS))}")
    return values


def resolve(flags: dict | None = None, config_file=None, out_prefix: str = "",
            fresh_out: bool = False) -> RunConfig:
    """Merge defaults < preset defaults < config file < flags (only the flags actually given).
    Without an `out`, the run goes to runs/<out_prefix><data folder name>-<preset>[-split<S>];
    with `fresh_out` (and no resume) a folder that exists already gets a -2, -3, ... suffix, so
    running the same command again starts a new run instead of refusing."""
    flags = {k: v for k, v in (flags or {}).items() if v is not None}
    file_values = read_file(config_file) if config_file else {}
    merged = {**file_values, **flags}
    # no --data: the built-in demo when it has been preprocessed (and then its preset)
    if merged.get("data") is None and DEMO_DATA.is_dir():
        merged["data"] = str(DEMO_DATA)
        merged.setdefault("preset", "demo")
    preset = merged.get("preset", RunConfig.preset)
    if preset not in PRESET_DEFAULTS:
        raise RunError(f"preset must be one of {', '.join(PRESET_DEFAULTS)}; got {preset!r}")
    preset_values = dict(PRESET_DEFAULTS[preset])
    if "freeze_visual" in (merged.get("model") or {}):  # the config file's model block says it
        preset_values.pop("freeze_visual", None)
    values = {**preset_values, **merged}
    if values.get("out") is None and values.get("data") is not None:
        split = values.get("split")
        out = str(Path("runs") / f"{out_prefix}{Path(values['data']).name}-{preset}"
                  f"{'' if split in (None, 'all') else f'-split{split}'}")
        if fresh_out and not values.get("resume"):
            out = next(f"{out}-{n}" if n > 1 else out for n in itertools.count(1)
                       if not Path(f"{out}-{n}" if n > 1 else out).exists())
        values["out"] = out
    cfg = RunConfig(**values).validate()
    cfg.amp = resolve_amp(cfg)
    return cfg


def resolve_amp(cfg: RunConfig) -> str:
    """The precision `cfg` trains with on its device ("auto" made concrete, see device.py)."""
    from trainer.device import resolve_amp as choose
    return choose(cfg.amp, cfg.device)


def _default_workers() -> int:
    from trainer.device import default_workers_here
    return default_workers_here()


# what --resume may change: how long and where the run goes on, not what it computes
RESUME_MAY_CHANGE = ("epochs", "workers", "decode", "device", "amp", "channels_last", "sync_bn", "resume",
                     "out")
# the split is compared once resolved (None means the data's first split), by trainer/train.py
RESUME_COMPARED_ELSEWHERE = ("split",)


def resume_differences(saved: dict, cfg: RunConfig) -> dict:
    """{option: (saved value, new value)} for every option that changes what the run computes
    (lr, loss, batch size, seed, validation fraction, model, data, weights, ...)."""
    now = cfg.to_dict()
    diffs = {}
    for name in sorted(FIELDS - set(RESUME_MAY_CHANGE) - set(RESUME_COMPARED_ELSEWHERE)):
        old, new = saved.get(name, getattr(RunConfig, name, None)), now.get(name)
        if old == new:
            continue
        if name == "data" and old and new and Path(old).resolve() == Path(new).resolve():
            continue  # the same folder, written another way
        diffs[name] = (old, new)
    return diffs


def resume_changes(saved: dict, cfg: RunConfig) -> dict:
    """{option: [saved, new]} for the options --resume may change that did change."""
    now = cfg.to_dict()
    return {k: [saved.get(k), now.get(k)] for k in RESUME_MAY_CHANGE
            if k not in ("resume", "out") and k in saved and saved.get(k) != now.get(k)}


def save(cfg: RunConfig, run_dir, resolved_model: dict | None = None,
         resumed: list | None = None) -> Path:
    """RUN_DIR/config.json, written atomically; `resolved_model` records the full ModelConfig,
    `resumed` one record per --resume of the run (the epoch it continued after and what changed)."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    d = cfg.to_dict()
    if resolved_model is not None:
        d["resolved_model"] = resolved_model
    if resumed:
        d["resumed"] = resumed
    path = run_dir / "config.json"
    atomic.write_json(path, d, indent=2)
    return path


