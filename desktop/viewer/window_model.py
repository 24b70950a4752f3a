"""The settings the reader chose (File → Settings…: OpenVINO device, model bundle, default window)
and the model they name, loaded on its own worker while the window stays usable.

What the window shows once a load ends (a new engine, or why there is none) is the window's: the
loader's ``engine_loaded`` reaches it directly. Here is only the asking: applying settings, and
starting a load, possibly held back until the first image is on screen.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QMainWindow

from desktop.viewer.dialogs import SettingsDialog
from desktop.viewer.settings import ViewerSettings
from desktop.viewer.study_loader import StudyLoader
from desktop.viewer.tasks import Task
from desktop.viewer.window_ui import ViewerUi
from models.engine import Engine

#: Longest wait, at start-up, before the model load starts even if no image is shown yet.
MODEL_DEFER_MAX_MS = 3000


class ModelSettings:
    """``settings`` as applied; a model already in use (``--model``) is what they show.
    ``dialog`` is the latest Settings dialog; File → Settings… is connected here.

    The window's reactions are handed in: ``reshow`` shows the current image again from its
    file (the default window changed), ``unload`` drops the model (settings name none), and
    ``show_state`` redraws the model box (a load started).
    """

    def __init__(self, window: QMainWindow, ui: ViewerUi, loader: StudyLoader,
                 settings: ViewerSettings | None, *, reshow: Callable[[], None],
                 unload: Callable[[], None], show_state: Callable[[], None]) -> None:
        self._window = window
        self._ui = ui
        self._loader = loader
        self._reshow, self._unload, self._show_state = reshow, unload, show_state
        self.settings = settings if settings is not None else ViewerSettings.load()
        engine = loader.engine
        if engine is not None:  # what is in use (e.g. from --model) is what Settings shows
            self.settings = dataclasses.replace(self.settings, device=engine.device,
                                                model_path=str(engine.bundle.root))
        self.dialog: SettingsDialog | None = None
        ui.settings_action.triggered.connect(self.show_dialog)

    def show_dialog(self) -> SettingsDialog:
        """The Settings dialog (non-blocking); accepting it applies and saves the settings."""
        dlg = SettingsDialog(self.settings, self._window)
        dlg.accepted.connect(lambda: self.apply(dlg.settings()))
        dlg.open()
        self.dialog = dlg
        return dlg

    def apply(self, new: ViewerSettings, *, save: bool = True) -> None:
        """Persist ``new``; reload the engine on the worker if the device or bundle changed."""
        old, self.settings = self.settings, new
        if save:
            new.save()
        if new.wl_preset != old.wl_preset:
            self._reshow()
        engine = self._loader.engine
        cur = str(Path(engine.bundle.root).resolve()) if engine is not None else ""
        want = str(Path(new.model_path).resolve()) if new.model_path else ""
        same_device = engine is None or engine.device == new.device
        if cur == want and same_device and not (want and self._loader.model_error):
            return
        if not new.model_path:
            self._unload()
            return
        self.load(new.model_path, new.device)

    def load(self, path: str | Path, device: str,
             factory: Callable[..., Engine] | None = None, *,
             after_first_image: bool = False) -> Task | None:
        """Load a bundle on its own worker thread; the window stays usable meanwhile.

        Studies opened while it loads are decoded and shown, and scored once it is ready
        (the window's ``engine_changed`` then). A failure sets ``model_error``, shown as before.
        A newer call supersedes an older one still loading. ``factory`` is passed to
        :func:`~desktop.viewer.studies.load_engine`.

        ``after_first_image`` (start-up with paths to open): the load starts once the first
        image is on screen, or the opening ends without one, or after
        :data:`MODEL_DEFER_MAX_MS` at most; the model shows as loading meanwhile. Returns the
        task, or None when the load waits.
        """
        self.settings = dataclasses.replace(self.settings, device=device,
                                            model_path=str(path))
        task = self._loader.load_model(path, device, factory, defer=after_first_image)
        if task is None:
            QTimer.singleShot(MODEL_DEFER_MAX_MS, self._loader.start_deferred_model)
        loading = self._loader.engine_loading
        self._window.statusBar().showMessage(f"Loading model {loading}…")
        self._show_state()
        self._ui.model_label.setText(f"Loading {loading}…")  # also over an old model
        return task
