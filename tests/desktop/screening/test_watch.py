"""``mura-screen FOLDER --watch``: a folder a PACS exports into, screened study by study as each
one's files settle, on the resumable state; SIGINT/SIGTERM stop it cleanly (exit 0)."""

from __future__ import annotations

import csv
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from desktop.screening.discovery import ImageRef, Study
from desktop.screening.watch import Changes, filesystem_type, on_network_share
from models.synth import write_dicom_studies
from tests.conftest import REPO

N_STUDIES = 3


@pytest.fixture(scope="module")
def staged(tmp_path_factory) -> Path:
    """Phantom studies to drop into a watched folder (study_0001 … study_0003)."""
    root = tmp_path_factory.mktemp("watch-staged")
    write_dicom_studies(root, seed=41, n_studies=N_STUDIES, jobs=1)
    return root


def _start(src: Path, out: Path, model: Path, *extra: str) -> subprocess.Popen:
    log = (out.parent / f"{out.name}.stdout").open("w")
    cmd = [sys.executable, "-m", "desktop.screening.cli", str(src), "--model", str(model), "--out", str(out),
           "--watch", "--no-progress", *extra]
    return subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)


def _rows(out: Path) -> dict[str, dict]:
    try:
        with (out / "worklist.csv").open(newline="") as fh:
            return {r["study"]: r for r in csv.DictReader(fh)}
    except FileNotFoundError:
        return {}


def _scored(out: Path) -> dict[str, float]:
    with sqlite3.connect(out / "screen.sqlite") as db:
        return dict(db.execute("SELECT key, scored_at FROM studies"))


def _wait(cond, proc: subprocess.Popen, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the watcher exited ({proc.returncode}) while waiting for {what}"
        try:
            if cond():
                return
        except (sqlite3.Error, OSError):
            pass
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _stop(proc: subprocess.Popen, sig: int) -> int:
    proc.send_signal(sig)
    try:
        return proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()


def _decode_workers(proc: subprocess.Popen) -> set[int]:
    """The watcher's decode worker processes: the fork server's children, or (spawned) its own
    children but multiprocessing's resource tracker."""
    import psutil

    out: set[int] = set()
    for child in psutil.Process(proc.pid).children():
        cmd = " ".join(child.cmdline())
        if "forkserver" in cmd:
            out |= {c.pid for c in child.children()}
        elif "resource_tracker" not in cmd:
            out.add(child.pid)
    return out


def _uid(folder: Path) -> str:
    from models.dicom import read_header

    return str(read_header(next(p for p in sorted(folder.iterdir()))).StudyInstanceUID)


def test_watch_screens_new_studies_rescores_a_changed_one_and_stops_on_sigint(staged, tiny_bundle, tmp_path):
    src, out = tmp_path / "export", tmp_path / "out"
    src.mkdir()
    proc = _start(src, out, tiny_bundle, "--settle", "0.5", "--workers", "1")
    try:
        _wait(lambda: (out / "worklist.csv").exists(), proc, "the first (empty) worklist")
        for name in ("study_0001", "study_0002"):
            shutil.copytree(staged / name, src / name)
        uids = [_uid(staged / f"study_{i:04d}") for i in range(1, N_STUDIES + 1)]
        _wait(lambda: set(_rows(out)) == set(uids[:2]), proc, "two studies in the worklist")
        before = _scored(out)
        workers = _decode_workers(proc)
        shutil.copytree(staged / "study_0003", src / "study_0003")
        _wait(lambda: set(_rows(out)) == set(uids), proc, "the third study")
        assert len(workers) == 1 and _decode_workers(proc) == workers  # one pool for every batch
        assert {k: _scored(out)[k] for k in uids[:2]} == before  # finished studies are not redone
        victim = sorted((src / "study_0001").iterdir())[0]
        st = victim.stat()
        os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
        _wait(lambda: _scored(out)[uids[0]] != before[uids[0]], proc, "the changed study re-scored")
        after = _scored(out)
        assert after[uids[1]] == before[uids[1]]
    finally:
        rc = _stop(proc, signal.SIGINT)
    assert rc == 0
    printed = (tmp_path / "out.stdout").read_text()
    assert "native file events" in printed and "SIGINT" in printed and "stopped" in printed
    assert "PHANTOM" not in printed and "study_000" not in printed  # no identifier, no path
    with sqlite3.connect(out / "screen.sqlite") as db:
        keys = [k for (k,) in db.execute("SELECT key FROM studies")]
        n_images, distinct = db.execute("SELECT COUNT(*), COUNT(DISTINCT path) FROM images").fetchone()
    assert sorted(keys) == sorted(uids)  # each study once, committed before the exit
    n_files = sum(1 for p in src.rglob("*") if p.is_file())
    assert n_images == distinct == n_files
    assert set(_rows(out)) == set(uids)


def test_polling_waits_for_a_study_to_settle_and_stops_on_sigterm(staged, tiny_bundle, tmp_path):
    """The fallback for network shares: timed scans. A study written in two steps, the second
    before it settled, is screened once, complete; SIGTERM stops the watcher with status 0."""
    src, out = tmp_path / "share", tmp_path / "out"
    src.mkdir()
    proc = _start(src, out, tiny_bundle, "--poll", "--poll-interval", "0.2", "--settle", "2",
                  "--workers", "0")
    try:
        _wait(lambda: (out / "worklist.csv").exists(), proc, "the first (empty) worklist")
        files = sorted((staged / "study_0002").iterdir())
        (src / "study_0002").mkdir()
        data = files[0].read_bytes()
        part = src / "study_0002" / files[0].name
        part.write_bytes(data[: len(data) // 2])  # a PACS still writing the first file
        time.sleep(0.8)
        part.write_bytes(data)
        for f in files[1:]:
            shutil.copy2(f, src / "study_0002" / f.name)
        uid = _uid(staged / "study_0002")
        _wait(lambda: set(_rows(out)) == {uid}, proc, "the study in the worklist")
        row = _rows(out)[uid]
    finally:
        rc = _stop(proc, signal.SIGTERM)
    assert rc == 0
    printed = (tmp_path / "out.stdout").read_text()
    assert "polling every 0.2s" in printed and "SIGTERM" in printed
    screened = [int(line.split(" studies screened")[0].split(" study screened")[0].split()[-1])
                for line in printed.splitlines() if " screened (" in line]
    assert sum(screened) == 1, printed  # never screened half-written
    assert row["n_failed"] == "0" and row["n_images"] == str(len(files))


def test_changes_settle_per_file(tmp_path):
    root = tmp_path / "src"
    (root / "a").mkdir(parents=True)
    old = root / "a" / "old.dcm"
    old.write_bytes(b"x")
    os.utime(old, (time.time() - 100, time.time() - 100))
    ch = Changes(root)
    assert ch.scan(1000.0) == 1
    study = Study("1.2", [ImageRef(str(old), "dicom")])
    assert ch.settled(study, 1000.0, 10.0)  # there before the watcher, unchanged for 100 s
    assert ch.due(1000.0, 10.0)
    ch.covered(1000.0, 10.0)  # the first batch screened it
    assert ch.pending == {}
    new = root / "a" / "new.dcm"
    new.write_bytes(b"y")
    assert ch.scan(1001.0) == 1
    both = Study("1.2", [ImageRef(str(old), "dicom"), ImageRef(str(new), "dicom")])
    assert not ch.settled(both, 1005.0, 10.0) and ch.settled(both, 1011.0, 10.0)
    assert ch.wait_s(1005.0, 10.0) == pytest.approx(6.0)
    assert not ch.due(1005.0, 10.0) and ch.due(1011.0, 10.0)
    ch.covered(1011.0, 10.0)
    assert ch.pending == {} and ch.wait_s(1012.0, 10.0) is None
    new.unlink()
    assert ch.scan(1020.0) == 1 and ch.pending == {str(new): 1020.0}  # a removal is a change too
    unseen = Study("1.3", [ImageRef(str(root / "a" / "later.dcm"), "dicom")])
    assert not ch.settled(unseen, 2000.0, 10.0)


def test_output_folder_inside_the_watched_one_is_ignored(tmp_path):
    root = tmp_path / "src"
    (root / "results").mkdir(parents=True)
    (root / "results" / "worklist.csv").write_text("x")
    (root / "a.dcm").write_bytes(b"x")
    ch = Changes(root, ignore=root / "results")
    ch.scan(0.0)
    assert set(ch.stamps) == {str(root / "a.dcm")}


def test_network_share_detection(tmp_path):
    assert filesystem_type(tmp_path) != ""  # some local file system, read from /proc/mounts
    assert not on_network_share(tmp_path)


def test_a_watcher_killed_mid_batch_resumes_without_loss_or_duplicate(tiny_bundle, tmp_path):
    """kill -9 (the test hook's os._exit) after 4 of 12 studies of one batch; the restarted
    watcher finishes the other 8 and does not redo the 4."""
    staging, src, out = tmp_path / "staging", tmp_path / "export", tmp_path / "out"
    write_dicom_studies(staging / "batch", seed=43, n_studies=12, jobs=1)
    (staging / "batch" / "labels.csv").unlink()
    src.mkdir()
    env = {**os.environ, "MURA_SCREEN_DIE_AFTER": "4"}
    cmd = [sys.executable, "-m", "desktop.screening.cli", str(src), "--model", str(tiny_bundle),
           "--out", str(out), "--watch", "--no-progress", "--settle", "1", "--workers", "1"]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait(lambda: (out / "worklist.csv").exists(), proc, "the first (empty) worklist")
        os.rename(staging / "batch", src / "batch")  # twelve studies appear at once
        assert proc.wait(timeout=120) == 137
    finally:
        if proc.poll() is None:
            proc.kill()
    first = _scored(out)
    assert len(first) == 4
    proc = _start(src, out, tiny_bundle, "--settle", "1", "--workers", "1")
    try:
        _wait(lambda: len(_rows(out)) == 12, proc, "all twelve studies", timeout=120)
    finally:
        assert _stop(proc, signal.SIGINT) == 0
    after = _scored(out)
    assert len(after) == 12 and {k: after[k] for k in first} == first
    with sqlite3.connect(out / "screen.sqlite") as db:
        n, distinct = db.execute("SELECT COUNT(*), COUNT(DISTINCT path) FROM images").fetchone()
    assert n == distinct == sum(1 for p in src.rglob("*") if p.is_file() and not p.name.startswith("."))
