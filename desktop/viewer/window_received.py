"""The window's File → Received from the DICOM node…: finds the node (the location chosen
before, ``$MURA_NODE_CONFIG`` or the Linux package's ``/etc/mura-fracture/node.toml``; else it
asks for the node's configuration file), remembers it in the viewer's settings, and shows the
node's received studies (:mod:`desktop.viewer.received_dialog`); a study opened there is opened
in the window like a folder.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from PySide6.QtWidgets import QFileDialog, QMainWindow

from desktop.node.received import default_node_location, node_data_dir
from desktop.viewer.received_dialog import ReceivedDialog
from desktop.viewer.settings import ViewerSettings
from desktop.viewer.window_ui import ViewerUi
from models.errors import MuraError


def ask_node_location(parent: QMainWindow) -> str:
    """The node's configuration file, as the reader picks it ("" if cancelled)."""
    path, _ = QFileDialog.getOpenFileName(
        parent, "Which mura-node? Its configuration file (node.toml)", "",
        "mura-node configuration (*.toml);;All files (*)")
    return path


class WindowReceived:
    """One Received dialog per window (``dialog``, once shown). ``settings()`` gives the
    viewer's settings as applied, where the node's location is kept; ``open_paths`` opens a
    study's folder in the window."""

    def __init__(self, window: QMainWindow, ui: ViewerUi, settings: Callable[[], ViewerSettings],
                 open_paths: Callable[[Sequence[str]], None], word: Callable[[], str]) -> None:
        self._window = window
        self._settings = settings
        self._open_paths = open_paths
        self._word = word
        self.dialog: ReceivedDialog | None = None
        self.error = ""
        ui.received_action.triggered.connect(lambda: self.show())

    def show(self, location: str | Path | None = None, *,
             ask: bool = True) -> ReceivedDialog | None:
        """Show the received studies of the node at ``location`` (default: the one chosen before,
        else the system's; else the reader is asked when ``ask``). None, with the reason in the
        status bar and ``error``, when there is no node or it cannot be read."""
        settings = self._settings()
        found = location or settings.node_location or default_node_location()
        if not found and ask:
            found = ask_node_location(self._window)
        if not found:
            return self._fail("No mura-node chosen: open its configuration file (node.toml).")
        try:
            data_dir = node_data_dir(found)
        except MuraError as e:
            return self._fail(f"Cannot show the received studies: {e}")
        if str(found) != settings.node_location:
            settings.save_node_location(str(found))
        if self.dialog is not None and self.dialog.data_dir == data_dir:
            self.dialog.refresh()
        else:
            if self.dialog is not None:
                self.dialog.close()
            self.dialog = ReceivedDialog(self._window, data_dir, self._word())
            self.dialog.open_folder.connect(self._open_folder)
        self.error = ""
        self.dialog.show()
        self.dialog.raise_()
        return self.dialog

    def _open_folder(self, folder: str) -> None:
        self._open_paths([folder])
        self._window.raise_()

    def _fail(self, message: str) -> None:
        self.error = message
        self._window.statusBar().showMessage(message)
        return None
