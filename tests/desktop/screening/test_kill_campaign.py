"""Kill -9 campaign (issue 16): mura-screen is SIGKILLed at 20 random moments, resumed each time,
and its final worklist must equal an uninterrupted run's: no study lost, none duplicated, the same
scores. The deterministic one-kill test is tests/desktop/screening/test_screen_resume.py; this campaign takes
a few minutes and runs in .ci/run (``MURA_CAMPAIGNS=1``)."""

from __future__ import annotations

import csv
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from models.synth import write_dicom_studies
from tests.conftest import REPO

pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    os.environ.get("MURA_CAMPAIGNS") != "1", reason="campaign: .ci/run runs it (MURA_CAMPAIGNS=1)")]

KILLS = 20


def _screen(src, out, model, timeout: float | None = None):
    cmd = [sys.executable, "-m", "desktop.screening.cli", str(src), "--model", str(model), "--out", str(out),
           "--no-progress", "--workers", "1"]
    return subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)  # its own group: the kill takes the workers too


def _worklist(out) -> dict[str, str]:
    with (out / "worklist.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    keys = [r["study"] for r in rows]
    assert len(keys) == len(set(keys)), "a study listed twice"
    return {r["study"]: r["probability"] for r in rows}


def test_twenty_random_kills_lose_and_duplicate_nothing(tmp_path, tiny_bundle):
    src = tmp_path / "src"
    write_dicom_studies(src, seed=33, n_studies=24, jobs=1)
    files = sorted(p for p in src.rglob("*") if p.is_file() and p.suffix != ".csv" and not p.name.startswith("."))
    ref_out, out = tmp_path / "reference", tmp_path / "killed"
    t0 = time.time()
    assert _screen(src, ref_out, tiny_bundle).wait(timeout=600) == 0
    full_run = time.time() - t0
    reference = _worklist(ref_out)
    rng = random.Random(20261204)
    kills = 0
    for _ in range(KILLS):
        proc = _screen(src, out, tiny_bundle)
        time.sleep(rng.uniform(0.2, full_run))
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            kills += 1
        else:  # it finished: give the next run work again (same bytes, new mtime: re-scored)
            for f in rng.sample(files, len(files) // 3):
                os.utime(f)
        proc.wait(timeout=60)
    assert kills >= KILLS // 2  # most runs were really cut short
    assert _screen(src, out, tiny_bundle).wait(timeout=600) == 0
    assert _worklist(out) == reference  # nothing lost, nothing twice, the same scores
    db = sqlite3.connect(out / "screen.sqlite")
    keys = [r[0] for r in db.execute("SELECT key FROM studies")]
    db.close()
    assert len(keys) == len(set(keys)) == len(reference)
