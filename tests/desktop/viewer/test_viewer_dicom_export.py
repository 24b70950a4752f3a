"""File > Export DICOM SC/SR: written by the worker via desktop.screening.dicom_export, sources untouched."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pydicom

WAIT_MS = 60_000


def test_export_dicom_from_the_window(qtbot, win, phantom, tmp_path):
    with qtbot.waitSignal(win.analysis_ready, timeout=WAIT_MS):
        win.open_paths([phantom / "dicom" / "study_0004"])
    qtbot.waitUntil(lambda: not win.busy, timeout=WAIT_MS)
    out = win.current_outcome
    sources = [v.ref.path for v in out.images]
    before = {p: hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in sources}
    with qtbot.waitSignal(win.dicom_exported, timeout=WAIT_MS) as blocker:
        assert win.export_dicom(tmp_path / "dcm") is not None
    res = blocker.args[0]
    assert res is not None and "DICOM export" in win.statusBar().currentMessage()
    assert len(res.paths) == len(sources) + 1  # one SC per image, then the SR
    study_uid = pydicom.dcmread(sources[0], stop_before_pixels=True).StudyInstanceUID
    for p in res.paths:
        ds = pydicom.dcmread(p)
        assert tmp_path / "dcm" in Path(p).parents
        assert ds.StudyInstanceUID == study_uid
    assert pydicom.dcmread(res.paths[-1]).Modality == "SR"
    assert {p: hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in sources} == before


def test_export_dicom_failure_is_reported(qtbot, win, phantom, tmp_path):
    """Plain PNG studies have no DICOM to refer to: the export fails with the reason."""
    with qtbot.waitSignal(win.analysis_ready, timeout=WAIT_MS):
        win.open_paths([phantom / "external"])
    qtbot.waitUntil(lambda: not win.busy, timeout=WAIT_MS)
    assert win.current_outcome.prediction is not None
    assert all(v.ref.kind != "dicom" for v in win.current_outcome.images)
    with qtbot.waitSignal(win.dicom_exported, timeout=WAIT_MS) as blocker:
        win.export_dicom(tmp_path / "dcm")
    assert blocker.args[0] is None
    assert "DICOM export failed" in win.statusBar().currentMessage()
