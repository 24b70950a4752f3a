"""No packet leaves the machine (issue 16 §8): OpenVINO's converter telemetry, imported with
``import openvino`` in a pip install, looked up www.google-analytics.com from mura-screen's
process. Each entry point runs under ``strace -f -e trace=network`` and may open no inet socket."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.skipif(shutil.which("strace") is None, reason="strace is not installed (apt: strace)")


def _inet(cmd: list[str], tmp_path, env_extra: dict | None = None) -> list[str]:
    import os

    trace = tmp_path / "net.strace"
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", **(env_extra or {})}
    env.pop("CI", None)  # OpenVINO's telemetry stays quiet when it sees CI=true: not a real clinic
    r = subprocess.run(["strace", "-f", "-qq", "-e", "trace=network", "-o", str(trace), *cmd],
                       capture_output=True, text=True, timeout=600, cwd=REPO, env=env)
    assert r.returncode in (0, 1), r.stdout + r.stderr
    return [ln for ln in trace.read_text(errors="replace").splitlines() if "AF_INET" in ln]


def test_the_screener_opens_no_network_socket(tmp_path):
    assert _inet([sys.executable, "-m", "desktop.screening.cli", "samples", "--out", str(tmp_path / "o"),
                  "--no-progress", "--workers", "1"], tmp_path) == []


def test_the_viewer_opens_no_network_socket(tmp_path):
    assert _inet([sys.executable, "-m", "desktop.viewer.app", "samples/leg-IMG0002455", "--screenshot",
                  str(tmp_path / "s.png")], tmp_path) == []


def test_compress_and_its_libraries_open_no_network_socket(tmp_path):
    code = "import compress.pipeline, compress.quantize, nncf, openvino; from models import ovruntime; ovruntime.core()"
    assert _inet([sys.executable, "-c", code], tmp_path) == []


def test_a_whole_compress_run_opens_no_network_socket(tmp_path, tiny_checkpoint, phantom):
    """NNCF sends its telemetry when it quantizes, not when it is imported: run mura-compress."""
    cmd = [sys.executable, "-m", "compress.cli", "--checkpoint", str(tiny_checkpoint), "--out",
           str(tmp_path / "bundle"), "--calib-data", f"mura:{phantom / 'mura'}", "--val-data",
           f"mura:{phantom / 'mura'}", "--budget", "1", "--min-agreement", "0", "--calib-size", "16",
           "--max-eval-images", "16", "--no-accuracy-control"]
    assert _inet(cmd, tmp_path) == []
    assert (tmp_path / "bundle" / "card.json").is_file()
