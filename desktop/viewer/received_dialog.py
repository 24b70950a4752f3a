"""File → Received from the DICOM node…: what a ``mura-node`` on this machine received from the
PACS and what became of each study (screened, its verdict, whether its results reached the PACS).

A read-only view of the node's data folder through :func:`desktop.node.received.received_studies`,
which reads only files the node writes atomically: the viewer never locks, writes or talks to the
node, and works whether the node runs or not. The list is read again every few seconds on a
thread of its own (a node kept for months has thousands of studies; the window must not stall),
keeping the reader's selection. Double-clicking a study opens its received images in the viewer;
a study whose images the node already removed (its retention) offers its report instead.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QThreadPool, QTimer, QUrl, Signal
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from desktop.node.layout import spool_dir
from desktop.node.received import ReceivedStudy, received_studies, status_text, when_text
from desktop.screening.render import format_probability, plural, verdict_text
from desktop.viewer.tasks import Task

COLUMNS = ["Received", "Status", "Verdict", "Probability", "Body part", "Images", "Patient ID",
           "Patient name", "Accession", "Study date", "Model"]
REFRESH_MS = 5000


def _read(data_dir: Path, *, progress: object, cancelled: object) -> list[ReceivedStudy]:
    return received_studies(data_dir)


def row_texts(s: ReceivedStudy, word: str) -> list[str]:
    """The table's cells for one study (the identity fields as the node's worklist has them:
    hashed when the node runs with ``anonymize``). The verdict is worded with the task of the
    model that screened the study (``word`` only for nodes that did not record it)."""
    verdict = verdict_text(s.verdict, s.word or word) if s.verdict else ""
    if s.verdict == "not_indicated" and s.not_indicated_reason:
        verdict = f"Not indicated: {s.not_indicated_reason}"
    return [when_text(s.received_at or s.screened_at), status_text(s), verdict,
            format_probability(s.probability) if s.screened_at else "", s.body_part,
            str(s.n_instances), s.identity.get("patient_id", ""),
            s.identity.get("patient_name", ""), s.identity.get("accession", ""), s.identity.get("study_date", ""), s.model]


class ReceivedDialog(QDialog):
    """The node's received studies, newest first. ``open_folder(path)`` is emitted with a study's
    spool folder when the reader opens it; ``refresh()`` reads the list again now."""

    open_folder = Signal(str)
    refreshed = Signal()

    def __init__(self, parent: QWidget | None, data_dir: Path, word: str,
                 refresh_ms: int = REFRESH_MS) -> None:
        super().__init__(parent)
        self.data_dir = Path(data_dir)
        self.word = word
        self.studies: list[ReceivedStudy] = []
        self.setWindowTitle("Received from the DICOM node — research use only")
        self.resize(1100, 420)
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(1)
        self._task: Task | None = None
        self._again = False
        self._build()
        self._timer = QTimer(self)
        self._timer.setInterval(refresh_ms)
        self._timer.timeout.connect(self.refresh)
        self._timer.start()
        self.refresh()

    def _build(self) -> None:
        self.summary = QLabel(f"Node data: {self.data_dir} (read-only view)")
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.cellDoubleClicked.connect(lambda row, _col: self.open_row(row))
        self.table.itemSelectionChanged.connect(self._update_buttons)
        self.message = QLabel("")
        self.message.setWordWrap(True)
        self.open_button = QPushButton("Open images")
        self.open_button.clicked.connect(lambda: self.open_row(self.table.currentRow()))
        self.report_button = QPushButton("Open report")
        self.report_button.clicked.connect(lambda: self.open_report(self.table.currentRow()))
        refresh = QPushButton("Refresh")
        refresh.clicked.connect(self.refresh)
        buttons = QHBoxLayout()
        for b in (self.open_button, self.report_button, refresh):
            buttons.addWidget(b)
        buttons.addStretch(1)
        buttons.addWidget(QLabel("Not for diagnostic use."))
        lay = QVBoxLayout(self)
        lay.addWidget(self.summary)
        lay.addWidget(self.table, 1)
        lay.addWidget(self.message)
        lay.addLayout(buttons)
        self._update_buttons()

    # -- reading the node's folder ------------------------------------------------------------
    def refresh(self) -> None:
        """Read the list again on the dialog's thread (after the read in progress, if any)."""
        if self._task is not None:
            self._again = True
            return
        self._again = False
        task = Task("received", _read, self.data_dir)
        # the dialog's own methods, not lambdas: those would run on the reading thread
        task.signals.result.connect(self._on_result)
        task.signals.errored.connect(self._on_error)
        task.signals.finished.connect(self._finished)
        self._task = task
        self._pool.start(task)

    @property
    def reading(self) -> bool:
        """A read is running or asked for."""
        return self._task is not None or self._again

    def _on_result(self, _tag: str, rows: object) -> None:
        self._show(rows)

    def _on_error(self, _tag: str, message: str) -> None:
        self.message.setText(f"Cannot read the node's folder: {message}")

    def _finished(self, _tag: str) -> None:
        self._task = None
        if self._again:
            self.refresh()
        else:
            self.refreshed.emit()

    def _show(self, rows: object) -> None:
        assert isinstance(rows, list)
        selected = self.selected_key()
        self.studies = rows
        self.table.setRowCount(len(rows))
        for r, s in enumerate(rows):
            for c, text in enumerate(row_texts(s, self.word)):
                self.table.setItem(r, c, QTableWidgetItem(text))
            if s.key == selected:
                self.table.selectRow(r)
        pending = sum(s.results_pending for s in rows)
        self.summary.setText(f"Node data: {self.data_dir} (read-only view): "
                             f"{plural(len(rows), 'study', 'studies')}"
                             + (f", {plural(pending, 'result')} waiting for the PACS" if pending else ""))
        self._update_buttons()

    # -- the reader's actions -------------------------------------------------------------------
    def selected_key(self) -> str | None:
        row = self.table.currentRow()
        return self.studies[row].key if 0 <= row < len(self.studies) else None

    def _images(self, s: ReceivedStudy) -> Path | None:
        folder = spool_dir(self.data_dir) / s.key
        return folder if folder.is_dir() and any(folder.glob("[!.]*.dcm")) else None

    def _update_buttons(self) -> None:
        row = self.table.currentRow()
        s = self.studies[row] if 0 <= row < len(self.studies) else None
        self.open_button.setEnabled(s is not None and self._images(s) is not None)
        self.report_button.setEnabled(s is not None and s.report is not None)

    def open_row(self, row: int) -> bool:
        """Open the study of ``row`` in the viewer; False (and why, in the dialog) if its images
        are gone from the spool."""
        if not 0 <= row < len(self.studies):
            return False
        s = self.studies[row]
        folder = self._images(s)
        if folder is None:
            self.message.setText("Its images are no longer on this machine (the node removes "
                                 "them once the results are sent and its retention time has "
                                 "passed); " + ("its report is kept: Open report." if s.report
                                                else "nothing of it is left to show."))
            return False
        self.message.setText("")
        self.open_folder.emit(str(folder))
        return True

    def open_report(self, row: int) -> bool:
        """Open the study's report.html in the system's browser (a local file: no network)."""
        if not 0 <= row < len(self.studies) or self.studies[row].report is None:
            return False
        return QDesktopServices.openUrl(QUrl.fromLocalFile(str(self.studies[row].report)))

    def done(self, r: int) -> None:
        self._timer.stop()
        super().done(r)

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        self._timer.stop()
        self._pool.waitForDone(5000)
        super().closeEvent(event)
