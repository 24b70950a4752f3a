"""The network stays inside mura-node: only desktop/node imports pynetdicom, nothing else loads
it, ``--check`` opens no socket, and a running node (traced with strace) binds only the configured
address and port and connects only to the configured destination."""

from __future__ import annotations

import ast
import re
import shutil
import signal
import subprocess
import sys

import pytest

from tests.conftest import REPO
from tests.desktop.node.conftest import echo, free_port, send, study_files, wait_for, write_config

NODE = REPO / "desktop" / "node"
NETWORK = {"pynetdicom", "socket", "socketserver", "http", "urllib", "ssl"}


def _imports(path) -> set[str]:
    out = set()
    for n in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(n, ast.Import):
            out |= {a.name.split(".")[0] for a in n.names}
        elif isinstance(n, ast.ImportFrom) and n.module and n.level == 0:
            out.add(n.module.split(".")[0])
    return out


def test_only_the_node_package_imports_network_libraries():
    files = [f for d in ("models", "desktop", "compress", "trainer", "installers/frozen")
             for f in (REPO / d).rglob("*.py") if not f.is_relative_to(NODE)]
    assert len(files) > 50
    offenders = {str(f.relative_to(REPO)): sorted(_imports(f) & {"pynetdicom"}) for f in files}
    assert {k: v for k, v in offenders.items() if v} == {}
    assert any("pynetdicom" in _imports(f) for f in NODE.rglob("*.py"))


def test_the_screener_the_viewer_and_the_node_modules_do_not_load_pynetdicom():
    """Imported for real: the screener and viewer never, and the node only when it starts
    listening or sending (``--check`` and ``--list`` stay socket-free)."""
    modules = ["desktop.screening.cli", "desktop.viewer.app"] + sorted(
        "desktop.node." + f.stem for f in NODE.glob("*.py") if f.stem != "__init__")
    code = (f"import sys\nfor m in {modules!r}:\n    __import__(m)\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'pynetdicom'}))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                       timeout=180, env={"QT_QPA_PLATFORM": "offscreen", "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


strace = pytest.mark.skipif(shutil.which("strace") is None, reason="strace is not installed (apt: strace)")


def _traced(cmd: list[str], trace) -> subprocess.Popen:
    return subprocess.Popen(["strace", "-f", "-qq", "-e", "trace=network", "-o", str(trace), *cmd],
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _inet(trace, call: str) -> list[tuple[str, int]]:
    """(address, port) of every AF_INET/AF_INET6 ``call`` (bind, connect) in the trace."""
    out = []
    for line in trace.read_text(errors="replace").splitlines():
        if f"{call}(" in line and "AF_INET" in line:
            port = re.search(r"sin6?_port=htons\((\d+)\)", line)
            addr = re.search(r'inet_(?:addr|pton)\((?:AF_INET6, )?"([^"]+)"', line)
            out.append((addr.group(1) if addr else "?", int(port.group(1)) if port else -1))
    return out


@strace
def test_check_opens_no_socket(tmp_path):
    cfg = write_config(tmp_path, dest_port=free_port())
    trace = tmp_path / "check.strace"
    p = _traced([sys.executable, "-m", "desktop.node.cli", "--check", str(cfg)], trace)
    assert p.wait(120) == 0, p.stderr.read() if p.stderr else ""
    assert [ln for ln in trace.read_text().splitlines() if "AF_INET" in ln] == []


@strace
def test_a_running_node_binds_its_address_and_connects_only_to_the_destination(tmp_path, collector,
                                                                               phantom_studies):
    port = free_port()
    cfg = write_config(tmp_path, dest_port=collector.port, port=port)
    trace = tmp_path / "node.strace"
    p = _traced([sys.executable, "-m", "desktop.node.cli", str(cfg)], trace)
    try:
        wait_for(lambda: p.poll() is not None or echo(port), 90, "the node to listen")
        assert send(port, study_files(phantom_studies / "study_0001")) == [0, 0]
        wait_for(lambda: len(collector.received) == 3, 60, "SR + 2 SC")
    finally:
        import psutil

        for child in psutil.Process(p.pid).children():  # the node under strace: stop it as systemd would
            child.send_signal(signal.SIGTERM)
        p.communicate(timeout=60)
    # Port 0 is no endpoint: pynetdicom's outgoing socket binds an ephemeral port before it
    # connects, and glibc's getaddrinfo "connects" UDP sockets to port 0 to pick a source address
    # (RFC 6724; no packet is sent).
    assert {b for b in _inet(trace, "bind") if b[1] != 0} == {("127.0.0.1", port)}
    assert sum("listen(" in ln for ln in trace.read_text().splitlines()) == 1
    assert {c for c in _inet(trace, "connect") if c[1] != 0} == {("127.0.0.1", collector.port)}
