"""mura-screen is resumable and honest: kill it, rerun it, and nothing is redone or lost."""

from __future__ import annotations

import csv
import io
import json
import os
import sqlite3
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import generate_uid

from desktop.screening.cli import main
from models.synth import write_dicom_studies

REPO = Path(__file__).resolve().parents[3]
N_STUDIES = 8


@pytest.fixture(scope="module")
def dicom_src(tmp_path_factory) -> tuple[Path, list[dict]]:
    """8 phantom studies plus one truncated file (joins a study, must be reported as failed)."""
    root = tmp_path_factory.mktemp("resume") / "src"
    write_dicom_studies(root, seed=21, n_studies=N_STUDIES, jobs=1)
    labels = list(csv.DictReader((root / "labels.csv").open()))
    first = sorted(root.rglob("*.dcm"))[0]
    ds = pydicom.dcmread(first)
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    buf = io.BytesIO()
    ds.save_as(buf)
    (root / "bad").mkdir()
    (root / "bad" / "truncated.dcm").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 3])
    return root, labels


def _copy(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst, copy_function=shutil.copy2)  # keep mtimes: same fingerprints
    return dst


def _studies(out: Path) -> dict[str, tuple[int, float]]:
    with sqlite3.connect(out / "screen.sqlite") as db:
        return {k: (i, t) for k, i, t in db.execute("SELECT key, id, scored_at FROM studies")}


def _n_images(out: Path) -> tuple[int, int]:
    with sqlite3.connect(out / "screen.sqlite") as db:
        n, distinct = db.execute("SELECT COUNT(*), COUNT(DISTINCT path) FROM images").fetchone()
    return n, distinct


class _ReportParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.counts: dict[str, int] = {}
        self.verdicts: dict[str, int] = {}
        self.study_rows = 0
        self.failed = 0
        self.images = 0
        self._count: str | None = None
        self._verdict: str | None = None
        self._cells = 0

    def handle_starttag(self, tag: str, attrs: list) -> None:
        a = dict(attrs)
        if "data-count" in a:
            self._count = a["data-count"]
        if tag == "tr" and "data-verdict" in a:
            self._verdict, self._cells = a["data-verdict"], 0
        if tag == "td" and self._verdict is not None:
            self._cells += 1
        if tag == "tr" and "study" in (a.get("class") or "").split():
            self.study_rows += 1
        if tag == "li" and a.get("class") == "failed-file":
            self.failed += 1
        if (tag == "img" and (a.get("src") or "").startswith(("data:image/png;base64,", "data:image/jpeg;base64,"))
                and a.get("alt") != "heatmap colour scale"):  # the legend is not a study's picture
            self.images += 1

    def handle_data(self, data: str) -> None:
        if self._count is not None and data.strip():
            self.counts[self._count] = int(data)
            self._count = None
        if self._verdict is not None and self._cells == 2 and data.strip():
            self.verdicts[self._verdict] = int(data)
            self._verdict = None


def test_kill_resume_change_and_report(dicom_src, tiny_bundle, tmp_path, capsys):
    src, labels = dicom_src
    src = _copy(src, tmp_path / "src")
    out = tmp_path / "out"
    env = {**os.environ, "MURA_SCREEN_DIE_AFTER": "3"}
    proc = subprocess.run([sys.executable, "-m", "desktop.screening.cli", str(src), "--model", str(tiny_bundle),
                           "--out", str(out)], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 137, proc.stderr
    assert "PHANTOM" not in proc.stdout + proc.stderr
    before = _studies(out)
    assert len(before) == 3  # committed studies survive the hard kill
    assert not (out / "worklist.csv").exists()

    rc = main([str(src), "--model", str(tiny_bundle), "--out", str(out)])
    assert rc == 1  # the truncated file
    captured = capsys.readouterr()
    assert "3 resumed" in captured.out
    assert "images/s" in captured.err and "ETA" in captured.err
    after = _studies(out)
    uids = {r["study_uid"] for r in labels}
    assert set(after) == uids  # every study exactly once (key is UNIQUE), none lost
    assert {k: after[k] for k in before} == before  # finished studies were not re-scored
    n_files = len([p for p in src.rglob("*.dcm")]) + len([p for p in src.rglob("*") if p.is_file()
                                                           and p.suffix == "" and p.name != "labels.csv"])
    assert _n_images(out) == (n_files, n_files)
    rows = list(csv.DictReader((out / "worklist.csv").open()))
    assert sorted(r["study"] for r in rows) == sorted(uids)
    probs = [float(r["probability"]) for r in rows]
    assert probs == sorted(probs, reverse=True)
    fails = list(csv.DictReader((out / "failures.csv").open()))
    assert [(Path(r["path"]).name, r["kind"]) for r in fails if r["kind"] == "failed"] == [
        ("truncated.dcm", "failed")]

    rep = _ReportParser()
    rep.feed((out / "report.html").read_text())
    assert rep.counts["studies"] == N_STUDIES == rep.study_rows
    assert rep.counts["failed_files"] == 1 == rep.failed
    assert rep.counts["images"] == n_files
    assert sum(rep.verdicts.values()) == N_STUDIES
    assert rep.images == N_STUDIES  # one embedded heatmap thumbnail per study
    assert "not for diagnostic use" in (out / "report.html").read_text().lower()

    # A third run redoes nothing.
    assert main([str(src), "--model", str(tiny_bundle), "--out", str(out)]) == 1
    assert _studies(out) == after
    assert f"{N_STUDIES} resumed" in capsys.readouterr().out

    # A touched file is re-scored, only its study.
    folder = next(r["folder"] for r in labels if r["study_uid"] == sorted(uids)[0])
    victim = next(p for p in sorted((src / folder).iterdir()) if p.is_file())
    st = victim.stat()
    os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    assert main([str(src), "--model", str(tiny_bundle), "--out", str(out)]) == 1
    changed = _studies(out)
    key = sorted(uids)[0]
    assert changed[key] != after[key]
    assert {k: v for k, v in changed.items() if k != key} == {k: v for k, v in after.items() if k != key}
    assert _n_images(out) == (n_files, n_files)


def test_model_change_is_refused_unless_restart(dicom_src, tiny_bundle, bundle_copy, tmp_path, capsys):
    src, _ = dicom_src
    out = tmp_path / "out"
    assert main([str(src), "--model", str(tiny_bundle), "--out", str(out), "--no-progress"]) == 1
    card_path = bundle_copy / "card.json"
    card = json.loads(card_path.read_text())
    card["version"] = card["version"] + "-other"
    card_path.write_text(json.dumps(card))
    capsys.readouterr()
    assert main([str(src), "--model", str(bundle_copy), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "--restart" in err and "-other" in err and "screen.sqlite" in err
    assert main([str(src), "--model", str(bundle_copy), "--out", str(out), "--no-progress",
                 "--restart"]) == 1
    assert "0 resumed" in capsys.readouterr().out
    with sqlite3.connect(out / "screen.sqlite") as db:
        assert db.execute("SELECT model_id FROM run").fetchone()[0].split("#")[0].endswith("-other")
        assert db.execute("SELECT COUNT(*) FROM studies").fetchone()[0] == N_STUDIES
    rows = list(csv.DictReader((out / "worklist.csv").open()))
    assert {r["model"].split("#")[0].endswith("-other") for r in rows} == {True}


def test_anonymize_hides_identifiers(dicom_src, tiny_bundle, tmp_path, capsys):
    src, labels = dicom_src
    out = tmp_path / "anon"
    assert main([str(src), "--model", str(tiny_bundle), "--out", str(out), "--anonymize"]) == 1
    printed = capsys.readouterr()
    texts = {name: (out / name).read_text() for name in ("worklist.csv", "failures.csv", "report.html")}
    texts["stdout"], texts["stderr"] = printed.out, printed.err
    secrets = ["PHANTOM", str(src), "study_0001", *(r["study_uid"] for r in labels)]
    for name, text in texts.items():
        for s in secrets:
            assert s not in text, f"{name} contains {s!r}"
    rows = list(csv.DictReader((out / "worklist.csv").open()))
    assert len({r["study"] for r in rows}) == N_STUDIES
    assert all(r["study"].startswith("study-") for r in rows)
    rep = _ReportParser()
    rep.feed(texts["report.html"])
    assert rep.counts["studies"] == N_STUDIES and rep.counts["failed_files"] == 1


def test_sigkill_mid_run_loses_nothing(dicom_src, tiny_bundle, tmp_path):
    """A real SIGKILL (no test hook) once the first study is committed: the rerun completes it."""
    import signal
    import time

    src, labels = dicom_src
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "desktop.screening.cli", str(src), "--model", str(tiny_bundle),
                             "--out", str(out), "--no-progress"], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 240
        while proc.poll() is None and time.time() < deadline:
            try:
                if len(_studies(out)) >= 1:
                    break
            except sqlite3.Error:
                pass  # not created yet
            time.sleep(0.02)
        killed = proc.poll() is None
        if killed:
            proc.send_signal(signal.SIGKILL)
        rc = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert rc == (-signal.SIGKILL if killed else 1)
    before = _studies(out)
    assert before  # at least the study we waited for
    assert main([str(src), "--model", str(tiny_bundle), "--out", str(out), "--no-progress"]) == 1
    after = _studies(out)
    assert set(after) == {r["study_uid"] for r in labels}
    assert {k: after[k] for k in before} == before
    assert len(list(csv.DictReader((out / "worklist.csv").open()))) == N_STUDIES
