"""Layering and size rules: the runtime path never imports torch; only desktop/viewer imports Qt; no
import cycle; compress never imports trainer; no file over 500 lines, no function over 80."""

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FIRST_PARTY = ("models", "trainer", "compress", "desktop")
TRAINING_ONLY = ("torch", "timm", "torchvision", "nncf", "onnx", "sklearn")
QT = {"PySide6", "PyQt5", "PyQt6"}
# The rules are over packages, not lists of modules: a new module is covered the day it is added.
VIEWER = REPO / "desktop" / "viewer"          # the only package that imports Qt
TORCH_PACKAGES = (REPO / "models" / "nn",)    # the only part of models/ that imports torch


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module.split(".")[0])
    return out


def _files(*pkgs: str) -> list[Path]:
    return sorted(f for p in pkgs for f in (REPO / p).rglob("*.py"))


def _module(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _runtime_modules() -> list[str]:
    """Everything a clinic PC runs: models/ (but its torch package) and all of desktop/."""
    files = [f for f in _files("models", "desktop") if not any(f.is_relative_to(t) for t in TORCH_PACKAGES)]
    return [_module(f) for f in files]


def test_qt_only_in_the_viewer_package():
    files = [f for f in _files(*FIRST_PARTY) if not f.is_relative_to(VIEWER)]
    assert len(files) > 40
    offenders = [str(f.relative_to(REPO)) for f in files if QT & _imports(f)]
    assert offenders == [], f"only desktop/viewer/ may import Qt: {offenders}"


def test_screening_core_and_models_never_import_the_viewer():
    graph = _import_graph()
    bad = {m: sorted(d for d in deps if d.startswith("desktop.viewer")) for m, deps in graph.items()
           if m.startswith(("models", "desktop.screening"))}
    assert {m: d for m, d in bad.items() if d} == {}


def test_torch_only_in_its_package():
    offenders = [str(f.relative_to(REPO)) for f in _files("models", "desktop")
                 if not any(f.is_relative_to(t) for t in TORCH_PACKAGES) and set(TRAINING_ONLY) & _imports(f)]
    assert offenders == []


def test_runtime_never_loads_torch():
    """Imported for real (a static check misses what an import pulls in transitively)."""
    modules = _runtime_modules()
    assert "desktop.screening.cli" in modules and "models.dicom" in str(modules)
    code = (
        "import sys\n"
        f"for m in {modules!r}:\n"
        "    __import__(m)\n"
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {TRAINING_ONLY!r})\n"
        "print(','.join(bad))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=180)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "", f"runtime imported training-only packages: {r.stdout}"


def _import_graph() -> dict[str, set[str]]:
    """Module -> first-party modules it imports, at any depth in the file (imports hidden inside
    functions are still dependencies, and were how a cycle hid)."""
    files = _files(*FIRST_PARTY)
    known = {_module(f) for f in files}
    graph: dict[str, set[str]] = {}
    for f in files:
        deps = set()
        for node in ast.walk(ast.parse(f.read_text(), str(f))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [f"{node.module}.{a.name}" for a in node.names] + [node.module]
            for n in names:
                while n and n not in known:
                    n = n.rpartition(".")[0]
                if n and n.split(".")[0] in FIRST_PARTY:
                    deps.add(n)
        me = _module(f)
        graph[me] = {d for d in deps if d != me and not me.startswith(d + ".")}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_import_graph_has_no_cycle():
    graph = _import_graph()
    assert "desktop.screening.pipeline" in graph["desktop.screening.run"]
    assert _cycles(graph) == []


def test_core_never_imports_desktop():
    """GUI depends on the core, never the reverse."""
    for pkg in ("models", "trainer", "compress"):
        for f in (REPO / pkg).rglob("*.py"):
            assert "desktop" not in _imports(f), f"{f} imports desktop"


def _calls_core(path: Path) -> bool:
    """``ov.Core()`` / ``openvino.Core()`` / ``Core()``: a call of anything named Core."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Call):
            f = node.func
            if (isinstance(f, ast.Attribute) and f.attr == "Core") or (isinstance(f, ast.Name) and f.id == "Core"):
                return True
    return False


def test_only_ovruntime_makes_an_openvino_core():
    """Every OpenVINO core has its own CPU plugin; freed out of order they leave a dangling signal
    stack that turns the next Ctrl+C into a SIGSEGV (models/ovruntime.py). One core per process."""
    files = [f for d in ("models", "trainer", "compress", "desktop", "bench", "installers/frozen")
             for f in (REPO / d).rglob("*.py")]
    assert len(files) > 50
    makers = sorted(str(f.relative_to(REPO)) for f in files if _calls_core(f))
    assert makers == ["models/ovruntime.py"]


def test_compress_never_imports_trainer():
    """Issue 17 §2: the trainer hands over a checkpoint and its run manifest (models.manifest);
    compress reads those through models/, never the trainer's code."""
    files = _files("compress")
    assert len(files) > 10
    offenders = [str(f.relative_to(REPO)) for f in files if "trainer" in _imports(f)]
    assert offenders == [], f"compress/ imports trainer: {offenders}"


MAX_FILE_LINES = 500
MAX_FUNCTION_LINES = 80


def _tracked_python() -> list[Path]:
    out = subprocess.run(["git", "ls-files", "*.py"], capture_output=True, text=True, cwd=REPO)
    if out.returncode != 0:  # not a git checkout (an sdist): the first-party packages and tests
        return _files(*FIRST_PARTY, "tests", "bench", "installers")
    return [REPO / p for p in out.stdout.split()]


def _oversized(files: list[Path], root: Path = REPO) -> list[str]:
    found = []
    for f in files:
        text = f.read_text()
        if (n := len(text.splitlines())) > MAX_FILE_LINES:
            found.append(f"{f.relative_to(root)}: {n} lines")
        for node in ast.walk(ast.parse(text, str(f))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    found.append(f"{f.relative_to(root)}:{node.lineno} {node.name}: {length} lines")
    return found


def test_size_finder_finds_a_long_function(tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    (f := tmp_path / "probe.py").write_text(f"def long():\n{body}\n")
    assert _oversized([f], tmp_path) == [f"probe.py:1 long: {MAX_FUNCTION_LINES + 1} lines"]


def test_no_file_over_500_lines_and_no_function_over_80():
    """Issue 17: long files and functions are where the next change hurts; the limits hold for
    every tracked Python file, tests included, so a new one is covered the day it is added."""
    files = _tracked_python()
    assert len(files) > 100
    assert _oversized(files) == []
