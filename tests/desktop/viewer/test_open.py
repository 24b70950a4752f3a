"""Opening studies: drag and drop onto the window, DICOMDIR, and the thumbnail strip."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.fileset import FileSet
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QApplication

from desktop.screening import render
from desktop.screening.discovery import Discovery, discover
from desktop.viewer.studies import STRIP_THUMB_SIZE, dicomdir_files, discover_paths, is_dicomdir

WAIT_MS = 60_000

# PySide6 marks the QPoint constructor of QDragEnterEvent deprecated but offers no other
pytestmark = pytest.mark.filterwarnings("ignore:Function. 'QDragEnterEvent:DeprecationWarning")


def _files(folder: Path) -> list[Path]:
    return [Path(r.path) for st in discover(folder).studies for r in st.images]


def _make_dicomdir(phantom: Path, out: Path, studies: list[str]) -> Path:
    """A CD-style file set (PT*/ST*/SE*/IM* without extensions) of some phantom studies."""
    fs = FileSet()
    for name in studies:
        for p in _files(phantom / "dicom" / name):
            fs.add(pydicom.dcmread(p, force=True))
    fs.write(out)
    return out / "DICOMDIR"


def _uids(folder: Path) -> set[str]:
    return {st.key for st in discover(folder).studies}


def _mime(*paths: Path) -> QMimeData:
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    return mime


def _enter(win, mime: QMimeData) -> QDragEnterEvent:
    ev = QDragEnterEvent(win.view.mapTo(win, win.view.rect().center()), Qt.DropAction.CopyAction,
                         mime, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(win, ev)
    return ev


def _drop(win, mime: QMimeData) -> QDropEvent:
    """What a file manager's drop does: enter (Qt delivers the drop only if it was accepted),
    then drop, over the image."""
    _enter(win, mime)
    pos = QPointF(win.view.mapTo(win, win.view.rect().center()))
    ev = QDropEvent(pos, Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                    Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(win, ev)
    return ev


def test_dicomdir_opens_its_referenced_images_grouped_by_study(phantom, tmp_path):
    dd = _make_dicomdir(phantom, tmp_path / "cd", ["study_0002", "study_0004"])
    # a DICOM file in the same folder that the DICOMDIR does not list must not be opened
    stray = _files(phantom / "dicom" / "study_0001")[0]
    shutil.copy(stray, tmp_path / "cd" / "STRAY")
    assert is_dicomdir(dd) and not is_dicomdir(stray) and not is_dicomdir(tmp_path)

    res = discover_paths([dd])
    assert isinstance(res, Discovery) and res.root == str(dd)
    want = {uid: len(_files(phantom / "dicom" / name))
            for name in ("study_0002", "study_0004") for uid in _uids(phantom / "dicom" / name)}
    assert {st.key: len(st.images) for st in res.studies} == want
    for st in res.studies:
        assert all("STRAY" not in r.path and r.kind == "dicom" for r in st.images)
    assert res.skipped == []

    # a referenced file that is missing is reported, the rest still opens
    files, missing = dicomdir_files(dd)
    files[0].unlink()
    res = discover_paths([dd])
    assert sum(len(st.images) for st in res.studies) == sum(want.values()) - 1
    assert len(res.skipped) == 1 and "missing" in res.skipped[0][1]
    assert missing == []


def test_several_paths_make_one_discovery_rooted_where_they_meet(phantom):
    """The viewer's discovery is the screener's :class:`Discovery`, whatever was opened."""
    a, b = phantom / "dicom" / "study_0001", phantom / "dicom" / "study_0002"
    res = discover_paths([a, b])
    assert isinstance(res, Discovery) and res.root == str(phantom / "dicom")
    assert {st.key for st in res.studies} == _uids(a) | _uids(b)
    assert res.n_images == len(_files(a)) + len(_files(b))
    assert res.skipped == [] and res.duplicates == []
    assert discover_paths([]).root == ""


def test_unreadable_dicomdir_is_reported(tmp_path, phantom):
    dd = _make_dicomdir(phantom, tmp_path / "cd", ["study_0001"])
    data = dd.read_bytes()
    dd.write_bytes(data[: len(data) // 3])  # cut off: the records are gone
    files, problems = dicomdir_files(dd)
    assert files == [] and problems and "DICOMDIR" in problems[0][1]


def test_drop_opens_files_and_folders(qtbot, win, phantom, tmp_path):
    folder = phantom / "dicom" / "study_0004"
    one = _files(phantom / "dicom" / "study_0002")[0]
    mime = _mime(folder, one)
    assert _enter(win, mime).isAccepted()
    with qtbot.waitSignal(win.discovery_ready, timeout=WAIT_MS) as blocker:
        ev = _drop(win, mime)
    assert ev.isAccepted()
    assert blocker.args == [2]
    keys = {st.key for st in win.studies}
    assert keys == _uids(folder) | _uids(one)
    qtbot.waitUntil(lambda: not win.busy, timeout=WAIT_MS)

    # text without file URLs is refused, and opens nothing
    text = QMimeData()
    text.setText("not a file")
    assert not _enter(win, text).isAccepted()
    assert not _drop(win, text).isAccepted()
    assert {st.key for st in win.studies} == keys


def test_drop_a_dicomdir(qtbot, win, phantom, tmp_path):
    dd = _make_dicomdir(phantom, tmp_path / "cd", ["study_0003", "study_0004"])
    with qtbot.waitSignal(win.analysis_ready, timeout=WAIT_MS):
        _drop(win, _mime(dd))
    qtbot.waitUntil(lambda: not win.busy, timeout=WAIT_MS)
    assert {st.key for st in win.studies} == (_uids(phantom / "dicom" / "study_0003")
                                             | _uids(phantom / "dicom" / "study_0004"))
    assert all("PT0000" in r.path for st in win.studies for r in st.images)


def test_thumbnail_strip_shows_the_study_and_selects_images(qtbot, win, phantom):
    folder = phantom / "dicom" / "study_0004"
    with qtbot.waitSignal(win.analysis_ready, timeout=WAIT_MS):
        win.open_paths([folder])
    qtbot.waitUntil(lambda: not win.busy, timeout=WAIT_MS)
    out = win.current_outcome
    strip = win.thumb_strip
    assert strip.isVisible() and strip.count() == len(out.images) == 3
    assert strip.currentRow() == 0
    for v in out.images:
        assert v.thumb is not None and v.thumb.dtype == np.uint8
        assert max(v.thumb.shape) <= STRIP_THUMB_SIZE and v.thumb.std() > 0
        # the thumbnail is the image itself, reduced
        small = render.thumbnail_u8(v.image.pixels, STRIP_THUMB_SIZE)
        np.testing.assert_array_equal(v.thumb, small)
    assert not strip.item(1).icon().isNull()

    # clicking a thumbnail shows that image
    rect = strip.visualItemRect(strip.item(2))
    qtbot.mouseClick(strip.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert win.current_index == 2
    np.testing.assert_array_equal(win.current_rgb, render.render_rgb(out.images[2].image.pixels))
    # the arrow keys move the strip's selection along
    qtbot.keyClick(win, Qt.Key.Key_Left)
    assert win.current_index == 1 and strip.currentRow() == 1


def test_thumbnail_is_a_block_mean():
    a = np.arange(16, dtype=np.float32).reshape(4, 4) / 15.0
    t = render.thumbnail_u8(a, 2)
    want = render.to_uint8(a.reshape(2, 2, 2, 2).mean(axis=(1, 3)))
    np.testing.assert_array_equal(t, want)
    assert render.thumbnail_u8(a, 8).shape == (4, 4)  # never enlarged
