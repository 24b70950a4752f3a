"""The viewer's "Screen folder…": the CLI's batch screening, run on the viewer's worker thread.

The work itself is :func:`desktop.screening.outputs.screen_to_folder`, the function ``mura-screen`` calls, so a
folder screened from the GUI gives the same worklist.csv, failures.csv, report.html and resumable
screen.sqlite as the CLI. This module only adds the Qt parts: a progress dialog whose Cancel
reaches the screen's cancel callback, and a table of the ranked studies that opens a study in the
viewer on double-click. It lives apart from :mod:`desktop.viewer.app` to keep that file readable.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QHeaderView,
    QLabel,
    QMessageBox,
    QPlainTextEdit,
    QProgressDialog,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from desktop.screening.decoding import choose_fast_decode
from desktop.screening.discovery import split_key
from desktop.screening.outputs import ScreenRun, screen_to_folder
from desktop.screening.render import format_probability, plural, verdict_text
from desktop.screening.state import DB_NAME, SCHEMA_VERSION, ScreenState, decode_mode, describe_mode
from models.engine import Engine
from models.errors import ConfigError

if TYPE_CHECKING:  # the viewer imports this module: no import cycle at run time
    from desktop.viewer.tasks import Task

COLUMNS = ["Rank", "Verdict", "P({word})", "Patient ID", "Patient name", "Accession", "Date", "Modality",
           "Body part", "Description", "Images", "Failed", "Study"]
MAX_FAILED_LISTED = 50  # the rest are in failures.csv; a huge list would only hide the table


@dataclass
class ScreenConflict:
    """The output folder holds results of another model or source: the screen did not run.

    Returned (not raised) so the dialog can offer "Restart", which discards those results, the
    same choice the CLI offers with ``--restart``.
    """

    message: str


def state_conflict(src: str, out: str, engine: Engine) -> ScreenConflict | None:
    """What :meth:`ScreenState.begin` would refuse, found before any work starts."""
    if not (Path(out) / DB_NAME).is_file():
        return None
    state = ScreenState(out)
    try:
        row = state.run_info()
    finally:
        state.close()
    if row is None:
        return None
    where = Path(out) / DB_NAME
    if row["schema_version"] != SCHEMA_VERSION:
        return ScreenConflict(f"{where} was written by another version of the screener "
                              f"(state schema {row['schema_version']}).")
    if row["model_id"] != engine.bundle.model_id:
        return ScreenConflict(f"{where} holds results of model {row['model_id']}; this run "
                              f"uses {engine.bundle.model_id}.")
    if row["source_root"] != str(Path(src).resolve()):
        return ScreenConflict(f"{where} holds results for another folder "
                              f"({row['source_root']}).")
    want = decode_mode(choose_fast_decode(engine.bundle.card))
    if row["decode"] != want:
        try:
            was = "decoded {} ({})".format(*describe_mode(row["decode"]))
        except ConfigError:
            was = f"decoded {row['decode']!r}"
        return ScreenConflict(f"{where} holds results {was}; the viewer screens with this model's "
                              "default, decoding {} ({}), the decoding its card validated.".format(
                                  *describe_mode(want)))
    return None


def screen_job(src: str, out: str, engine: Engine, restart: bool = False, *,
               progress: Callable[[int, int, str], None] | None = None,
               cancelled: Callable[[], bool] | None = None) -> ScreenRun | ScreenConflict:
    """Worker-side body of a :class:`desktop.viewer.app.Task`: adapts the viewer's progress/cancel
    conventions to :func:`screen_to_folder`'s, so cancelling the task stops between studies.
    Without ``restart``, an output folder of another model/source gives a :class:`ScreenConflict`.
    """
    if not restart:
        conflict = state_conflict(src, out, engine)
        if conflict is not None:
            return conflict

    def report(done: int, total: int, images_done: int, images_total: int,
               images_worked: int | None = None) -> None:
        # counts only: study keys and paths may identify patients
        if progress is not None:
            progress(done, total, f"Screening: study {done}/{total}, "
                                  f"image {images_done}/{images_total}")

    return screen_to_folder(src, engine, out, restart=restart, progress=report, cancel=cancelled,
                            fast_decode=choose_fast_decode(engine.bundle.card))


def viewer_key(screen_key: str, src: str | Path) -> str:
    """The viewer's key for a study of the screen: DICOM keys are the same; folder studies are
    named from the opened folder in the viewer (``folder:NAME/rel``), from ``src`` in the screen.
    """
    prefix, rel = split_key(screen_key)
    if not prefix:
        return screen_key
    return f"{prefix}{Path(src).name}" + ("" if rel == "." else f"/{rel}")


def summary_text(run: ScreenRun) -> str:
    """The counts line under the table: the same numbers the CLI prints."""
    res = run.result
    text = (f"{len(res.results)} studies ({res.n_resumed} resumed from the state), "
            f"{res.n_scored_images} images scored in {res.seconds:.1f}s; "
            f"{len(res.failures)} images failed, {len(res.refusals)} not indicated, "
            f"{len(res.discovery.skipped)} files skipped, {plural(len(res.discovery.duplicates), 'duplicate')}")
    if not res.complete:
        text += " — incomplete (cancelled)"
    return text


class ScreenResultsDialog(QDialog):
    """The ranked worklist of a screening run, most suspicious first, plus its failures.

    ``study_activated(key)`` (the screen's study key) is emitted on double-click; the viewer
    decides how to open it. Sorting by column is off: the rank order is the point of the table.
    """

    study_activated = Signal(str)

    def __init__(self, run: ScreenRun, word: str, src: str, out: str,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.run, self.src, self.out = run, src, out
        self.setWindowTitle("Screening worklist — research use only")
        self.resize(900, 520)
        lay = QVBoxLayout(self)
        self.table = QTableWidget(0, len(COLUMNS), self)
        self.table.setHorizontalHeaderLabels([c.format(word=word) for c in COLUMNS])
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.verticalHeader().setVisible(False)
        self.table.setToolTip("Double-click a study to open it in the viewer")
        listed = [(str(k), r) for k, r in enumerate(run.result.ranked, 1)]
        listed += [("", r) for r in run.result.not_indicated]  # after the worklist, never ranked
        for rank, r in listed:
            row = self.table.rowCount()
            self.table.insertRow(row)
            key = r.study.key
            ids = run.alias.identity(r.study)
            cells = [rank, verdict_text(r.verdict, word), format_probability(r.probability),
                     ids["patient_id"], ids["patient_name"], ids["accession"], ids["study_date"],
                     ids["modality"], r.body_part, ids["description"], str(len(r.study.images)),
                     str(r.n_failed), run.alias(key, "study")]
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setData(Qt.ItemDataRole.UserRole, key)
                if r.scope:
                    item.setToolTip(f"Not indicated: {r.scope}")
                if col == 2:
                    item.setData(Qt.ItemDataRole.UserRole + 1, r.probability)
                if col in (0, 2, 10, 11):
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                self.table.setItem(row, col, item)
        hdr = self.table.horizontalHeader()
        hdr.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        hdr.setStretchLastSection(True)
        self.table.cellDoubleClicked.connect(self._on_double_click)
        lay.addWidget(self.table, 1)
        self.summary = QLabel(summary_text(run), self)
        self.summary.setWordWrap(True)
        lay.addWidget(self.summary)
        self.failed = QPlainTextEdit(self)
        self.failed.setReadOnly(True)
        self.failed.setMaximumHeight(110)
        lines = [f"failed: {self._short(p)}: {why}" for p, why in run.result.failures]
        if len(lines) > MAX_FAILED_LISTED:
            lines = lines[:MAX_FAILED_LISTED] + [f"… and {len(lines) - MAX_FAILED_LISTED} more "
                                                 "(see failures.csv)"]
        self.failed.setPlainText("\n".join(lines) or "No failed files.")
        lay.addWidget(self.failed)
        where = QLabel(f"Outputs in {out}: worklist.csv, failures.csv, report.html, screen.sqlite "
                       "(screening the same folder again resumes)", self)
        where.setWordWrap(True)
        lay.addWidget(where)

    def _short(self, path: str) -> str:
        """A failed file relative to the screened folder: shorter, and the table stays legible."""
        try:
            return str(Path(path).relative_to(self.src))
        except ValueError:
            return path

    def row_key(self, row: int) -> str:
        return str(self.table.item(row, 0).data(Qt.ItemDataRole.UserRole))

    def row_probability(self, row: int) -> float | None:
        return self.table.item(row, 2).data(Qt.ItemDataRole.UserRole + 1)

    def _on_double_click(self, row: int, _col: int) -> None:
        if 0 <= row < self.table.rowCount():
            self.study_activated.emit(self.row_key(row))


class ScreenController(QObject):
    """Drives one screening task: progress dialog, cancel, and the result table when done.

    ``finished(run)`` is emitted last, with the :class:`ScreenRun` or None (cancelled or failed);
    tests and the viewer wait on it instead of polling.
    """

    finished = Signal(object)
    restart_requested = Signal()  # the user chose to discard the folder's results and restart

    def __init__(self, parent: QWidget, src: str, out: str, word: str) -> None:
        super().__init__(parent)
        self.parent_widget = parent
        self.src, self.out, self.word = src, out, word
        self.task: Task | None = None
        self.run: ScreenRun | None = None
        self.conflict: ScreenConflict | None = None
        self.conflict_box: QMessageBox | None = None
        self.error = ""
        self.dialog: ScreenResultsDialog | None = None
        self.progress = QProgressDialog("Screening…", "Cancel", 0, 0, parent)
        self.progress.setWindowTitle("Screen folder")
        self.progress.setWindowModality(Qt.WindowModality.NonModal)  # the viewer stays usable
        self.progress.setMinimumDuration(0)
        self.progress.setAutoClose(False)
        self.progress.setAutoReset(False)
        self.progress.canceled.connect(self.cancel)

    def attach(self, task: Task) -> None:
        """Connect to the task before it starts, so no signal can be missed."""
        self.task = task
        s = task.signals
        s.progress.connect(self._on_progress)
        s.result.connect(self._on_result)
        s.errored.connect(self._on_error)
        s.finished.connect(self._on_finished)
        self.progress.show()

    def cancel(self) -> None:
        """Stop after the current study; the studies already done stay in screen.sqlite."""
        if self.task is not None:
            self.task.cancel()
        self.progress.setLabelText("Cancelling after the current study…")

    @property
    def cancelled(self) -> bool:
        return self.task is not None and self.task.is_cancelled

    def _on_progress(self, _tag: str, done: int, total: int, message: str) -> None:
        if self.cancelled:
            return
        self.progress.setMaximum(max(total, 1))
        self.progress.setValue(done)
        self.progress.setLabelText(message)

    def _on_result(self, _tag: str, run: object) -> None:
        if isinstance(run, ScreenConflict):
            self.conflict = run
        elif isinstance(run, ScreenRun) and not self.cancelled:
            self.run = run

    def _on_error(self, _tag: str, message: str) -> None:
        self.error = message

    def _on_finished(self, _tag: str) -> None:
        self.progress.hide()
        self.progress.deleteLater()
        if self.run is not None:
            self.dialog = ScreenResultsDialog(self.run, self.word, self.src, self.out,
                                              self.parent_widget)
            self.dialog.show()
        elif self.conflict is not None:
            self._offer_restart(self.conflict.message)
        self.finished.emit(self.run)

    def _offer_restart(self, message: str) -> None:
        """Ask (non-modally) whether to discard the folder's results; "Restart" emits
        ``restart_requested``, anything else leaves the folder as it is."""
        box = QMessageBox(QMessageBox.Icon.Warning, "Screen folder",
                          f"{message}\n\nRestart discards those results and screens this folder "
                          "with this model. Or cancel and choose another output folder.",
                          QMessageBox.StandardButton.Cancel, self.parent_widget)
        box.setObjectName("screenRestartBox")
        self.restart_button = box.addButton("Restart (discard previous results)",
                                            QMessageBox.ButtonRole.DestructiveRole)
        box.setDefaultButton(QMessageBox.StandardButton.Cancel)
        box.buttonClicked.connect(
            lambda b: self.restart_requested.emit() if b is self.restart_button else None)
        self.conflict_box = box
        box.open()
