"""The viewer's "Screen folder…" gives the CLI's worklist, opens studies from it, and cancels.

Runs offscreen (tests/conftest.py sets QT_QPA_PLATFORM). The reference worklist comes from
``desktop.screening.cli.main`` run into another folder, so the GUI cannot agree with itself by
construction.
"""

from __future__ import annotations

import csv
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QImage, QPainter
from PySide6.QtWidgets import QPushButton

from desktop.screening import cli as screen_cli
from desktop.viewer.app import ViewerWindow
from desktop.viewer.screen_dialog import ScreenController, ScreenResultsDialog

WAIT_MS = 60_000
OUTPUTS = ("worklist.csv", "failures.csv", "report.html", "screen.sqlite")


def _screen(qtbot, win: ViewerWindow, src: Path, out: Path) -> ScreenController:
    ctl = win.screen_folder(src, out)
    assert ctl is not None
    with qtbot.waitSignal(ctl.finished, timeout=WAIT_MS):
        pass
    qtbot.waitUntil(lambda: not win.busy, timeout=WAIT_MS)
    return ctl


def _cli_worklist(src: Path, bundle: Path, out: Path) -> list[dict]:
    rc = screen_cli.main([str(src), "--model", str(bundle), "--out", str(out), "--no-progress"])
    assert rc in (0, 1)
    with open(out / "worklist.csv", newline="") as f:
        return list(csv.DictReader(f))


def _save_screenshot(win: ViewerWindow, dialog: ScreenResultsDialog, path: str) -> None:
    """The viewer and the results table side by side: they are two top-level windows."""
    a, b = win.grab().toImage(), dialog.grab().toImage()
    img = QImage(a.width() + b.width(), max(a.height(), b.height()), QImage.Format.Format_RGB32)
    img.fill(QColor("white"))
    p = QPainter(img)
    p.drawImage(0, 0, a)
    p.drawImage(a.width(), 0, b)
    p.end()
    assert img.save(path, "PNG")


def test_gui_screen_matches_cli_and_opens_studies(qtbot, win, phantom, tiny_bundle, tmp_path):
    src = phantom / "dicom"
    ctl = _screen(qtbot, win, src, tmp_path / "gui")
    assert ctl.error == ""
    assert ctl.run is not None and ctl.run.result.complete
    for name in OUTPUTS:
        assert (tmp_path / "gui" / name).is_file(), name

    ref = _cli_worklist(src, tiny_bundle, tmp_path / "cli")
    dlg = ctl.dialog
    assert dlg is not None and dlg.isVisible()
    table = dlg.table
    assert table.rowCount() == len(ref) > 0
    for row, want in enumerate(ref):
        assert dlg.row_key(row) == want["study"]
        assert table.item(row, 0).text() == want["rank"]
        p = dlg.row_probability(row)
        assert ("" if p is None else f"{p:.4f}") == want["probability"]
        assert table.item(row, 8).text() == want["body_part"]
        assert table.item(row, 10).text() == want["n_images"]
        assert table.item(row, 11).text() == want["n_failed"]
        assert table.item(row, 3).text() == want["patient_id"] and table.item(row, 5).text() == want["accession"]
        if want["verdict"] not in ("failed", "not_indicated"):
            assert win.word in table.item(row, 1).text()
    # the GUI's own worklist.csv is the CLI's too (the model column included)
    with open(tmp_path / "gui" / "worklist.csv", newline="") as f:
        assert list(csv.DictReader(f)) == ref
    assert f"{len(ref)} studies" in dlg.summary.text()

    # double-click the last row: the folder is opened and that study shown
    row = table.rowCount() - 1
    key = dlg.row_key(row)
    qtbot.waitExposed(dlg)
    table.scrollToBottom()
    rect = table.visualRect(table.model().index(row, 6))
    with qtbot.waitSignal(win.analysis_ready, timeout=WAIT_MS,
                          check_params_cb=lambda k: k == key):
        # QTest's double-click alone does not press first; an item view needs the press
        qtbot.mouseClick(table.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
        qtbot.mouseDClick(table.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert win.current_key == key
    qtbot.waitUntil(lambda: not win.busy, timeout=WAIT_MS)

    # again, now that the folder is open: selected without re-opening
    key0 = dlg.row_key(0)
    n_studies = len(win.studies)
    with qtbot.waitSignal(win.analysis_ready, timeout=WAIT_MS,
                          check_params_cb=lambda k: k == key0):
        table.cellDoubleClicked.emit(0, 1)
    assert win.current_key == key0 and len(win.studies) == n_studies
    qtbot.waitUntil(lambda: not win.busy, timeout=WAIT_MS)
    dlg.move(win.x() + win.width(), win.y())
    _save_screenshot(win, dlg, "/tmp/screen_gui.png")


def test_gui_screen_resumes_from_its_state(qtbot, win, phantom, tmp_path):
    """A second screening into the same folder takes every study from screen.sqlite."""
    src = phantom / "dicom"
    first = _screen(qtbot, win, src, tmp_path / "out")
    second = _screen(qtbot, win, src, tmp_path / "out")
    assert first.run is not None and second.run is not None
    assert second.run.result.n_resumed == len(second.run.result.results) > 0
    assert [r.study.key for r in second.run.result.ranked] == \
        [r.study.key for r in first.run.result.ranked]


def test_gui_screen_cancel(qtbot, win, phantom, tmp_path):
    """Cancel at once: no crash, no (or partial) results, and the viewer still works."""
    src = phantom / "dicom"
    ctl = win.screen_folder(src, tmp_path / "out")
    assert ctl is not None
    with qtbot.waitSignal(ctl.finished, timeout=WAIT_MS):
        button = ctl.progress.findChild(QPushButton)
        qtbot.mouseClick(button, Qt.MouseButton.LeftButton)  # the dialog's Cancel button
    assert ctl.cancelled
    assert ctl.run is None or not ctl.run.result.complete
    assert ctl.error == ""
    qtbot.waitUntil(lambda: not win.busy, timeout=WAIT_MS)
    assert "cancelled" in win.statusBar().currentMessage()
    # responsive: a folder opens and a study is analysed afterwards
    with qtbot.waitSignal(win.analysis_ready, timeout=WAIT_MS):
        win.open_paths([src])
    assert win.current_key is not None


def test_screen_needs_a_model(qtbot):
    w = ViewerWindow(None)
    qtbot.addWidget(w)
    assert not w.screen_action.isEnabled()
    assert w.screen_folder("/nonexistent", "/tmp/nowhere") is None


def test_screen_error_is_reported(qtbot, win, tmp_path):
    ctl = _screen(qtbot, win, tmp_path / "missing", tmp_path / "out")
    assert ctl.run is None and "no such file or folder" in ctl.error
    assert "Screening failed" in win.statusBar().currentMessage()


def test_gui_screen_offers_restart_for_a_folder_of_another_source(qtbot, win, phantom, tmp_path):
    """Results of another folder (or model) in OUT: the GUI asks, and "Restart" re-screens."""
    out = tmp_path / "out"
    first = _screen(qtbot, win, phantom / "dicom" / "study_0001", out)
    assert first.run is not None
    other = phantom / "dicom" / "study_0004"
    ctl = _screen(qtbot, win, other, out)
    assert ctl.run is None and ctl.error == "" and ctl.conflict is not None
    assert "another folder" in ctl.conflict.message
    box = ctl.conflict_box
    assert box is not None and box.isVisible()
    assert "Not screened" in win.statusBar().currentMessage()
    # the first run's results are still there: nothing was discarded without asking
    with open(out / "worklist.csv", newline="") as f:
        assert len(list(csv.DictReader(f))) == len(first.run.result.results)

    with qtbot.waitSignal(ctl.restart_requested, timeout=WAIT_MS):
        qtbot.mouseClick(ctl.restart_button, Qt.MouseButton.LeftButton)
    again = win.screen_controller
    assert again is not ctl
    with qtbot.waitSignal(again.finished, timeout=WAIT_MS):
        pass
    qtbot.waitUntil(lambda: not win.busy, timeout=WAIT_MS)
    assert again.run is not None and again.run.result.complete and again.conflict is None
    assert again.run.result.n_resumed == 0  # restarted, nothing taken from the old state
    ref = _cli_worklist(other, win.engine.bundle.root, tmp_path / "cli")
    with open(out / "worklist.csv", newline="") as f:
        assert list(csv.DictReader(f)) == ref


def test_gui_screen_restart_declined_keeps_the_folder(qtbot, win, phantom, tmp_path):
    out = tmp_path / "out"
    _screen(qtbot, win, phantom / "dicom" / "study_0001", out)
    before = (out / "worklist.csv").read_bytes()
    ctl = _screen(qtbot, win, phantom / "dicom" / "study_0002", out)
    assert ctl.conflict is not None
    ctl.conflict_box.reject()
    qtbot.wait(50)
    assert win.screen_controller is ctl and not win.busy
    assert (out / "worklist.csv").read_bytes() == before


def test_gui_screen_offers_restart_for_a_fast_decoded_folder(qtbot, win, phantom, tmp_path):
    """A folder screened by `mura-screen --fast-decode`: the GUI (exact decoding) asks first
    instead of failing on the state's refusal to mix decodings."""
    src, out = phantom / "dicom" / "study_0001", tmp_path / "out"
    rc = screen_cli.main([str(src), "--model", str(win.engine.bundle.root), "--out", str(out),
                          "--no-progress", "--fast-decode"])
    assert rc in (0, 1)
    before = (out / "worklist.csv").read_bytes()
    ctl = _screen(qtbot, win, src, out)
    assert ctl.run is None and ctl.error == "" and ctl.conflict is not None
    assert "--fast-decode" in ctl.conflict.message
    ctl.conflict_box.reject()
    qtbot.wait(50)
    assert (out / "worklist.csv").read_bytes() == before
