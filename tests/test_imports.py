"""The import structure: every module imports in a fresh interpreter, no two modules import each
other (directly or round a longer loop), and the data walks one way between packages:
pipeline/ (torch-free ETL) and model/ (networks only) import neither each other nor trainer/ or
the CLI."""
import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("pipeline", "model", "trainer")
# package -> the project packages it must not import
FORBIDDEN = {"pipeline": {"model", "trainer", "cli"}, "model": {"pipeline", "trainer", "cli"}}


def project_modules() -> dict[str, Path]:
    """Dotted module name -> file, for cli.py and every module of the packages."""
    mods = {"cli": ROOT / "cli.py"}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            mods[name] = path
    return mods


def imported_modules(name: str, path: Path, mods: dict) -> set[str]:
    """The project modules that `name` imports anywhere in its file (module level, inside
    functions, under `if`), relative imports resolved."""
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                here = name.split(".") if is_package else name.split(".")[:-1]
                here = here[:len(here) - (node.level - 1)]
                base = ".".join(here + ([base] if base else []))
            # `from pkg import sub` names a submodule when there is one, else a name in pkg
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
        else:
            continue
        for target in targets:
            # `import model.vaanet` also names model.vaanet; keep the longest project module
            while target and target not in mods:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def import_graph() -> dict[str, set[str]]:
    mods = project_modules()
    return {name: imported_modules(name, path, mods) for name, path in mods.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph as [a, b, ..., a], or None (iterative depth-first search)."""
    state = {}  # node -> 1 on the current path, 2 done
    for start in sorted(graph):
        if start in state:
            continue
        path, stack = [start], [iter(sorted(graph[start]))]
        state[start] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            elif nxt not in state:
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(graph.get(nxt, ()))))
    return None


def package(module: str) -> str:
    return module.split(".")[0]


def test_every_module_imports_in_a_fresh_interpreter():
    names = sorted(project_modules())
    code = "import importlib, sys\nfor m in sys.argv[1:]:\n    importlib.import_module(m)\nprint('ok', len(sys.argv) - 1)"
    proc = subprocess.run([sys.executable, "-c", code, *names], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split() == ["ok", str(len(names))]


def test_no_import_cycle_between_modules():
    graph = import_graph()
    assert {"cli", "pipeline.format", "model.vaanet", "trainer.train"} <= set(graph)
    # the graph is really built: known edges are there
    assert "model.vaanet" in graph["model.dfan"]
    assert any(package(m) == "trainer" for m in graph["cli"])
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_packages_import_one_way():
    graph = import_graph()
    bad = [f"{a} imports {b}" for a, targets in sorted(graph.items()) for b in sorted(targets)
           if package(b) in FORBIDDEN.get(package(a), ())]
    assert not bad, "\n".join(bad)
    packages = {}
    for a, targets in graph.items():
        packages.setdefault(package(a), set()).update(package(b) for b in targets if package(b) != package(a))
    assert find_cycle(packages) is None, " -> ".join(find_cycle(packages))


def test_the_cycle_finder_finds_cycles_and_imports_inside_functions(tmp_path):
    """The checks above can fail: a loop round three nodes is reported, and an import inside
    a function body or a relative import counts as an edge."""
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None
    src = tmp_path / "x.py"
    src.write_text("def f():\n    from model.vaanet import VAANet\n    from . import build\n"
                   "    import trainer.train as t\n")
    mods = {"model.vaanet": None, "model.build": None, "model.x": None, "trainer.train": None,
            "trainer": None, "model": None}
    assert imported_modules("model.x", src, mods) == {"model.vaanet", "model.build", "trainer.train"}
