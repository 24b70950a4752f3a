"""The programs start through :mod:`desktop.launch`, which imports nothing: a spawned decode worker
re-runs the program's script, and must not import the screener's CLI or Qt to decode a file."""

from __future__ import annotations

import json
import subprocess
import sys

import tomllib

from tests.conftest import REPO

HEAVY = ("numpy", "pydicom", "PySide6", "openvino", "desktop.screening.cli", "desktop.viewer.app")
NOT_IN_A_WORKER = ("PySide6", "openvino", "desktop.screening.cli", "desktop.viewer.app")  # it decodes: numpy, pydicom


def _run(code: str, cwd=REPO, env=None) -> str:
    r = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_launch_imports_nothing_heavy():
    loaded = json.loads(_run("import sys, json, desktop.launch; print(json.dumps(sorted(sys.modules)))"))
    assert [m for m in HEAVY if m in loaded] == []


def test_the_runtime_programs_start_through_launch():
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert {k: scripts[k] for k in ("mura-screen", "mura-viewer", "mura-node")} == {
        "mura-screen": "desktop.launch:screen", "mura-viewer": "desktop.launch:viewer",
        "mura-node": "desktop.launch:node"}
    frozen = (REPO / "installers" / "frozen" / "mura_main.py").read_text()
    assert all(f"from desktop.launch import {app}" in frozen for app in ("viewer", "screen", "node"))


def test_a_decode_worker_imports_neither_the_cli_nor_qt(tmp_path, monkeypatch):
    """A script shaped like pip's console script for ``mura-viewer``: the worker re-runs it
    (as ``__mp_main__``) before its task, so it sees what a real worker sees."""
    script = tmp_path / "mura-viewer"
    script.write_text(
        "import sys\nfrom desktop.launch import viewer\n"
        "if __name__ == '__main__':\n"
        "    import json\n"
        "    from desktop.launch import runtime_env\n"
        "    runtime_env()\n"
        "    from desktop.screening.workers import Workers\n"
        "    w = Workers(1)\n"
        "    seen = w.submit(eval, \"(sorted(__import__('sys').modules), "
        "__import__('os').environ.get('OPENBLAS_NUM_THREADS'))\").result()\n"
        "    w.close()\n"
        "    print(json.dumps(seen))\n")
    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    r = subprocess.run([sys.executable, str(script)], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    modules, blas = json.loads(r.stdout)
    assert "desktop.launch" in modules  # the script was re-run: the test sees a real worker
    assert [m for m in NOT_IN_A_WORKER if m in modules] == []
    assert blas == "1"
