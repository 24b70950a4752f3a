"""The DICOM tag browser lists every element (sequences nested), filters, never dumps bulk data."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from PySide6.QtCore import Qt

from desktop.screening.discovery import discover
from desktop.viewer.tags import filter_rows, read_tags
from models.errors import DicomError

WAIT_MS = 60_000


def _first(folder: Path) -> str:
    return discover(folder).studies[0].images[0].path


@pytest.fixture
def tagged(phantom, tmp_path) -> Path:
    """A phantom image plus a nested sequence and a private binary blob."""
    ds = pydicom.dcmread(_first(phantom / "dicom" / "study_0002"), force=True)
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator = "RPID2472", "RADLEX"
    code.CodeMeaning = "XR ELBOW SPECIAL PROJECTION"
    inner = Dataset()
    inner.CodeValue, inner.CodeMeaning = "T-D8300", "Nested elbow"
    code.ModifierCodeSequence = Sequence([inner])
    ds.ProcedureCodeSequence = Sequence([code])
    ds.add_new(0x00091010, "LO", "ACME")
    ds.add_new(0x00091011, "OB", bytes(range(256)) * 40)  # 10 KiB of private binary
    out = tmp_path / "tagged.dcm"
    ds.save_as(out, enforce_file_format=True)
    return out


def _flat(rows, depth=0):
    for r in rows:
        yield depth, r
        yield from _flat(r.children, depth + 1)


def test_rows_cover_meta_sequences_and_show_bulk_as_sizes(tagged):
    before = tagged.read_bytes()
    rows = read_tags(tagged)
    assert rows[0].keyword == "File meta information"
    assert any(r.keyword == "TransferSyntaxUID" for r in rows[0].children)
    flat: dict = {}
    for d, r in _flat(rows):
        flat.setdefault(r.keyword, (d, r))  # the outermost occurrence
    ds = pydicom.dcmread(tagged)
    assert flat["StudyDescription"][1].value == str(ds.StudyDescription)
    assert flat["Rows"][1].tag == "(0028,0010)" and flat["Rows"][1].vr == "US"
    # sequences are nested: sequence -> item -> element -> sequence -> item -> element
    depth_seq, seq = flat["ProcedureCodeSequence"]
    assert seq.vr == "SQ" and seq.value == "1 item(s)" and seq.children[0].keyword == "Item 1"
    assert flat["CodeMeaning"][0] == depth_seq + 2
    assert flat["ModifierCodeSequence"][0] == depth_seq + 2
    nested = [(d, r) for d, r in _flat(rows) if r.value == "Nested elbow"]
    assert nested and nested[0][0] == depth_seq + 4
    # bulk data: a size, never the bytes
    pix = flat["PixelData"][1]
    assert pix.tag == "(7FE0,0010)" and "bytes" in pix.value and len(pix.value) < 80
    blob = next(r for _, r in _flat(rows) if r.tag == "(0009,1011)")
    assert blob.value.startswith("binary data, 10,240 bytes")
    assert all(len(r.value) <= 260 for _, r in _flat(rows))
    assert tagged.read_bytes() == before  # read-only


def test_filter_by_keyword_tag_and_value(tagged):
    rows = read_tags(tagged)

    def keywords(needle):
        return {r.keyword for _, r in _flat(filter_rows(rows, needle))}

    assert keywords("WindowCenter") == {"WindowCenter"}
    assert keywords("0028,1050") == {"WindowCenter"} == keywords("00281050")
    assert keywords("windowcenter") == {"WindowCenter"}
    # a value deep inside a sequence keeps the path to it, not the siblings
    hit = keywords("nested elbow")
    assert hit == {"ProcedureCodeSequence", "Item 1", "ModifierCodeSequence", "CodeMeaning"}
    # a matching sequence keeps all its items
    assert "CodingSchemeDesignator" in keywords("ProcedureCodeSequence")
    assert filter_rows(rows, "") == rows
    assert filter_rows(rows, "no-such-text-anywhere") == []


def test_unreadable_file_is_a_typed_error(tmp_path):
    with pytest.raises(DicomError, match="gone.dcm"):
        read_tags(tmp_path / "gone.dcm")  # e.g. a CD taken out while the viewer was open


def test_dialog_follows_the_current_image_and_filters(qtbot, win, phantom):
    folder = phantom / "dicom" / "study_0004"
    with qtbot.waitSignal(win.analysis_ready, timeout=WAIT_MS):
        win.open_paths([folder])
    qtbot.waitUntil(lambda: not win.busy, timeout=WAIT_MS)
    qtbot.keyClick(win, Qt.Key.Key_T)
    dlg = win.tag_dialog
    assert dlg is not None and dlg.isVisible()
    qtbot.addWidget(dlg)
    shown = dlg.visible_rows()
    sop = str(pydicom.dcmread(win.current_image.ref.path, stop_before_pixels=True).SOPInstanceUID)
    assert any(kw == "SOPInstanceUID" and val.startswith(sop) for _, kw, _, val in shown)
    qtbot.keyClicks(dlg.search, "InstanceNumber")
    rows = dlg.visible_rows()
    assert [kw for _, kw, _, _ in rows] == ["InstanceNumber"]
    assert rows[0][3] == "1"
    # the dialog follows the image shown
    qtbot.keyClick(win, Qt.Key.Key_Right)
    assert dlg.path_label.text() == win.current_image.ref.path
    assert dlg.visible_rows()[0][3] == "2"
    dlg.close()
