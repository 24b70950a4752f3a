"""Moving through what is open: the image of the shown study (←/→, Previous/Next, a click on the
thumbnail strip), the study (PgUp/PgDown), and how much of the window the picture gets (fit, zoom,
full screen).

:class:`Navigation` holds which image of the shown study is on screen and connects the controls
that change it; what showing an image means (panels, overlay, the tag browser following it) is
the window's, handed in as ``show_image``.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtGui import QAction
from PySide6.QtWidgets import QMainWindow

from desktop.viewer.studies import ViewImage
from desktop.viewer.study_loader import StudyLoader
from desktop.viewer.window_ui import ViewerUi


class Navigation:
    """The reader's way through the open studies: ``index`` is the image of the shown study on
    screen (images in display order: series after series, see
    :func:`desktop.viewer.series.study_series`)."""

    def __init__(self, window: QMainWindow, ui: ViewerUi, loader: StudyLoader,
                 show_image: Callable[[], None]) -> None:
        self.index = 0
        self._window = window
        self._ui = ui
        self._loader = loader
        self._show_image = show_image  # shows ``index`` as a new image (window reset, fitted)
        ui.thumb_strip.currentRowChanged.connect(self._on_thumb_row)
        ui.prev_button.clicked.connect(self.prev_image)
        ui.next_button.clicked.connect(self.next_image)
        view = ui.view
        triggered: list[tuple[QAction, Callable[[], object]]] = [
            (ui.prev_action, self.prev_image),
            (ui.next_action, self.next_image),
            (ui.prev_study_action, lambda: self.step_study(-1)),
            (ui.next_study_action, lambda: self.step_study(1)),
            (ui.fit_action, view.reset_zoom),
            (ui.zoom_in_action, lambda: view.zoom_by(1.25)),
            (ui.zoom_out_action, lambda: view.zoom_by(0.8)),
            (ui.full_screen_action, self.toggle_full_screen),
        ]
        for action, slot in triggered:
            action.triggered.connect(slot)

    @property
    def image(self) -> ViewImage | None:
        """The image on screen (None: no study, or a study without images)."""
        out = self._loader.shown_outcome()
        if out is None or not out.images:
            return None
        return out.images[min(self.index, len(out.images) - 1)]

    def next_image(self) -> None:
        out = self._loader.shown_outcome()
        if out is not None and self.index < len(out.images) - 1:
            self.index += 1
            self._show_image()

    def prev_image(self) -> None:
        if self._loader.shown_outcome() is not None and self.index > 0:
            self.index -= 1
            self._show_image()

    def step_study(self, step: int) -> None:
        """The study ``step`` rows down the list (up when negative), stopping at its ends."""
        studies = self._ui.study_list
        n = studies.count()
        if n:
            studies.setCurrentRow(min(max(studies.currentRow() + step, 0), n - 1))

    def toggle_full_screen(self) -> None:
        """F11 / F: full screen and back (the window's previous geometry is restored)."""
        if self._window.isFullScreen():
            self._window.showNormal()
        else:
            self._window.showFullScreen()

    def _on_thumb_row(self, row: int) -> None:
        out = self._loader.shown_outcome()
        if out is not None and 0 <= row < len(out.images) and row != self.index:
            self.index = row
            self._show_image()
