"""The windows the viewer opens beside itself: the model card, Help → About and Keyboard
shortcuts, and the DICOM tag browser (File → Settings is :mod:`desktop.viewer.window_model`'s).

None of them blocks the window. The model card and the tag browser are kept once opened, so
asking again brings the open one to the front; the tag browser follows the image shown
(:meth:`WindowDialogs.follow`), and the card is closed when its model is no longer in use.
"""

from __future__ import annotations

from PySide6.QtGui import QKeySequence
from PySide6.QtWidgets import QMainWindow

from desktop.screening.support import project_version
from desktop.viewer.dialogs import HtmlDialog, ModelCardDialog, TagBrowserDialog
from desktop.viewer.help_text import about_html, shortcuts_html
from desktop.viewer.studies import ViewImage
from desktop.viewer.study_loader import StudyLoader
from desktop.viewer.window_navigation import Navigation
from desktop.viewer.window_ui import ViewerUi


class WindowDialogs:
    """The dialogs of ``window``, about the model the ``loader`` holds and the image ``nav``
    shows: ``card`` and ``tags`` once opened (None before). Connects the model card button and
    the actions that open them."""

    def __init__(self, window: QMainWindow, ui: ViewerUi, loader: StudyLoader,
                 nav: Navigation) -> None:
        self._window = window
        self._loader = loader
        self._nav = nav
        self.card: ModelCardDialog | None = None
        self.tags: TagBrowserDialog | None = None
        ui.card_button.clicked.connect(self.show_model_card)
        for action, slot in ((ui.card_action, self.show_model_card),
                             (ui.about_action, self.show_about),
                             (ui.shortcuts_action, self.show_shortcuts),
                             (ui.tags_action, self.show_tags)):
            action.triggered.connect(slot)

    def show_model_card(self) -> ModelCardDialog | None:
        """Open the card dialog (non-blocking) and return it (None without a model)."""
        engine = self._loader.engine
        if engine is None:
            return None
        if self.card is None:
            self.card = ModelCardDialog(engine.bundle.card, self._window)
        self.card.show()
        self.card.raise_()
        return self.card

    def close_model_card(self) -> None:
        """The model changed: a card left open would describe the wrong one."""
        if self.card is not None:
            self.card.close()
            self.card = None

    def show_about(self) -> HtmlDialog:
        """Help > About: version, the model and how good it is, licences, research use."""
        engine = self._loader.engine
        dlg = HtmlDialog("About mura-viewer", about_html(project_version(),
                                                         engine.bundle.card if engine else None),
                         self._window, "aboutDialog", (560, 620))
        dlg.show()
        return dlg

    def show_shortcuts(self) -> HtmlDialog:
        """Help > Keyboard shortcuts (F1): every command that has a key, from the actions themselves."""
        rows = [(a.text(), [s.toString(QKeySequence.SequenceFormat.NativeText) for s in a.shortcuts()])
                for a in self._window.actions()]
        dlg = HtmlDialog("Keyboard shortcuts", shortcuts_html(rows), self._window, "shortcutsDialog",
                         (460, 620))
        dlg.show()
        return dlg

    def show_tags(self) -> TagBrowserDialog | None:
        """The tag browser for the current image (DICOM files only; else the status bar says
        why); it follows the image."""
        v = self._nav.image
        if v is None or v.ref.kind != "dicom":
            self._window.statusBar().showMessage("DICOM tags: the current image is not a DICOM file.")
            return None
        if self.tags is None:
            self.tags = TagBrowserDialog(v.ref.path, self._window)
        else:
            self.tags.set_path(v.ref.path)
        self.tags.show()
        self.tags.raise_()
        return self.tags

    def follow(self, v: ViewImage) -> None:
        """``v`` is now on screen: an open tag browser shows its tags (when it is DICOM)."""
        if self.tags is not None and self.tags.isVisible() and v.ref.kind == "dicom":
            self.tags.set_path(v.ref.path)
