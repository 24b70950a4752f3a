"""Where the viewer's files come from and go to: the file dialogs, files dropped on the
window, and the report of the shown study (PDF or PNG).

The DICOM Secondary Captures and Structured Report are written by the worker
(:func:`desktop.viewer.studies.export_dicom_job`); the report is small and written at once.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QMimeData
from PySide6.QtGui import QDropEvent
from PySide6.QtWidgets import QFileDialog, QWidget

from desktop.viewer.export_report import (
    report_content,
    report_file_name,
    write_report_pdf,
    write_report_png,
)
from desktop.viewer.studies import StudyOutcome
from models.engine import Engine
from models.errors import ConfigError


def ask_folder(parent: QWidget) -> str:
    """A folder of studies to open; "" when the reader cancels."""
    return QFileDialog.getExistingDirectory(parent, "Open a folder of studies")


def ask_files(parent: QWidget) -> list[str]:
    """Files to open, including a DICOMDIR (which opens the images it lists)."""
    files, _ = QFileDialog.getOpenFileNames(
        parent, "Open image files or a DICOMDIR", "",
        "DICOM, DICOMDIR and images (*.dcm *.DCM DICOMDIR *.png *.jpg *.jpeg *);;All files (*)")
    return files


def ask_screen_folders(parent: QWidget) -> tuple[str, str] | None:
    """The folder to screen and the output folder; None when the reader cancels either."""
    src = QFileDialog.getExistingDirectory(parent, "Screen which folder of studies?")
    if not src:
        return None
    out = QFileDialog.getExistingDirectory(
        parent, "Output folder (worklist.csv, failures.csv, report.html, screen.sqlite)")
    return (src, out) if out else None


def dropped_paths(mime: QMimeData | None) -> list[str]:
    """The local files and folders of a drag (none: the drag is not for the viewer)."""
    if mime is None or not mime.hasUrls():
        return []
    return [u.toLocalFile() for u in mime.urls() if u.isLocalFile() and u.toLocalFile()]


def accept_drop(event: QDropEvent) -> list[str]:
    """Accept a drag or drop of local paths (returning them), ignore any other."""
    paths = dropped_paths(event.mimeData())
    if paths:
        event.acceptProposedAction()
    else:
        event.ignore()
    return paths


def ask_report_path(parent: QWidget, fmt: str, study=None) -> str:
    """Where to write ``study``'s report as ``fmt`` ("pdf" or "png"); "" when the reader cancels.
    The proposed name comes from the study (:func:`desktop.viewer.export_report.report_file_name`)."""
    filt = "PDF (*.pdf)" if fmt == "pdf" else "PNG image (*.png)"
    name = report_file_name(study, fmt) if study is not None else f"mura-report.{fmt}"
    path, _ = QFileDialog.getSaveFileName(parent, "Export study report", name, filt)
    return path


def ask_dicom_folder(parent: QWidget) -> str:
    """The folder for the DICOM export; "" when the reader cancels."""
    return QFileDialog.getExistingDirectory(parent, "Folder for the DICOM Secondary Captures "
                                                    "and Structured Report")


def write_study_report(outcome: StudyOutcome | None, engine: Engine | None, path: str | Path,
                       *, decoding: bool) -> Path:
    """Write ``outcome``'s report as PDF or PNG (by suffix); returns the path written.

    Refuses (:class:`~models.errors.ConfigError`) no study, a study still being decoded (its
    report would miss images), another suffix, and a destination that is one of the study's
    source files: exporting must never alter an original.
    """
    if outcome is None:
        raise ConfigError("export: no study is shown")
    if decoding:
        raise ConfigError(f"export: {outcome.study.key} is still being opened; export it once "
                          "its images are decoded")
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".pdf", ".png"):
        raise ConfigError(f"{path}: a report is written as .pdf or .png")
    target = path.resolve()
    for v in outcome.images:
        if Path(v.ref.path).resolve() == target:
            raise ConfigError(f"{path}: is a source image of the study; choose another file")
    card = engine.bundle.card if engine is not None else {}
    model_id = engine.bundle.model_id if engine is not None else "no model"
    content = report_content(outcome, card, model_id)
    return (write_report_pdf if suffix == ".pdf" else write_report_png)(content, path)
