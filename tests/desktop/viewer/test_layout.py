"""In a small window the verdict badge wraps and nothing in the result panel is cut off."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QRect, Qt
from PySide6.QtWidgets import QLabel

from desktop.screening import render

WAIT_MS = 60_000
TEXTS = [render.verdict_text(v, w) for v in ("likely", "suspicious", "negative")
         for w in ("abnormality", "fracture")] + ["No result: no image could be decoded"]


@pytest.mark.parametrize("size", [(640, 400), (900, 560), (1360, 860)])
def test_verdict_badge_text_fits(qtbot, win, phantom, size):
    win.resize(*size)
    with qtbot.waitSignal(win.analysis_ready, timeout=WAIT_MS):
        win.open_paths([phantom / "dicom" / "study_0003"])
    qtbot.waitUntil(lambda: not win.busy, timeout=WAIT_MS)
    lab = win.verdict_label
    flags = int(Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap)
    for text in TEXTS:
        lab.setText(text)
        qtbot.wait(30)  # let the layout settle
        cr = lab.contentsRect()
        fm = lab.fontMetrics()  # the badge's own (style-sheet) font
        need = fm.boundingRect(QRect(0, 0, cr.width(), 10_000), flags, text)
        assert need.width() <= cr.width() and need.height() <= cr.height(), (text, size)
        assert max(fm.horizontalAdvance(word) for word in text.split()) <= cr.width()
        if fm.horizontalAdvance(text) > cr.width():
            assert cr.height() >= 2 * fm.lineSpacing() - 2  # it wrapped rather than cut
    # nothing else in the result panel is squeezed below what its text needs
    for w in win.result_panel.findChildren(QLabel):
        if not w.isVisible():
            continue
        need = w.heightForWidth(w.width()) if w.wordWrap() else w.sizeHint().height()
        assert w.height() >= need - 1, (w.objectName() or w.text(), w.height(), need, size)
