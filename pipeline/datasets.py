"""Dataset definitions (classes, polarity) and the folder layouts of the raw videos.

Every layout is one folder per class under a root:

    ROOT/anger/clip01.mp4
    ROOT/anger/clip02.avi
    ROOT/joy/...

`e6`, `ve8` and `demo` take their classes (in label order) and negative classes from
data/datasets/NAME.json; class folders are matched case-insensitively. `folder` takes the classes
from the sorted folder names, and the polarity from an optional polarity file.
A video's id is "class/name" (name = file name without extension): VE-8 has one name in two classes.
"""
from __future__ import annotations

import json
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path

VIDEO_EXTENSIONS = (".mp4", ".avi", ".webm", ".mkv", ".mov", ".flv", ".3gp", ".m4v", ".mpg")
SHIPPED = ("e6", "ve8", "demo")


@dataclass(frozen=True)
class DatasetDef:
    name: str
    classes: list[str]          # label order
    negative: set[str]
    polarity: list[int]         # polarity[label] = 1 positive, 0 negative
    split: dict = field(default_factory=dict)   # how splits are made (see pipeline/splits.py)
    title: str = ""


@dataclass(frozen=True)
class Video:
    id: str          # "class/name"
    label: int
    cls: str         # canonical class name (from the definition)
    path: Path


def definitions_dir() -> Path:
    """data/datasets in a source checkout, else where setup.cfg installs the JSON files."""
    here = Path(__file__).resolve().parent.parent / "data" / "datasets"
    if here.is_dir():
        return here
    return Path(sys.prefix) / "share" / "vaanet" / "datasets"


def make_definition(name, classes, negative, split=None, title="") -> DatasetDef:
    classes = list(classes)
    if len(set(c.lower() for c in classes)) != len(classes):
        raise ValueError(f"dataset {name}: class names must differ ignoring case, got {classes}")
    unknown = set(negative) - set(classes)
    if unknown:
        raise ValueError(f"dataset {name}: negative classes {sorted(unknown)} are not among "
                         f"the classes {classes}")
    polarity = [0 if c in negative else 1 for c in classes]
    return DatasetDef(name, classes, set(negative), polarity, dict(split or {}), title)


def load_definition(name: str) -> DatasetDef:
    path = definitions_dir() / f"{name}.json"
    if not path.exists():
        raise ValueError(f"unknown dataset {name!r}: expected one of {', '.join(SHIPPED)} "
                         f"(or 'folder' for your own videos); no {path}")
    d = json.loads(path.read_text())
    return make_definition(d["name"], d["classes"], d.get("negative", []), d.get("split"),
                           d.get("title", ""))


def read_polarity_file(path, classes: list[str]) -> set[str]:
    """Negative classes from a polarity file. Two accepted formats:

    text: one line per class, `CLASS positive` or `CLASS negative` (also 1/0; '#' comments)
    JSON: {"negative": ["anger", ...]} as in data/datasets/*.json, or {"anger": "negative", ...}
    Class names are matched case-insensitively; every class must be covered.
    """
    path = Path(path)
    by_lower = {c.lower(): c for c in classes}
    text = path.read_text()
    if path.suffix.lower() == ".json":
        d = json.loads(text)
        if "negative" in d:   # the other classes are positive
            neg = {n.lower() for n in d["negative"]}
            pairs = [(n, "negative") for n in d["negative"]]
            pairs += [(c, "positive") for c in classes if c.lower() not in neg]
        else:
            pairs = list(d.items())
    else:
        pairs = []
        for n, line in enumerate(text.splitlines(), 1):
            line = line.split("#")[0].strip()
            if not line:
                continue
            cls, _, value = line.rpartition(" ")
            if not cls.strip():
                raise ValueError(f"{path}:{n}: expected 'CLASS positive|negative', got {line!r}")
            pairs.append((cls.strip(), value))
    negative, seen = set(), set()
    for cls, value in pairs:
        key = str(cls).lower()
        if key not in by_lower:
            raise ValueError(f"{path}: class {cls!r} is not a class folder; classes: {classes}")
        v = str(value).lower()
        if v not in ("positive", "negative", "1", "0"):
            raise ValueError(f"{path}: polarity of {cls!r} must be positive/negative (or 1/0), "
                             f"got {value!r}")
        seen.add(key)
        if v in ("negative", "0"):
            negative.add(by_lower[key])
    missing = [c for c in classes if c.lower() not in seen]
    if missing:
        raise ValueError(f"{path}: no polarity for classes {missing}")
    return negative


def _layout_help(classes=None) -> str:
    names = ", ".join(classes) if classes else "one folder per class, named after the class"
    return ("expected layout: ROOT/<class>/<video file>, one folder per class "
            f"({names}); video files: {' '.join(e[1:] for e in VIDEO_EXTENSIONS)}")


def _class_dirs(root: Path, classes=None) -> list[Path]:
    if not root.is_dir():
        raise ValueError(f"dataset root {root} is not a directory; {_layout_help(classes)}")
    entries = [p for p in root.iterdir() if not p.name.startswith(".")]
    if not entries:
        raise ValueError(f"dataset root {root} is empty; {_layout_help(classes)}")
    dirs = sorted(p for p in entries if p.is_dir())
    if not dirs:
        raise ValueError(f"no class folders in {root} (found only files such as "
                         f"{entries[0].name!r}); {_layout_help(classes)}")
    return dirs


def folder_definition(root, polarity_file=None) -> DatasetDef:
    """The `folder` layout: classes are the sorted folder names under root."""
    root = Path(root)
    classes = [d.name for d in _class_dirs(root)]
    negative = read_polarity_file(polarity_file, classes) if polarity_file else set()
    return make_definition("folder", classes, negative,
                           {"kind": "random", "runs": 10, "train_fraction": 2 / 3, "seed": 0},
                           f"class folders of {root}")


def scan(root, dataset: DatasetDef) -> list[Video]:
    """All videos under root, sorted by id. Non-video files are skipped with a warning."""
    root = Path(root)
    by_lower = {c.lower(): c for c in dataset.classes}
    folders: dict[str, Path] = {}
    for d in _class_dirs(root, dataset.classes):
        cls = by_lower.get(d.name.lower())
        if cls is None:
            raise ValueError(f"folder {d} is not a class of dataset {dataset.name}; "
                             f"{_layout_help(dataset.classes)}")
        if cls in folders:
            raise ValueError(f"two folders for class {cls}: {folders[cls]} and {d}")
        folders[cls] = d
    missing = [c for c in dataset.classes if c not in folders]
    if missing:
        warnings.warn(f"{root}: no folder for classes {missing} (they get no videos)")
    videos, skipped, bad_links = [], [], []
    for cls, d in folders.items():
        seen: dict[str, Path] = {}
        for p in sorted(d.iterdir()):
            if p.name.startswith("."):
                continue
            if link_problem(p):
                bad_links.append(p)
                continue
            if not p.is_file() or p.suffix.lower() not in VIDEO_EXTENSIONS:
                skipped.append(p)
                continue
            if p.stem in seen:
                raise ValueError(f"two videos share the id {cls}/{p.stem}: {seen[p.stem]} and {p}; "
                                 "rename one (ids are class/name without extension)")
            seen[p.stem] = p
            videos.append(Video(f"{cls}/{p.stem}", dataset.classes.index(cls), cls, p))
    if bad_links:
        warnings.warn(f"skipped {len(bad_links)} symbolic links that lead to no file: " + ", ".join(
            f"{p.relative_to(root)} ({link_problem(p)})" for p in bad_links))
    if skipped:
        shown = ", ".join(str(p.relative_to(root)) for p in skipped[:5])
        more = f" and {len(skipped) - 5} more" if len(skipped) > 5 else ""
        warnings.warn(f"skipped {len(skipped)} entries that are not video files "
                      f"({' '.join(e[1:] for e in VIDEO_EXTENSIONS)}): {shown}{more}")
    if not videos:
        raise ValueError(f"no video files under {root}; {_layout_help(dataset.classes)}")
    return sorted(videos, key=lambda v: v.id)


def link_problem(p: Path) -> str | None:
    """"symlink loop" or "symlink to a missing file" for a symbolic link that leads to no file
    (so it is not reported as "not a video file"); None otherwise."""
    if not p.is_symlink():
        return None
    try:
        p.resolve(strict=True)
    except FileNotFoundError:
        return "symlink to a missing file"
    except (RuntimeError, OSError):  # Python < 3.13: RuntimeError; then OSError ELOOP
        return "symlink loop"
    return None
