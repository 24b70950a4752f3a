"""The viewer's main window: study list | image | model result.

The window decides what the reader sees and when; the rest lives in modules with one reason to
change each: the widgets, their layout and the menus in :mod:`desktop.viewer.window_ui`; what the
panels and the status bar say in :mod:`desktop.viewer.panels`; opening, decoding and scoring studies
and loading the model on the workers in :mod:`desktop.viewer.study_loader`; window/level, turn,
invert and the rendering of the shown image in :mod:`desktop.viewer.image_display`; file dialogs,
drops and the report export in :mod:`desktop.viewer.window_files`; screening a folder from the window
in :mod:`desktop.viewer.window_screening`. Pixels and words come from
:mod:`desktop.screening.render`. Patient names and IDs are shown in the image overlay only; nothing here
logs or prints them.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path

from PySide6.QtCore import QTimer, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QMainWindow, QWidget

from desktop.screening.discovery import Discovery
from desktop.screening.render import Orientation, plural, task_word
from desktop.screening.support import project_version
from desktop.viewer import panels, window_files
from desktop.viewer.dialogs import HtmlDialog, ModelCardDialog, SettingsDialog, TagBrowserDialog
from desktop.viewer.help_text import about_html, shortcuts_html
from desktop.viewer.image_display import ImageDisplay
from desktop.viewer.screen_dialog import ScreenController
from desktop.viewer.settings import ViewerSettings
from desktop.viewer.studies import (
    PREVIEW_SIDE,
    DicomExport,
    StudyOutcome,
    ViewImage,
    export_dicom_job,
)
from desktop.viewer.study_loader import StudyLoader
from desktop.viewer.tasks import Task
from desktop.viewer.window_screening import WindowScreening
from desktop.viewer.window_ui import ViewerUi
from models.engine import Engine
from models.errors import MuraError
from models.reference import samples_dir

#: Longest wait, at start-up, before the model load starts even if no image is shown yet.
MODEL_DEFER_MAX_MS = 3000


def _forwarded(helper: str, name: str, doc: str) -> property:
    """``window.<attribute>`` read and set as ``window.<helper>.<name>``: state that moved into
    a helper keeps the name the window's users (tests, scripts) have always used."""
    return property(lambda self: getattr(getattr(self, helper), name),
                    lambda self, value: setattr(getattr(self, helper), name, value), doc=doc)


class ViewerWindow(QMainWindow):
    """Study list | image | model result. Decoding and inference run on a worker thread.

    A study is shown as it is decoded: ``first_image_shown(key)`` is emitted when its first
    image is on screen (usually long before the scores), ``analysis_ready(key)`` once its outcome
    is on screen with the model's scores (or with none to wait for: no model, or the model
    failed), and ``idle`` once no task is pending: ``--screenshot`` and the tests wait on them
    rather than on timers. The model can load in the background (:meth:`load_model`): studies
    opened meanwhile are decoded and shown, and scored once it is ready.
    """

    discovery_ready = Signal(int)
    first_image_shown = Signal(str)
    analysis_ready = Signal(str)
    idle = Signal()

    engine_changed = Signal()  # a model load finished (engine or model_error is set)
    dicom_exported = Signal(object)  # a DicomExport, or None when the export failed

    # -- the helpers' state, under the names the window has always had ---------------------
    engine = _forwarded("loader", "engine", "The model in use (None: none, or still loading).")
    model_error = _forwarded("loader", "model_error", 'Why the last model load failed, or "".')
    studies = _forwarded("loader", "studies", "The studies found under the opened paths.")
    outcomes = _forwarded("loader", "outcomes",
                          "Analysed studies, least recently shown first (a bounded cache).")
    summaries = _forwarded("loader", "summaries", "Each analysed study's prediction.")
    current_key = _forwarded("loader", "current_key", "The study shown (None: none).")
    current_window = _forwarded("display", "window",
                                "The shown image's window (center, width); None: the file's VOI.")
    orientation = _forwarded("display", "orientation", "The reader's turn and flip.")
    current_rgb = _forwarded("display", "rgb", "The picture as shown (oriented), or None.")
    screen_controller = _forwarded("screening", "controller", "The latest screening, or None.")

    def __init__(self, engine: Engine | None = None, *, model_error: str = "",
                 settings: ViewerSettings | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.loader = StudyLoader(engine, model_error, self)
        self.settings = settings if settings is not None else ViewerSettings.load()
        if engine is not None:  # what is in use (e.g. from --model) is what Settings shows
            self.settings = dataclasses.replace(self.settings, device=engine.device,
                                                model_path=str(engine.bundle.root))
        self.word = task_word(engine.bundle.card) if engine is not None else "abnormality"
        self.current_index = 0
        self._first_pending: str | None = None  # study whose first image is awaited on screen
        #: a study's first image is shown from a quick reduced decode first (None: never)
        self.preview_side: int | None = PREVIEW_SIDE
        self._card_dialog: ModelCardDialog | None = None
        self.settings_dialog: SettingsDialog | None = None
        self.tag_dialog: TagBrowserDialog | None = None
        self._pending_key: str | None = None  # study to show once the opened folder is discovered
        self.setWindowTitle("MURA viewer — research use only")
        self.setAcceptDrops(True)
        self.resize(1360, 860)
        self.ui = ui = ViewerUi(self, self.word)
        # The widgets the window's users read (tests, the screenshot mode) keep their names on
        # the window; the rest are in ``self.ui``.
        self.disclaimer, self.study_list, self.view = ui.disclaimer, ui.study_list, ui.view
        self.thumb_strip, self.series_bar = ui.thumb_strip, ui.series_bar
        self.image_counter, self.result_panel = ui.image_counter, ui.result_panel
        self.verdict_label, self.study_prob_label = ui.verdict_label, ui.study_prob_label
        self.image_prob_label, self.body_part_label = ui.image_prob_label, ui.body_part_label
        self.images_label, self.operating_label = ui.images_label, ui.operating_label
        self.errors_label, self.model_label = ui.errors_label, ui.model_label
        self.heatmap_check, self.opacity_slider = ui.heatmap_check, ui.opacity_slider
        self.invert_check, self.preset_combo = ui.invert_check, ui.preset_combo
        self.card_button, self.heatmap_action = ui.card_button, ui.heatmap_action
        self.screen_action, self.weak_banner = ui.screen_action, ui.weak_banner
        self.display = ImageDisplay(ui, self.word)
        self.screening = WindowScreening(self, self.loader, self.open_study)
        self._connect_ui()
        self._connect_loader()
        self._show_model_state()
        ui.offer_samples(samples_dir() is not None)

    def _connect_ui(self) -> None:
        """What each widget and action does."""
        ui = self.ui
        ui.study_list.currentRowChanged.connect(self._on_study_row)
        ui.view.window_dragged.connect(self.display.drag_window)
        ui.view.zoom_changed.connect(lambda _z: self.display.update_overlay())
        ui.thumb_strip.currentRowChanged.connect(self._on_thumb_row)
        ui.prev_button.clicked.connect(self.prev_image)
        ui.next_button.clicked.connect(self.next_image)
        ui.heatmap_check.toggled.connect(self.set_heatmap)
        ui.opacity_slider.valueChanged.connect(lambda _v: self.display.render())
        ui.invert_check.toggled.connect(self.set_invert)
        ui.preset_combo.activated.connect(self.display.choose_preset)
        ui.card_button.clicked.connect(self.show_model_card)
        triggered: list[tuple[QAction, Callable[[], object]]] = [
            (ui.open_action, self.open_folder_dialog),
            (ui.open_files_action, self.open_files_dialog),
            (ui.open_samples_action, self.open_samples),
            (ui.screen_action, self.screen_folder_dialog),
            (ui.export_pdf_action, lambda: self.export_report_dialog("pdf")),
            (ui.export_png_action, lambda: self.export_report_dialog("png")),
            (ui.export_dicom_action, self.export_dicom_dialog),
            (ui.settings_action, self.show_settings),
            (ui.quit_action, self.close),
            (ui.prev_action, self.prev_image),
            (ui.next_action, self.next_image),
            (ui.prev_study_action, lambda: self._step_study(-1)),
            (ui.next_study_action, lambda: self._step_study(1)),
            (ui.rotate_cw_action, lambda: self.rotate(1)),
            (ui.rotate_ccw_action, lambda: self.rotate(-1)),
            (ui.flip_h_action, self.flip_horizontally),
            (ui.flip_v_action, self.flip_vertically),
            (ui.reset_action, self.reset_view),
            (ui.fit_action, ui.view.reset_zoom),
            (ui.zoom_in_action, lambda: ui.view.zoom_by(1.25)),
            (ui.zoom_out_action, lambda: ui.view.zoom_by(0.8)),
            (ui.full_screen_action, self.toggle_full_screen),
            (ui.card_action, self.show_model_card),
            (ui.about_action, self.show_about),
            (ui.shortcuts_action, self.show_shortcuts),
            (ui.tags_action, self.show_tags),
        ]
        for action, slot in triggered:
            action.triggered.connect(slot)
        ui.heatmap_action.toggled.connect(self.set_heatmap)
        ui.invert_action.toggled.connect(self.set_invert)

    def _connect_loader(self) -> None:
        """What the window shows as the loader's work comes in (all on the GUI thread)."""
        ld = self.loader
        ld.task_started.connect(self._on_task_started)
        ld.progress.connect(self._on_progress)
        ld.discovered.connect(self._on_discovered)
        ld.layout_ready.connect(self._on_layout)
        ld.image_decoded.connect(self._on_image_decoded)
        ld.outcome_ready.connect(self._on_outcome)
        ld.engine_loaded.connect(self._set_engine)
        ld.dicom_exported.connect(self._on_dicom_exported)
        ld.failed.connect(self._on_failed)
        ld.idle.connect(self._on_idle)
        self.first_image_shown.connect(lambda _key: self.loader.start_deferred_model())

    @property
    def model_loading(self) -> bool:
        return bool(self.loader.engine_loading)

    @property
    def busy(self) -> bool:
        return self.loader.busy

    def _show_model_state(self) -> None:
        self.word = task_word(self.engine.bundle.card) if self.engine is not None \
            else "abnormality"
        self.display.word = self.word
        panels.show_model_state(self.ui, self.engine, self.word,
                                loading=self.loader.engine_loading, error=self.model_error)
        if self.engine is not None and self.current_outcome is None and self.current_key is None:
            self.verdict_label.setText("No study open")  # not "No model": the model is there

    # -- opening ----------------------------------------------------------------------------
    def open_folder_dialog(self) -> None:
        folder = window_files.ask_folder(self)
        if folder:
            self.open_paths([folder])

    def open_files_dialog(self) -> None:
        """Files, including a DICOMDIR (which opens the images it lists)."""
        files = window_files.ask_files(self)
        if files:
            self.open_paths(files)

    def open_samples(self) -> bool:
        """Open the repository's sample radiographs (File → Open sample radiographs); False
        when this installation has none."""
        folder = samples_dir()
        if folder is None:
            return False
        self.open_paths([folder])
        return True

    def open_paths(self, paths: Sequence[str | Path]) -> None:
        """Find the studies under ``paths`` on the worker; the first one is shown when found.

        Cancels the work on the studies shown so far, but not a model that is loading.
        """
        self.study_list.clear()
        self._clear_result()
        self.view.clear("Looking for images…")
        self.statusBar().showMessage("Looking for images…")
        self.loader.open_paths(paths)

    def screen_folder_dialog(self) -> None:
        folders = window_files.ask_screen_folders(self)
        if folders is not None:
            self.screen_folder(*folders)

    def screen_folder(self, src: str | Path, out: str | Path, *,
                      restart: bool = False) -> ScreenController | None:
        """Screen ``src`` like ``mura-screen SRC --out OUT`` on the worker; results in a table.

        Returns the controller (its ``finished`` signal ends the run); None without a model.
        If ``out`` holds results of another model or folder, the controller offers to restart
        (``restart=True``, like ``--restart``) instead of only failing.
        """
        ctl = self.screening.start(src, out, self.engine, self.word, restart=restart)
        if ctl is not None:
            ctl.restart_requested.connect(lambda: self.screen_folder(src, out, restart=True))
        return ctl

    def open_study(self, key: str, folder: str | Path) -> None:
        """Show study ``key``, opening ``folder`` first unless the study is already listed."""
        if self.loader.study(key) is not None:
            self.select_study(key)
            self.raise_()
            return
        self._pending_key = key
        self.open_paths([folder])

    # -- what the loader reports ------------------------------------------------------------
    def _on_task_started(self, _tag: str) -> None:
        self.ui.progress.show()
        self.ui.progress.setRange(0, 0)

    def _on_progress(self, done: int, total: int, message: str) -> None:
        self.ui.progress.setRange(0, max(total, 1))
        self.ui.progress.setValue(done)
        self.statusBar().showMessage(message)

    def _on_idle(self) -> None:
        self.ui.progress.hide()
        if self.loader.start_deferred_model() is None:  # opening ended without an image
            self.idle.emit()

    def _on_failed(self, kind: str, key: str, message: str) -> None:
        self.statusBar().showMessage(f"Error: {message}")
        if key and key == self.current_key:
            panels.set_errors(self.errors_label, [f"Analysis failed: {message}"])
            self.view.clear(f"Analysis failed:\n{message}")
            self.analysis_ready.emit(key)
        elif kind == "discover":
            self.view.clear(f"Could not open: {message}")
            self.discovery_ready.emit(0)
        elif kind == "dicom":
            self.statusBar().showMessage(f"DICOM export failed: {message}")
            self.dicom_exported.emit(None)

    def _on_dicom_exported(self, res: DicomExport) -> None:
        self.statusBar().showMessage(f"DICOM export: {len(res.paths)} file(s) written to "
                                     f"{res.out_dir}")
        self.dicom_exported.emit(res)

    def _on_discovered(self, res: Discovery) -> None:
        panels.add_study_items(self.study_list, res.studies, self.word)
        msg = panels.discovery_message(res)
        self.statusBar().showMessage(msg)
        self.discovery_ready.emit(len(res.studies))
        if res.studies:
            pending, self._pending_key = self._pending_key, None
            self.study_list.setCurrentRow(
                next((i for i, st in enumerate(res.studies) if st.key == pending), 0))
        else:
            self.view.clear("No images found." + (f"\n{msg}" if res.skipped else ""))

    def _shows_live(self, key: str) -> bool:
        """``key`` is the study on screen and is still being decoded image by image."""
        return key == self.current_key and key not in self.outcomes

    def _on_layout(self, key: str, outcome: StudyOutcome) -> None:
        if self._shows_live(key):
            panels.fill_thumbnails(self.thumb_strip, self.series_bar, outcome,
                                   self.current_index)
            self._show_image(new=True)  # the first image's placeholder, until decoded

    def _on_image_decoded(self, key: str, index: int, view: ViewImage,
                          replaced: ViewImage) -> None:
        if not self._shows_live(key):
            return
        panels.set_thumbnail(self.thumb_strip, index, view)
        if index != self.current_index:
            return
        if replaced.preview and replaced.image is not None and view.image is not None:
            self._show_full_resolution(view)
        else:
            self._show_image(new=True)

    def _show_full_resolution(self, v: ViewImage) -> None:
        """The full decode ``v`` replaces the preview on screen. The reader may have worked on
        the preview meanwhile: window/level, invert and turn stay, and so does the part of the
        picture in view (the zoom scaled by the resolution ratio)."""
        region = self.view.visible_region()
        self.display.refresh_presets(v)
        self._show_image(new=False)
        self.view.show_region(region)

    def _score(self, key: str, done_tag: str = "") -> None:
        if self.loader.score(key, done_tag):
            self.verdict_label.setText("Analysing…")

    def _on_outcome(self, outcome: StudyOutcome, tag: str, was_live: bool) -> None:
        key = outcome.study.key
        awaiting = self.loader.awaits_scores(outcome)
        panels.update_study_item(self.study_list, outcome.study, outcome.prediction, self.word,
                                 pending=awaiting, scope=outcome.scope,
                                 n_failed=sum(1 for v in outcome.images if v.error))
        if key != self.current_key:
            return
        # the reader may be working on this study's picture (shown image by image while it
        # was decoded, or decoded before the model was ready and now scored): keep the view
        # (window, zoom, turn) as it is
        self._show_outcome(outcome, reset_image=False,
                           keep_view=was_live or self.display.rgb is not None)
        self.statusBar().showMessage(panels.decoded_message(
            outcome, model_loading=self.loader.engine_loading if awaiting and self.engine is None
            else ""))
        if awaiting:
            self._score(key, done_tag=tag)
        else:
            self.analysis_ready.emit(key)

    # -- study selection --------------------------------------------------------------------
    def _step_study(self, step: int) -> None:
        n = self.study_list.count()
        if n:
            self.study_list.setCurrentRow(min(max(self.study_list.currentRow() + step, 0), n - 1))

    def _on_study_row(self, row: int) -> None:
        if 0 <= row < len(self.studies):
            self.select_study(self.studies[row].key)

    def select_study(self, key: str) -> None:
        """Show a study: from the cache if analysed, else queue it (cancelling other analyses).

        While it is decoded its images appear one by one; a cached study decoded without the
        model (it was still loading) is scored now, without decoding it again.
        """
        study = self.loader.study(key)
        if study is None:
            return
        self.current_index = 0
        self._first_pending = key
        out = self.loader.select(key)
        if out is not None:
            self._show_outcome(out, reset_image=True)
            if self.loader.awaits_scores(out):
                self._score(key)
            else:
                self.analysis_ready.emit(key)
            return
        self._clear_result()
        self.view.clear("Decoding…")
        self.image_counter.setText(plural(len(study.images), "image"))
        live = self.loader.decode(study, self.preview_side)
        if live is not None:
            panels.fill_thumbnails(self.thumb_strip, self.series_bar, live, self.current_index)
            self._show_image(new=True)

    # -- showing an outcome -----------------------------------------------------------------
    @property
    def current_outcome(self) -> StudyOutcome | None:
        """The shown study: analysed, or still being decoded (then some images are pending)."""
        if not self.current_key:
            return None
        out = self.outcomes.get(self.current_key)
        return out if out is not None else self.loader.live_outcome(self.current_key)

    @property
    def decoding(self) -> bool:
        """The shown study is still being decoded (its outcome is partial, without scores)."""
        key = self.current_key
        return key is not None and key not in self.outcomes \
            and self.loader.live_outcome(key) is not None

    @property
    def current_image(self) -> ViewImage | None:
        out = self.current_outcome
        if out is None or not out.images:
            return None
        return out.images[min(self.current_index, len(out.images) - 1)]

    def _clear_result(self) -> None:
        panels.clear_result(self.ui, "Analysing…" if self.engine else
                            "Model loading…" if self.model_loading else "No model")
        self.display.clear()

    def _show_outcome(self, outcome: StudyOutcome, *, reset_image: bool,
                      keep_view: bool = False) -> None:
        """Result panel, strip and image; ``keep_view`` updates the image's numbers and overlay
        but keeps its window, zoom and orientation (the reader may have changed them while the
        scores were computed)."""
        panels.show_result(self.ui, outcome, self.word, has_engine=self.engine is not None,
                           awaiting=self.loader.awaits_scores(outcome))
        if reset_image:
            self.current_index = 0
        panels.fill_thumbnails(self.thumb_strip, self.series_bar, outcome, self.current_index)
        self._show_image(new=not keep_view)

    def _show_image(self, *, new: bool) -> None:
        """Show ``current_index`` of the current study; ``new`` resets window, zoom and presets."""
        out = self.current_outcome
        v = self.current_image
        if out is None or v is None:
            return
        panels.show_position(self.ui, out, self.current_index)
        if self.tag_dialog is not None and self.tag_dialog.isVisible() \
                and v.ref.kind == "dicom":
            self.tag_dialog.set_path(v.ref.path)
        if self.display.show(v, index=self.current_index, count=len(out.images), new=new,
                             preset=self.settings.wl_preset) \
                and self._first_pending == self.current_key:
            self._first_pending = None
            self.first_image_shown.emit(self.current_key)

    def _on_thumb_row(self, row: int) -> None:
        out = self.current_outcome
        if out is not None and 0 <= row < len(out.images) and row != self.current_index:
            self.current_index = row
            self._show_image(new=True)

    # -- drag and drop ----------------------------------------------------------------------
    def dragEnterEvent(self, event) -> None:  # noqa: N802 - Qt override
        window_files.accept_drop(event)

    def dragMoveEvent(self, event) -> None:  # noqa: N802
        window_files.accept_drop(event)

    def dropEvent(self, event) -> None:  # noqa: N802
        """Files and folders dropped anywhere on the window are opened like command-line paths
        (a DICOMDIR among them opens the images it references)."""
        paths = window_files.accept_drop(event)
        if paths:
            self.open_paths(paths)

    # -- navigation and display settings ----------------------------------------------------
    def next_image(self) -> None:
        out = self.current_outcome
        if out is not None and self.current_index < len(out.images) - 1:
            self.current_index += 1
            self._show_image(new=True)

    def prev_image(self) -> None:
        if self.current_outcome is not None and self.current_index > 0:
            self.current_index -= 1
            self._show_image(new=True)

    def set_heatmap(self, on: bool) -> None:
        """Heatmap overlay on/off (only with a model); the checkbox and ``A`` stay in step."""
        self.display.set_heatmap(bool(on) and self.engine is not None)

    def set_invert(self, on: bool) -> None:
        self.display.set_invert(bool(on))

    def rotate(self, quarter_turns_cw: int) -> None:
        """Turn the shown picture (``R`` clockwise, ``L`` counter-clockwise)."""
        self.set_orientation(self.orientation.rotated(quarter_turns_cw))

    def flip_horizontally(self) -> None:
        self.set_orientation(self.orientation.flipped_horizontally())

    def flip_vertically(self) -> None:
        self.set_orientation(self.orientation.flipped_vertically())

    def set_orientation(self, orientation: Orientation) -> None:
        self.display.set_orientation(orientation)

    def reset_view(self) -> None:
        """Space: the image as first shown - file window, no invert, no turn, fitted."""
        self.display.reset()

    def toggle_full_screen(self) -> None:
        """F11 / F: full screen and back (the window's previous geometry is restored)."""
        if self.isFullScreen():
            self.showNormal()
        else:
            self.showFullScreen()

    def set_window(self, window: tuple[float, float] | None) -> None:
        """Re-window the current image through :meth:`LoadedImage.display` (no re-decoding)."""
        self.display.set_window(window)

    def window_span(self) -> float:
        """The data's full range, in the units of a window: the scale of a window drag."""
        return self.display.window_span()

    def start_window(self) -> tuple[float, float]:
        """The window a drag starts from when the file's own VOI is shown."""
        return self.display.start_window()

    # -- model card, tags -----------------------------------------------------------------------
    def show_model_card(self) -> ModelCardDialog | None:
        """Open the card dialog (non-blocking) and return it."""
        if self.engine is None:
            return None
        if self._card_dialog is None:
            self._card_dialog = ModelCardDialog(self.engine.bundle.card, self)
        self._card_dialog.show()
        self._card_dialog.raise_()
        return self._card_dialog

    def show_about(self) -> HtmlDialog:
        """Help > About: version, the model and how good it is, licences, research use."""
        dlg = HtmlDialog("About mura-viewer", about_html(project_version(),
                                                         self.engine.bundle.card if self.engine else None),
                         self, "aboutDialog", (560, 620))
        dlg.show()
        return dlg

    def show_shortcuts(self) -> HtmlDialog:
        """Help > Keyboard shortcuts (F1): every command that has a key, from the actions themselves."""
        rows = [(a.text(), [s.toString(QKeySequence.SequenceFormat.NativeText) for s in a.shortcuts()])
                for a in self.actions()]
        dlg = HtmlDialog("Keyboard shortcuts", shortcuts_html(rows), self, "shortcutsDialog", (460, 620))
        dlg.show()
        return dlg

    def show_tags(self) -> TagBrowserDialog | None:
        """The tag browser for the current image (DICOM files only); it follows the image."""
        v = self.current_image
        if v is None or v.ref.kind != "dicom":
            self.statusBar().showMessage("DICOM tags: the current image is not a DICOM file.")
            return None
        if self.tag_dialog is None:
            self.tag_dialog = TagBrowserDialog(v.ref.path, self)
        else:
            self.tag_dialog.set_path(v.ref.path)
        self.tag_dialog.show()
        self.tag_dialog.raise_()
        return self.tag_dialog

    # -- export -----------------------------------------------------------------------------
    def export_report_dialog(self, fmt: str) -> None:
        if self.current_outcome is None:
            self.statusBar().showMessage("Export: open and analyse a study first.")
            return
        path = window_files.ask_report_path(self, fmt, self.current_outcome.study)
        if path:
            try:
                self.export_report(path)
            except (OSError, MuraError) as e:
                self.statusBar().showMessage(f"Export failed: {e}")

    def export_report(self, path: str | Path) -> Path:
        """Write the current study's report as PDF or PNG (by suffix); returns the path.

        Refuses a destination that is one of the study's source files: exporting must never
        alter an original (see :func:`~desktop.window_export.write_study_report`).
        """
        written = window_files.write_study_report(self.current_outcome, self.engine, path,
                                     decoding=self.decoding)
        self.statusBar().showMessage(f"Report written: {written}")
        return written

    def export_dicom_dialog(self) -> None:
        if self.current_outcome is None or self.engine is None:
            self.statusBar().showMessage("DICOM export: open a study with a model first.")
            return
        out = window_files.ask_dicom_folder(self)
        if out:
            self.export_dicom(out)

    def export_dicom(self, out_dir: str | Path) -> Task | None:
        """Secondary Capture per image (heatmap and score burned in) and a Structured Report
        referencing the source study, written by the worker; ``dicom_exported`` reports."""
        out = self.current_outcome
        if out is None or self.engine is None or out.prediction is None:
            self.statusBar().showMessage("DICOM export: the study has no model result.")
            return None
        self.statusBar().showMessage("Writing DICOM SC/SR…")
        return self.loader.start("dicom", "", export_dicom_job, out, self.engine.bundle.card,
                                 str(out_dir), self.word)

    # -- settings and the model -------------------------------------------------------------
    def show_settings(self) -> SettingsDialog:
        """The Settings dialog (non-blocking); accepting it applies and saves the settings."""
        dlg = SettingsDialog(self.settings, self)
        dlg.accepted.connect(lambda: self.apply_settings(dlg.settings()))
        dlg.open()
        self.settings_dialog = dlg
        return dlg

    def apply_settings(self, new: ViewerSettings, *, save: bool = True) -> None:
        """Persist ``new``; reload the engine on the worker if the device or bundle changed."""
        old, self.settings = self.settings, new
        if save:
            new.save()
        if new.wl_preset != old.wl_preset:
            self._show_image(new=True)
        cur = str(Path(self.engine.bundle.root).resolve()) if self.engine is not None else ""
        want = str(Path(new.model_path).resolve()) if new.model_path else ""
        same_device = self.engine is None or self.engine.device == new.device
        if cur == want and same_device and not (want and self.model_error):
            return
        if not new.model_path:
            self._set_engine(None, "")
            return
        self.load_model(new.model_path, new.device)

    def load_model(self, path: str | Path, device: str,
                   factory: Callable[..., Engine] | None = None, *,
                   after_first_image: bool = False) -> Task | None:
        """Load a bundle on its own worker thread; the window stays usable meanwhile.

        Studies opened while it loads are decoded and shown, and scored once it is ready
        (``engine_changed`` then). A failure sets ``model_error``, shown as before. A newer
        call supersedes an older one still loading. ``factory`` is passed to
        :func:`~desktop.viewer.studies.load_engine`.

        ``after_first_image`` (start-up with paths to open): the load starts once the first
        image is on screen, or the opening ends without one, or after
        :data:`MODEL_DEFER_MAX_MS` at most; the model shows as loading meanwhile. Returns the
        task, or None when the load waits.
        """
        self.settings = dataclasses.replace(self.settings, device=device,
                                            model_path=str(path))
        task = self.loader.load_model(path, device, factory, defer=after_first_image)
        if task is None:
            QTimer.singleShot(MODEL_DEFER_MAX_MS, self.loader.start_deferred_model)
        loading = self.loader.engine_loading
        self.statusBar().showMessage(f"Loading model {loading}…")
        self._show_model_state()
        self.model_label.setText(f"Loading {loading}…")  # also over an old model
        return task

    def _set_engine(self, engine: Engine | None, error: str) -> None:
        """Swap the engine: results of the old model are dropped and the shown study scored
        again; decoded images are kept (a study is never decoded twice for a model change)."""
        self.loader.set_engine(engine, error)
        if self._card_dialog is not None:
            self._card_dialog.close()
            self._card_dialog = None
        self._show_model_state()
        for st in self.studies:  # scores go; a decode failure stays marked (it is the file's)
            known = self.outcomes.get(st.key)
            panels.update_study_item(self.study_list, st, None, self.word, pending=True,
                                     n_failed=0 if known is None else sum(1 for v in known.images if v.error))
        if error:
            self.statusBar().showMessage(f"Model could not be loaded: {error}")
        elif engine is not None:
            self.statusBar().showMessage(f"Model loaded on {engine.device}")
        self._rescore_current()
        self.engine_changed.emit()

    def _rescore_current(self) -> None:
        """After a model change, bring the shown study up to date without touching the
        reader's view (image, window, zoom, turn): a decoded study is scored (or, with no
        model, shown as unscored); one still being decoded is scored when its decode ends
        (:meth:`_on_outcome`). Nothing is decoded again."""
        key = self.current_key
        if key is None:
            return
        out = self.outcomes.get(key)
        if out is None:
            live = self.loader.live_outcome(key)
            if live is not None:
                panels.show_result(self.ui, live, self.word, has_engine=self.engine is not None,
                                   awaiting=self.loader.awaits_scores(live))
            return
        panels.show_result(self.ui, out, self.word, has_engine=self.engine is not None,
                           awaiting=self.loader.awaits_scores(out))
        if self.loader.awaits_scores(out):
            self._score(key)
        else:
            self.analysis_ready.emit(key)

    # -- screenshot, closing ----------------------------------------------------------------
    def save_screenshot(self, path: str | Path) -> Path:
        """Save the whole window as shown (``window.grab()``) to a PNG."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if not self.grab().save(str(path), "PNG"):
            raise OSError(f"{path}: could not write the screenshot")
        return path

    def shutdown(self, timeout_ms: int = 10000) -> None:
        """Cancel and wait for the workers, so no signal reaches a destroyed window."""
        self.loader.shutdown(timeout_ms)

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt override
        self.shutdown()
        super().closeEvent(event)
