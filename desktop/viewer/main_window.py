"""The viewer's main window: study list | image | model result.

The window decides what the reader sees and when: it reacts to what the workers report (studies
found, a study's layout, each image decoded, the scores, a new model) in the order it arrives. The
rest lives in modules with one reason to change each: the widgets, their layout and the menus in
:mod:`desktop.viewer.window_ui`; what the panels and the status bar say in
:mod:`desktop.viewer.panels`; opening, decoding and scoring studies and loading the model on the
workers in :mod:`desktop.viewer.study_loader`; window/level, turn, invert and the rendering of the
shown image in :mod:`desktop.viewer.image_display`; moving between images and studies, zoom and
full screen in :mod:`desktop.viewer.window_navigation`; the settings and the model they choose in
:mod:`desktop.viewer.window_model`; the model card, About, shortcuts, tags and settings dialogs in
:mod:`desktop.viewer.window_dialogs`; file dialogs and drops in :mod:`desktop.viewer.window_files`;
File → Export in :mod:`desktop.viewer.window_export`; screening a folder from the window in
:mod:`desktop.viewer.window_screening`. Those helpers connect the controls they serve; the rest
are connected here. Pixels and words come from :mod:`desktop.screening.render`. Patient names and
IDs are shown in the image overlay only; nothing here logs or prints them.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QMainWindow, QWidget

from desktop.screening.discovery import Discovery
from desktop.screening.render import plural, task_word
from desktop.viewer import panels, window_files
from desktop.viewer.image_display import ImageDisplay
from desktop.viewer.settings import ViewerSettings
from desktop.viewer.studies import PREVIEW_SIDE, StudyOutcome, ViewImage
from desktop.viewer.study_loader import StudyLoader
from desktop.viewer.window_dialogs import WindowDialogs
from desktop.viewer.window_export import WindowExport
from desktop.viewer.window_model import ModelSettings
from desktop.viewer.window_navigation import Navigation
from desktop.viewer.window_received import WindowReceived
from desktop.viewer.window_screening import WindowScreening
from desktop.viewer.window_ui import ViewerUi
from models.engine import Engine
from models.reference import samples_dir


def _forwarded(helper: str, name: str, doc: str) -> property:
    """``window.<attribute>`` read and set as ``window.<helper>.<name>``: state that moved into
    a helper keeps the name the window's users (tests, scripts) have always used."""
    return property(lambda self: getattr(getattr(self, helper), name),
                    lambda self, value: setattr(getattr(self, helper), name, value), doc=doc)


def _delegated(helper: str, name: str) -> property:
    """``window.<command>(...)`` runs ``window.<helper>.<name>(...)``: a command that moved into
    a helper keeps the name the window's users (tests, scripts, the menus) call it by."""
    return property(lambda self: getattr(getattr(self, helper), name),
                    doc=f"The window's ``{helper}.{name}``.")


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
    current_index = _forwarded("nav", "index", "The image of the shown study on screen.")
    current_window = _forwarded("display", "window",
                                "The shown image's window (center, width); None: the file's VOI.")
    orientation = _forwarded("display", "orientation", "The reader's turn and flip.")
    current_rgb = _forwarded("display", "rgb", "The picture as shown (oriented), or None.")
    screen_controller = _forwarded("screening", "controller", "The latest screening, or None.")
    settings = _forwarded("model_settings", "settings", "The viewer's settings, as applied.")
    tag_dialog = _forwarded("dialogs", "tags", "The DICOM tag browser, once opened.")
    settings_dialog = _forwarded("model_settings", "dialog", "The latest Settings dialog.")

    # -- the helpers' commands, under the window's names ------------------------------------
    next_image = _delegated("nav", "next_image")
    prev_image = _delegated("nav", "prev_image")
    toggle_full_screen = _delegated("nav", "toggle_full_screen")
    set_heatmap = _delegated("display", "set_heatmap")
    set_invert = _delegated("display", "set_invert")
    rotate = _delegated("display", "rotate")
    flip_horizontally = _delegated("display", "flip_horizontally")
    flip_vertically = _delegated("display", "flip_vertically")
    set_orientation = _delegated("display", "set_orientation")
    reset_view = _delegated("display", "reset")  # Space: file window, no invert or turn, fitted
    set_window = _delegated("display", "set_window")
    window_span = _delegated("display", "window_span")
    start_window = _delegated("display", "start_window")
    export_report_dialog = _delegated("exports", "report_dialog")
    export_report = _delegated("exports", "report")
    export_dicom_dialog = _delegated("exports", "dicom_dialog")
    export_dicom = _delegated("exports", "dicom")
    show_settings = _delegated("model_settings", "show_dialog")
    apply_settings = _delegated("model_settings", "apply")
    load_model = _delegated("model_settings", "load")
    show_model_card = _delegated("dialogs", "show_model_card")
    show_about = _delegated("dialogs", "show_about")
    show_shortcuts = _delegated("dialogs", "show_shortcuts")
    show_tags = _delegated("dialogs", "show_tags")
    screen_folder_dialog = _delegated("screening", "dialog")
    screen_folder = _delegated("screening", "screen")
    show_received = _delegated("received", "show")

    def __init__(self, engine: Engine | None = None, *, model_error: str = "",
                 settings: ViewerSettings | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.loader = StudyLoader(engine, model_error, self)
        self.word = task_word(engine.bundle.card) if engine is not None else "abnormality"
        self._first_pending: str | None = None  # study whose first image is awaited on screen
        #: a study's first image is shown from a quick reduced decode first (None: never)
        self.preview_side: int | None = PREVIEW_SIDE
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
        self.model_settings = ModelSettings(
            self, ui, self.loader, settings, reshow=lambda: self._show_image(new=True),
            unload=lambda: self._set_engine(None, ""), show_state=self._show_model_state)
        self.display = ImageDisplay(ui, self.word, lambda: self.engine is not None)
        self.nav = Navigation(self, ui, self.loader, lambda: self._show_image(new=True))
        self.dialogs = WindowDialogs(self, ui, self.loader, self.nav)
        self.exports = WindowExport(self, ui, self.loader, self.dicom_exported.emit)
        self.screening = WindowScreening(self, ui, self.loader, self.open_study)
        self.received = WindowReceived(self, ui, lambda: self.settings, self.open_paths,
                                       lambda: self.word)
        self._connect_ui()
        self._connect_loader()
        self._show_model_state()
        ui.offer_samples(samples_dir() is not None)

    def _connect_ui(self) -> None:
        """What the controls no helper serves do (each helper connects its own)."""
        ui = self.ui
        ui.study_list.currentRowChanged.connect(self._on_study_row)
        ui.open_action.triggered.connect(self.open_folder_dialog)
        ui.open_files_action.triggered.connect(self.open_files_dialog)
        ui.open_samples_action.triggered.connect(self.open_samples)
        ui.quit_action.triggered.connect(self.close)

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
            self.exports.failed(message)

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
        # the study on screen: decoded image by image, or (analysed from the reduced decode a
        # validated model scores) getting its full-resolution images
        if key != self.current_key:
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
        return self.loader.shown_outcome()

    @property
    def decoding(self) -> bool:
        """The shown study is still being decoded (its outcome is partial, without scores)."""
        return self.loader.shown_decoding

    @property
    def current_image(self) -> ViewImage | None:
        return self.nav.image

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
        self.dialogs.follow(v)
        if self.display.show(v, index=self.current_index, count=len(out.images), new=new,
                             preset=self.settings.wl_preset) \
                and self._first_pending == self.current_key:
            self._first_pending = None
            self.first_image_shown.emit(self.current_key)

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

    # -- the model --------------------------------------------------------------------------
    def _set_engine(self, engine: Engine | None, error: str) -> None:
        """Swap the engine: results of the old model are dropped and the shown study scored
        again; decoded images are kept (a study is never decoded twice for a model change)."""
        self.loader.set_engine(engine, error)
        self.dialogs.close_model_card()
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
        shown = out if out is not None else self.loader.live_outcome(key)
        if shown is not None:
            panels.show_result(self.ui, shown, self.word, has_engine=self.engine is not None,
                               awaiting=self.loader.awaits_scores(shown))
        if out is None:
            return
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
