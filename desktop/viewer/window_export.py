"""File → Export from the window: the shown study's report (PDF or PNG, written at once) and its
DICOM Secondary Captures and Structured Report (written by the worker, reported by the loader's
``dicom_exported``).

What is written, and the refusal to overwrite an original, are in
:func:`desktop.viewer.window_files.write_study_report` and
:func:`desktop.viewer.studies.export_dicom_job`; this module is what the menu entries do: ask
where, say in the status bar what happened.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PySide6.QtWidgets import QMainWindow

from desktop.screening.render import task_word
from desktop.viewer import window_files
from desktop.viewer.studies import DicomExport, export_dicom_job
from desktop.viewer.study_loader import StudyLoader
from desktop.viewer.tasks import Task
from desktop.viewer.window_ui import ViewerUi
from models.errors import MuraError


class WindowExport:
    """The export commands of ``window`` for the study the ``loader`` shows; connects the File
    menu's export entries. ``exported`` gets what the DICOM export wrote (a
    :class:`~desktop.viewer.studies.DicomExport`), or None when it failed."""

    def __init__(self, window: QMainWindow, ui: ViewerUi, loader: StudyLoader,
                 exported: Callable[[DicomExport | None], None]) -> None:
        self._window = window
        self._loader = loader
        self._exported = exported
        loader.dicom_exported.connect(self._dicom_written)
        ui.export_pdf_action.triggered.connect(lambda: self.report_dialog("pdf"))
        ui.export_png_action.triggered.connect(lambda: self.report_dialog("png"))
        ui.export_dicom_action.triggered.connect(self.dicom_dialog)

    def _say(self, message: str) -> None:
        self._window.statusBar().showMessage(message)

    def report_dialog(self, fmt: str) -> None:
        """Ask where, then write the report as ``fmt`` ("pdf" or "png"); a failure is said in
        the status bar."""
        outcome = self._loader.shown_outcome()
        if outcome is None:
            self._say("Export: open and analyse a study first.")
            return
        path = window_files.ask_report_path(self._window, fmt, outcome.study)
        if path:
            try:
                self.report(path)
            except (OSError, MuraError) as e:
                self._say(f"Export failed: {e}")

    def report(self, path: str | Path) -> Path:
        """Write the current study's report as PDF or PNG (by suffix); returns the path.

        Refuses a destination that is one of the study's source files: exporting must never
        alter an original (see :func:`~desktop.viewer.window_files.write_study_report`).
        """
        written = window_files.write_study_report(self._loader.shown_outcome(), self._loader.engine,
                                                  path, decoding=self._loader.shown_decoding)
        self._say(f"Report written: {written}")
        return written

    def dicom_dialog(self) -> None:
        if self._loader.shown_outcome() is None or self._loader.engine is None:
            self._say("DICOM export: open a study with a model first.")
            return
        out = window_files.ask_dicom_folder(self._window)
        if out:
            self.dicom(out)

    def dicom(self, out_dir: str | Path) -> Task | None:
        """Secondary Capture per image (heatmap and score burned in) and a Structured Report
        referencing the source study, written by the worker; the loader's ``dicom_exported``
        reports (None returned, and why in the status bar, without a model result)."""
        out, engine = self._loader.shown_outcome(), self._loader.engine
        if out is None or engine is None or out.prediction is None:
            self._say("DICOM export: the study has no model result.")
            return None
        self._say("Writing DICOM SC/SR…")
        return self._loader.start("dicom", "", export_dicom_job, out, engine.bundle.card,
                                  str(out_dir), task_word(engine.bundle.card))

    def _dicom_written(self, res: DicomExport) -> None:
        self._say(f"DICOM export: {len(res.paths)} file(s) written to {res.out_dir}")
        self._exported(res)

    def failed(self, message: str) -> None:
        """The DICOM export failed (the loader's ``failed``, reached through the window)."""
        self._say(f"DICOM export failed: {message}")
        self._exported(None)
