"""mura-node in the Linux package: a systemd unit that is installed disabled, runs the node as its
own user with a checked configuration, and a postinst that creates that user and enables nothing.
The built .deb itself is checked by test_packages.py (file list) and below (slow: the frozen node
answers --check on the example it ships)."""

from __future__ import annotations

import configparser
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO

LINUX = REPO / "installers" / "linux"
UNIT = LINUX / "mura-node.service"
FROZEN = REPO / "installers" / "dist" / "mura-fracture"


def _unit() -> configparser.ConfigParser:
    cp = configparser.ConfigParser(strict=False, interpolation=None)
    cp.optionxform = str  # type: ignore[assignment,method-assign]  # systemd keys are case-sensitive
    cp.read_string(UNIT.read_text())
    return cp


def test_the_unit_runs_the_checked_node_as_its_own_user():
    u = _unit()
    svc = u["Service"]
    assert svc["ExecStart"] == "/usr/bin/mura-node /etc/mura-fracture/node.toml"
    assert svc["ExecStartPre"] == "/usr/bin/mura-node --check /etc/mura-fracture/node.toml"
    assert u["Unit"]["ConditionPathExists"] == "/etc/mura-fracture/node.toml"  # no config: no start
    assert svc["User"] == svc["Group"] == "mura-node" and svc["StateDirectory"] == "mura-node"
    assert svc["NoNewPrivileges"] == "yes" and svc["ProtectSystem"] == "strict"
    assert u["Install"]["WantedBy"] == "multi-user.target"


def test_the_example_config_fits_the_unit():
    """The unit makes only /var/lib/mura-node writable: the example's data_dir must be there."""
    from desktop.node.example import EXAMPLE_CONFIG

    assert 'data_dir = "/var/lib/mura-node"' in EXAMPLE_CONFIG


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is absent")
def test_systemd_accepts_every_directive(tmp_path):
    stub = tmp_path / "mura-node"
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    unit = tmp_path / "mura-node.service"
    unit.write_text(UNIT.read_text().replace("/usr/bin/mura-node", str(stub)))
    r = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0 and r.stdout + r.stderr == "", r.stdout + r.stderr


def test_the_postinst_enables_nothing_and_respects_dpkg_root(tmp_path):
    body = (LINUX / "postinst").read_text().split("\nset -e", 1)[1]  # the code, after the comments
    assert "enable" not in body and "start" not in body
    assert subprocess.run(["sh", "-n", str(LINUX / "postinst")]).returncode == 0
    # under dpkg --root (DPKG_ROOT set) it must not touch the build machine's users
    fake = tmp_path / "bin"
    fake.mkdir()
    for tool in ("getent", "adduser", "useradd", "systemctl"):
        (fake / tool).write_text(f"#!/bin/sh\necho {tool} >> {tmp_path / 'called'}\nexit 1\n")
        (fake / tool).chmod(0o755)
    env = {"PATH": f"{fake}:/usr/bin:/bin", "DPKG_ROOT": str(tmp_path / "root")}
    r = subprocess.run(["sh", str(LINUX / "postinst"), "configure"], env=env, capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0 and not (tmp_path / "called").exists()


def _frozen_node() -> Path:
    exe = FROZEN / "mura-node"
    if not exe.exists():
        pytest.skip(f"{exe} not built (run installers/build.sh)")
    return exe


@pytest.mark.slow
def test_the_frozen_node_checks_its_example(tmp_path):
    """The frozen program: --example, then --check on it (data_dir moved into tmp): model, TLS-free
    config and the transfer syntaxes the frozen decoders read, all without Python installed."""
    exe = _frozen_node()
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "LANG": "C.UTF-8"}
    ex = subprocess.run([str(exe), "--example"], env=env, capture_output=True, text=True, timeout=120)
    assert ex.returncode == 0, ex.stderr
    cfg = tmp_path / "node.toml"
    cfg.write_text(ex.stdout.replace("/var/lib/mura-node", str(tmp_path / "data")))
    r = subprocess.run([str(exe), "--check", str(cfg)], env=env, capture_output=True, text=True,
                       timeout=180)
    assert r.returncode == 0, r.stderr
    assert f"folder: {FROZEN.resolve() / 'model'}" in r.stdout or str(FROZEN / "model") in r.stdout
    assert "JPEG 2000" in r.stdout and "JPEG-LS" in r.stdout and "RLE Lossless" in r.stdout


@pytest.mark.slow
def test_the_frozen_node_receives_screens_and_answers(tmp_path):
    """The frozen program as the service runs it, without Python: a phantom study in over DICOM,
    its SR and SCs back out (pynetdicom and its ssl import work frozen)."""
    from models.synth import write_dicom_studies
    from tests.desktop.node.conftest import Collector, echo, free_port, send, study_files, wait_for

    exe = _frozen_node()
    write_dicom_studies(tmp_path / "studies", seed=3, n_studies=1)
    dest = Collector(free_port()).start()
    port = free_port()
    ex = subprocess.run([str(exe), "--example"], capture_output=True, text=True, timeout=120,
                        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "LANG": "C.UTF-8"})
    cfg = tmp_path / "node.toml"
    cfg.write_text(ex.stdout.replace("/var/lib/mura-node", str(tmp_path / "data"))
                   .replace("port = 11112", f"port = {port}").replace("192.0.2.10", "127.0.0.1")
                   .replace("port = 104", f"port = {dest.port}").replace('ae_title = "PACS"', 'ae_title = "COLLECTOR"')
                   .replace("quiet_seconds = 30", "quiet_seconds = 0.5"))
    proc = subprocess.Popen([str(exe), str(cfg)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "LANG": "C.UTF-8"})
    try:
        wait_for(lambda: proc.poll() is not None or echo(port), 120, "the frozen node to listen")
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        files = study_files(tmp_path / "studies")
        assert send(port, files) == [0] * len(files)
        wait_for(lambda: len(dest.received) == len(files) + 1, 120, "SR + SCs from the frozen node")
    finally:
        proc.terminate()
        err = proc.communicate(timeout=60)[1]
        dest.stop()
    assert proc.returncode == 0, err
    assert sum(d.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.33" for d in dest.received.values()) == 1
