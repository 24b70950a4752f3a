"""The state database commits whole studies in small batches (issue 18 §1): fewer fsyncs, and a
crash still loses only uncommitted whole studies, never part of one and never a committed one."""

from __future__ import annotations

import sqlite3
import subprocess
import sys

import pytest

from desktop.screening import state as state_mod
from desktop.screening.state import FileStamp, ImageRow, ScreenState, StudyRow


def _begin(st: ScreenState) -> None:
    st.begin(model_id="m", model_name="n", model_version="1", source_root="/src")


def _study(key: str) -> tuple[StudyRow, list[ImageRow]]:
    return (StudyRow(key, 0.5, "wrist", "suspicious", 1, 0),
            [ImageRow(FileStamp(f"/src/{key}.png", 1, 1), probability=0.5, body_part="wrist")])


def _committed(path) -> int:
    with sqlite3.connect(path) as other:  # another process's view: committed rows only
        return other.execute("SELECT COUNT(*) FROM studies").fetchone()[0]


def test_studies_are_committed_in_batches_and_on_close(tmp_path):
    st = ScreenState(tmp_path)
    _begin(st)
    for k in ("a", "b", "c"):
        st.commit_study(_study(k)[0], k, _study(k)[1])
    assert _committed(st.path) == 0  # within BATCH_SECONDS: not yet
    assert st.finished("b", "b")  # this run sees its own batch
    st.flush()
    assert _committed(st.path) == 3
    st.commit_study(_study("d")[0], "d", _study("d")[1])
    st.close()
    assert _committed(tmp_path / state_mod.DB_NAME) == 4


def test_a_batch_is_committed_when_it_is_due(tmp_path, monkeypatch):
    monkeypatch.setattr(state_mod, "BATCH_STUDIES", 2)
    st = ScreenState(tmp_path)
    _begin(st)
    for k in ("a", "b", "c"):
        st.commit_study(_study(k)[0], k, _study(k)[1])
    assert _committed(st.path) == 2
    st.close()


def test_a_study_that_cannot_be_written_leaves_the_batch_before_it(tmp_path):
    st = ScreenState(tmp_path)
    _begin(st)
    st.commit_study(_study("a")[0], "a", _study("a")[1])
    bad_row, bad_images = _study("b")
    bad_images.append(ImageRow(FileStamp(None, 1, 1)))  # type: ignore[arg-type]  # path NOT NULL
    with pytest.raises(sqlite3.IntegrityError):
        st.commit_study(bad_row, "b", bad_images)
    st.close()
    again = ScreenState(tmp_path)
    assert again.finished("a", "a") and again.study("b") is None  # never half a study
    again.close()


def test_a_kill_loses_only_the_uncommitted_batch(tmp_path):
    """SIGKILL-like exit in the middle of a batch: the flushed studies are there, whole; the
    unflushed one is not there at all."""
    code = (
        "import os, sys\n"
        "from tests.desktop.screening.test_state import _begin, _study\n"
        "from desktop.screening.state import ScreenState\n"
        f"st = ScreenState({str(tmp_path)!r}); _begin(st)\n"
        "for k in ('a', 'b'):\n"
        "    st.commit_study(_study(k)[0], k, _study(k)[1])\n"
        "st.flush()\n"
        "st.commit_study(_study('c')[0], 'c', _study('c')[1])\n"
        "os._exit(137)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 137, r.stderr
    st = ScreenState(tmp_path)
    assert st.finished("a", "a") and st.finished("b", "b")
    assert st.study("c") is None and st.images("c") == []
    st.close()
