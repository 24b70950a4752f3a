"""Packaging checks: the NSIS script, the desktop entry, the frozen start-up wrapper (from
source, fast), and the built .deb / .tar.gz (slow; skipped until installers/build.sh ran)."""

from __future__ import annotations

import configparser
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO

INSTALLERS = REPO / "installers"
DIST = INSTALLERS / "dist"
FROZEN = Path(os.environ.get("MURA_FROZEN_DIR", DIST / "mura-fracture"))
VERSION = version("mura-fracture")


def _arch() -> str:
    try:
        return subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "amd64"


DEB = DIST / f"mura-fracture_{VERSION}_{_arch()}.deb"
TARBALL = DIST / f"mura-fracture-{VERSION}-linux-{_arch()}.tar.gz"


# -- fast: scripts and templates ------------------------------------------------------------
def test_nsis_script_compiles(tmp_path):
    if not shutil.which("makensis"):
        pytest.skip("makensis not installed (apt-get install nsis): NSIS script not compiled")
    src = tmp_path / "src"
    (src / "_internal").mkdir(parents=True)
    (src / "model").mkdir()
    for f in ("mura-viewer.exe", "mura-screen.exe", "_internal/python311.dll", "model/card.json"):
        (src / f).write_text("stand-in")
    out = tmp_path / "mura-fracture-check.exe"  # names with "setup" draw an NSIS warning
    r = subprocess.run(["makensis", "-V2", "-WX", f"-DVERSION={VERSION}", f"-DSRC_DIR={src}",
                        f"-DOUT_FILE={out}", str(INSTALLERS / "windows" / "mura.nsi")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert out.stat().st_size > 50_000 and out.read_bytes()[:2] == b"MZ"


def test_nsis_script_refuses_to_build_without_a_source_folder(tmp_path):
    if not shutil.which("makensis"):
        pytest.skip("makensis not installed")
    r = subprocess.run(["makensis", "-V2", f"-DOUT_FILE={tmp_path / 'x.exe'}",
                        str(INSTALLERS / "windows" / "mura.nsi")], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode != 0 and "SRC_DIR" in r.stdout + r.stderr


def test_desktop_entry():
    cp = configparser.ConfigParser(interpolation=None)
    cp.optionxform = str
    cp.read(INSTALLERS / "linux" / "mura-viewer.desktop")
    e = cp["Desktop Entry"]
    assert e["Type"] == "Application" and e["Exec"].split()[0] == "mura-viewer"
    assert "application/dicom" in e["MimeType"].split(";")
    assert e["Icon"] == "mura-fracture" and (INSTALLERS / "icons" / "mura-fracture.png").is_file()
    assert "not for diagnostic use" in e["Comment"]


def _wrapper_env(tmp_path: Path, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("MURA_MODEL", "MURA_DEFAULT_MODEL", "MURA_USER_DIR")}
    env.update(PYTHONPATH=str(REPO), MURA_USER_DIR=str(tmp_path / "user"), **extra)
    return env


def test_wrapper_check_decode_matches_the_reader(tmp_path):
    """--check-decode from source: same pixels as models.imageio, failures reported per file."""
    from models.imageio import load_image
    from models.synth import write_dicom_studies

    write_dicom_studies(tmp_path / "dicom", seed=5, n_studies=2)
    files = sorted((tmp_path / "dicom").rglob("*.dcm"))
    junk = tmp_path / "notes.txt"
    junk.write_text("not an image")
    r = subprocess.run([sys.executable, str(INSTALLERS / "frozen" / "mura_main.py"),
                        "screen", "--check-decode", *map(str, files), str(junk)],
                       env=_wrapper_env(tmp_path), capture_output=True, text=True, timeout=300)
    assert r.returncode == 1, r.stderr  # the junk file fails
    rows = [json.loads(ln) for ln in r.stdout.splitlines()]
    assert len(rows) == len(files) + 1
    for f, row in zip(files, rows, strict=False):
        px = np.ascontiguousarray(load_image(f).pixels, dtype=np.float32)
        assert row["ok"] and row["shape"] == list(px.shape)
        assert row["sha256"] == hashlib.sha256(px.tobytes()).hexdigest()
        assert row["transfer_syntax"].startswith("1.2.840.10008.1.2")
    assert rows[-1] == {"path": str(junk), "ok": False, "error": "UnsupportedImageError",
                        "message": rows[-1]["message"]}
    assert (tmp_path / "user" / "logs" / "mura-screen.log").is_file()


def test_wrapper_card_names_a_missing_bundle(tmp_path):
    missing = tmp_path / "no-such-bundle"
    r = subprocess.run([sys.executable, str(INSTALLERS / "frozen" / "mura_main.py"), "screen",
                        "--card"],
                       env=_wrapper_env(tmp_path, MURA_MODEL=str(missing)), capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 2
    assert str(missing) in r.stderr and "not found" in r.stderr


@pytest.fixture
def mura_frozen(monkeypatch, tmp_path):
    monkeypatch.syspath_prepend(str(INSTALLERS / "frozen"))
    monkeypatch.setenv("MURA_USER_DIR", str(tmp_path / "user"))
    import logging

    import mura_frozen as mf

    before = list(logging.getLogger().handlers)
    yield mf
    for h in logging.getLogger().handlers:
        if h not in before:
            logging.getLogger().removeHandler(h)
            h.close()
    sys.excepthook = sys.__excepthook__


def test_wrapper_leaves_the_model_to_the_app(mura_frozen, monkeypatch, tmp_path):
    """No --model is added: the apps find the installed bundle themselves
    (models.reference), so the viewer can let a bundle chosen in Settings beat it."""
    seen: list[list[str]] = []

    def app_main(argv: list[str]) -> int:
        seen.append(list(argv))
        return 7

    monkeypatch.setenv("MURA_MODEL", str(tmp_path / "bundle"))
    assert mura_frozen.run("mura-screen", app_main, ["studies"]) == 7
    assert mura_frozen.run("mura-screen", app_main, ["studies", "--model", "other"]) == 7
    assert mura_frozen.run("mura-viewer", app_main, []) == 7
    assert seen == [["studies"], ["studies", "--model", "other"], []]
    log = (tmp_path / "user" / "logs" / "mura-screen.log").read_text()
    assert "start mura-screen" in log and "exit mura-screen status 7" in log


def test_wrapper_card_describes_the_default_bundle(mura_frozen, monkeypatch, tmp_path, capsys):
    """--card without --model shows the bundle the programs would use by default."""
    monkeypatch.delenv("MURA_MODEL", raising=False)
    monkeypatch.setenv("MURA_DEFAULT_MODEL", str(tmp_path / "default-bundle"))
    assert mura_frozen.run("mura-screen", lambda argv: 0, ["--card"]) == 2
    assert str(tmp_path / "default-bundle") in capsys.readouterr().err


def _which_bundle(tmp_path: Path, *args: str) -> str:
    """``build.sh --which-bundle`` from a copy of the script in a stand-in repository."""
    repo = tmp_path / "repo"
    (repo / "installers").mkdir(parents=True, exist_ok=True)
    shutil.copy(INSTALLERS / "build.sh", repo / "installers" / "build.sh")
    r = subprocess.run(["bash", str(repo / "installers" / "build.sh"), "--which-bundle", *args],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def test_build_packs_the_reference_model_when_there_is_one(tmp_path):
    assert "phantom placeholder: no models/reference/fracatlas-lite0/card.json" in \
        _which_bundle(tmp_path)
    ref = tmp_path / "repo" / "models" / "reference" / "fracatlas-lite0"
    ref.mkdir(parents=True)
    (ref / "card.json").write_text("{}")
    assert _which_bundle(tmp_path) == \
        "models/reference/fracatlas-lite0 (the shipped reference model)"
    assert "phantom placeholder: --placeholder" in _which_bundle(tmp_path, "--placeholder")
    assert _which_bundle(tmp_path, "--bundle", "b") == "b (given with --bundle)"


def test_wrapper_turns_a_crash_into_status_3_and_a_log_entry(mura_frozen, tmp_path, capsys):
    def app_main(argv: list[str]) -> int:
        raise RuntimeError("boom in the app")

    assert mura_frozen.run("mura-viewer", app_main, []) == 3
    assert "RuntimeError: boom in the app" in capsys.readouterr().err
    assert "boom in the app" in (tmp_path / "user" / "logs" / "mura-viewer.log").read_text()


def test_wrapper_passes_argparse_exit_codes(mura_frozen):
    def app_main(argv: list[str]) -> int:
        raise SystemExit(2)

    assert mura_frozen.run("mura-screen", app_main, ["--bogus"]) == 2


# -- slow: the built artefacts ----------------------------------------------------------------
def _need(path: Path) -> Path:
    if not path.is_file():
        pytest.skip(f"{path} not built (run installers/build.sh)")
    if not shutil.which("dpkg-deb"):
        pytest.skip("dpkg-deb not available")
    return path


@pytest.mark.slow
def test_deb_control_fields():
    deb = _need(DEB)
    info = subprocess.run(["dpkg-deb", "-f", str(deb)], capture_output=True, text=True,
                          check=True).stdout
    fields = dict(re.findall(r"^(\S+): (.*)$", info, flags=re.M))
    assert fields["Package"] == "mura-fracture"
    assert fields["Version"] == VERSION
    assert fields["Architecture"] == _arch()
    assert "libc6 (>= " in fields["Depends"] and "libxcb-icccm4" in fields["Depends"]
    assert "ocl-icd-libopencl1" in fields["Recommends"]
    assert "not for diagnostic use" in " ".join(info.lower().split())  # folded text
    installed_kb = int(fields["Installed-Size"])
    runtime_kb = sum(p.stat().st_size for p in FROZEN.rglob("*") if p.is_file() and not p.is_symlink()) / 1024
    assert 0.9 * runtime_kb < installed_kb < 1.2 * runtime_kb + 1024


@pytest.mark.slow
def test_deb_file_list():
    deb = _need(DEB)
    listing = subprocess.run(["dpkg-deb", "-c", str(deb)], capture_output=True, text=True,
                             check=True).stdout.splitlines()
    entries, links = {}, {}
    for line in listing:
        parts = line.split(None, 5)
        name, _, target = parts[5].partition(" -> ")
        entries[name] = (parts[0], parts[1])
        links[name] = target
    for must in ("./opt/mura-fracture/mura-viewer", "./opt/mura-fracture/mura-screen",
                 "./opt/mura-fracture/model/card.json", "./usr/bin/mura-viewer", "./usr/bin/mura-screen",
                 "./usr/share/applications/mura-viewer.desktop",
                 "./usr/share/icons/hicolor/256x256/apps/mura-fracture.png",
                 "./usr/share/doc/mura-fracture/copyright", "./usr/bin/mura-node",
                 "./usr/lib/systemd/system/mura-node.service",
                 "./usr/share/doc/mura-fracture/node.example.toml"):
        assert must in entries, f"{must} missing from the .deb"
    assert not any(n.startswith("./etc/") for n in entries)  # mura-node.service is not enabled
    for exe in ("./opt/mura-fracture/mura-fracture", "./usr/bin/mura-viewer", "./usr/bin/mura-screen"):
        assert entries[exe][0] == "-rwxr-xr-x", (exe, entries[exe])
    for name in ("mura-viewer", "mura-screen", "mura-node"):  # one program, three names
        link = f"./opt/mura-fracture/{name}"
        assert entries[link][0].startswith("l") and links[link] == "mura-fracture", link
    assert all(owner == "root/root" for _, owner in entries.values())
    tops = {n.split("/")[1] for n in entries if n.count("/") >= 1 and n != "./"}
    assert tops <= {"opt", "usr", ""}, tops
    assert not any("__pycache__" in n or n.endswith(".pyc") and "/_internal/" not in n for n in entries)


@pytest.mark.slow
def test_deb_extracts_and_runs_and_installs_cleanly(tmp_path):
    """dpkg -x runs from the extracted tree; dpkg --root installs and removes without residue."""
    deb = _need(DEB)
    root = tmp_path / "x"
    subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    launcher = (root / "usr" / "bin" / "mura-screen").read_text()
    assert 'exec /opt/mura-fracture/mura-screen "$@"' in launcher
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path / "home"), "LANG": "C.UTF-8"}
    r = subprocess.run([str(root / "opt" / "mura-fracture" / "mura-screen"), "--card"], env=env,
                       capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr
    assert f"folder: {root.resolve() / 'opt' / 'mura-fracture' / 'model'}" in r.stdout

    # a private dpkg database: install, then remove, and nothing of ours may remain
    admin = tmp_path / "sys"
    (admin / "var" / "lib" / "dpkg" / "info").mkdir(parents=True)
    (admin / "var" / "lib" / "dpkg" / "updates").mkdir()
    (admin / "var" / "lib" / "dpkg" / "status").write_text("")
    dpkg = ["dpkg", f"--root={admin}", "--force-not-root", "--force-depends", "--log=/dev/null",
            "--force-script-chrootless"]
    r = subprocess.run([*dpkg, "-i", str(deb)], capture_output=True, text=True, timeout=300)
    if r.returncode != 0 and "chroot" in (r.stdout + r.stderr):
        pytest.skip(f"dpkg --root not usable here: {r.stderr.strip()[:200]}")
    assert r.returncode == 0, r.stdout + r.stderr
    assert (admin / "opt" / "mura-fracture" / "mura-viewer").is_file()
    assert (admin / "usr" / "bin" / "mura-viewer").is_file()
    r = subprocess.run([*dpkg, "--purge", "mura-fracture"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    left = [str(p.relative_to(admin)) for p in admin.rglob("*")
            if p.is_file() and not str(p.relative_to(admin)).startswith("var/lib/dpkg")]
    assert not left, f"files left after purge: {left[:10]}"
    assert not (admin / "opt" / "mura-fracture").exists()


@pytest.mark.slow
def test_tarball_matches_the_frozen_folder():
    tgz = _need(TARBALL)
    with tarfile.open(tgz) as tf:
        names = {m.name for m in tf.getmembers()}
        owners = {(m.uid, m.gid) for m in tf.getmembers()}
    on_disk = {"mura-fracture"} | {f"mura-fracture/{p.relative_to(FROZEN)}" for p in FROZEN.rglob("*")}
    assert names == on_disk
    assert owners == {(0, 0)}


def _declared_sonames() -> set[str]:
    out: set[str] = set()
    for f in ("depends.txt", "recommends.txt"):
        for line in (INSTALLERS / "linux" / f).read_text().splitlines():
            if line.strip() and not line.startswith("#") and ";" in line:
                out |= set(line.split(";", 1)[1].split())
    return out


@pytest.mark.slow
def test_every_system_library_is_declared():
    """Each library the frozen app links to but does not bundle is in depends/recommends.txt."""
    if not (FROZEN / "mura-screen").is_file():
        pytest.skip(f"{FROZEN} not built (run installers/build.sh)")
    if not shutil.which("readelf"):
        pytest.skip("readelf not available")
    bundled = {p.name for p in FROZEN.rglob("*")}
    missing: dict[str, str] = {}
    for p in FROZEN.rglob("*"):
        if p.is_symlink() or not p.is_file():
            continue
        with p.open("rb") as fh:
            if fh.read(4) != b"\x7fELF":
                continue
        out = subprocess.run(["readelf", "-d", str(p)], capture_output=True, text=True).stdout
        for name in re.findall(r"\(NEEDED\)\s+Shared library: \[(.+?)\]", out):
            if name not in bundled:
                missing.setdefault(name, str(p.relative_to(FROZEN)))
    undeclared = {k: v for k, v in missing.items() if k not in _declared_sonames()}
    assert not undeclared, f"system libraries not declared in installers/linux/*.txt: {undeclared}"


@pytest.mark.parametrize(("argv0", "args", "app", "rest"), [
    ("/opt/mura-fracture/mura-viewer", ["a.dcm"], "mura-viewer", ["a.dcm"]),
    ("mura-screen", ["src", "--out", "o"], "mura-screen", ["src", "--out", "o"]),
    (r"C:\Program Files\mura-fracture\MURA-SCREEN.EXE", ["--version"], "mura-screen",
     ["--version"]),
    ("/opt/mura-fracture/mura-fracture", ["viewer", "--model", "m"], "mura-viewer",
     ["--model", "m"]),
    ("mura-fracture", ["screen", "src"], "mura-screen", ["src"]),
    ("/usr/bin/../../opt/mura-fracture/mura-node", ["cfg.toml"], "mura-node", ["cfg.toml"]),
    ("mura-fracture", ["node", "--check", "cfg.toml"], "mura-node", ["--check", "cfg.toml"]),
    ("mura-fracture", ["train"], None, ["train"]),
    ("mura-fracture", [], None, []),
])
def test_one_executable_dispatches_on_its_name_or_first_argument(monkeypatch, argv0, args, app,
                                                                  rest):
    monkeypatch.syspath_prepend(str(INSTALLERS / "frozen"))
    import mura_main

    assert mura_main.resolve(argv0, list(args)) == (app, rest)


def test_one_executable_without_an_app_prints_usage(tmp_path):
    r = subprocess.run([sys.executable, str(INSTALLERS / "frozen" / "mura_main.py")],
                       env=_wrapper_env(tmp_path), capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "usage: mura-fracture {viewer,screen,node}" in r.stderr
