"""Layering rules: the runtime path never imports torch; only desktop/ imports Qt."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RUNTIME_MODULES = ["models.preprocess", "models.card", "models.engine", "models.imageio", "models.dicom",
                   "models.metrics", "models.plots", "desktop.discovery", "desktop.screen", "desktop.screen_state",
                   "desktop.report", "desktop.render", "desktop.viewer", "desktop.pipeline", "desktop.dicom_export",
                   "desktop.paths", "models.scope", "models.trust", "desktop.support", "desktop.heat_legend",
                   "desktop.help_text"]
TRAINING_ONLY = ("torch", "timm", "torchvision", "nncf", "onnx", "sklearn")


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module.split(".")[0])
    return out


@pytest.mark.parametrize("pkg", ["models", "trainer", "compress"])
def test_qt_only_in_desktop(pkg):
    for f in (REPO / pkg).rglob("*.py"):
        assert not {"PySide6", "PyQt5", "PyQt6"} & _imports(f), f"{f} imports Qt"


def test_runtime_never_loads_torch():
    code = (
        "import sys\n"
        f"for m in {RUNTIME_MODULES!r}:\n"
        "    __import__(m)\n"
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {TRAINING_ONLY!r})\n"
        "print(','.join(bad))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "", f"runtime imported training-only packages: {r.stdout}"


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
