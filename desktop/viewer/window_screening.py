"""Screening a folder from the viewer (File → Screen folder…): what ``mura-screen SRC --out OUT``
does, run on the viewer's worker, with its progress and results in the screening dialogs
(:mod:`desktop.viewer.screen_dialog`); a study picked in the results is opened in the viewer.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PySide6.QtWidgets import QMainWindow

from desktop.screening.render import task_word
from desktop.viewer import window_files
from desktop.viewer.screen_dialog import ScreenController, screen_job, viewer_key
from desktop.viewer.study_loader import StudyLoader
from desktop.viewer.window_ui import ViewerUi
from models.engine import Engine


def screened_message(ctl: ScreenController, run: object) -> str:
    """How a screening ended (``run``: its result, None if it was cancelled)."""
    if ctl.conflict is not None:
        return f"Not screened: {ctl.conflict.message}"
    if ctl.error:
        return f"Screening failed: {ctl.error}"
    if run is None:
        return ("Screening cancelled; finished studies are kept in screen.sqlite and "
                "screening again resumes.")
    return f"Screening done: {len(run.result.results)} studies; outputs in {ctl.out}"


class WindowScreening:
    """One screening at a time from ``window``, on the loader's worker; ``controller`` is the
    latest one. ``open_study(key, folder)`` shows a study picked in the results table. Connects
    File → Screen folder…."""

    def __init__(self, window: QMainWindow, ui: ViewerUi, loader: StudyLoader,
                 open_study: Callable[[str, str], None]) -> None:
        self._window = window
        self._loader = loader
        self._open_study = open_study
        self.controller: ScreenController | None = None
        ui.screen_action.triggered.connect(self.dialog)

    def dialog(self) -> None:
        """Ask for the folder to screen and the output folder, then screen."""
        folders = window_files.ask_screen_folders(self._window)
        if folders is not None:
            self.screen(*folders)

    def screen(self, src: str | Path, out: str | Path, *,
               restart: bool = False) -> ScreenController | None:
        """Screen ``src`` like ``mura-screen SRC --out OUT`` with the model in use; results in
        a table.

        Returns the controller (its ``finished`` signal ends the run); None without a model.
        If ``out`` holds results of another model or folder, the controller offers to restart
        (``restart=True``, like ``--restart``) instead of only failing.
        """
        engine = self._loader.engine
        word = task_word(engine.bundle.card) if engine is not None else "abnormality"
        ctl = self.start(src, out, engine, word, restart=restart)
        if ctl is not None:
            ctl.restart_requested.connect(lambda: self.screen(src, out, restart=True))
        return ctl

    def start(self, src: str | Path, out: str | Path, engine: Engine | None, word: str, *,
              restart: bool = False) -> ScreenController | None:
        """Screen ``src`` into ``out`` with ``engine``; the controller, or None (and why, in
        the status bar) without a model or while another screening runs."""
        status = self._window.statusBar()
        if engine is None:
            status.showMessage("Screening needs a model (start with --model BUNDLE).")
            return None
        running = self.controller is not None and self.controller.task is not None \
            and self._loader.is_running(self.controller.task)
        if running:
            status.showMessage("A screening is already running.")
            return None
        src, out = str(src), str(out)
        ctl = ScreenController(self._window, src, out, word)
        ctl.finished.connect(lambda run: self._finished(ctl, run))
        self.controller = ctl
        status.showMessage("Screening…")
        self._loader.start("screen", "", screen_job, src, out, engine, restart,
                           on_task=ctl.attach)
        return ctl

    def _finished(self, ctl: ScreenController, run: object) -> None:
        self._window.statusBar().showMessage(screened_message(ctl, run))
        if ctl.dialog is not None:
            ctl.dialog.study_activated.connect(
                lambda key: self._open_study(viewer_key(key, ctl.src), ctl.src))
