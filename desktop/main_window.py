"""The viewer's main window: study list | image | model result.

Decoding and inference run on a worker (:mod:`desktop.tasks`) through the Qt-free functions of
:mod:`desktop.studies`; pixels and words come from :mod:`desktop.render`. Patient names and IDs
are shown in the image overlay only; nothing here logs or prints them.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PySide6.QtCore import QSize, Qt, QThreadPool, Signal
from PySide6.QtGui import QAction, QColor, QFont, QIcon, QImage, QKeySequence, QPainter, QPixmap
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QListView,
    QListWidget,
    QListWidgetItem,
    QMainWindow,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QSlider,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from desktop.dialogs import ModelCardDialog, SettingsDialog, TagBrowserDialog
from desktop.discovery import Study
from desktop.export_report import report_content, write_report_pdf, write_report_png
from desktop.image_view import ImageView, SeriesBar, rgb_to_qimage
from desktop.render import (
    DISCLAIMER,
    VERDICT_STYLES,
    Orientation,
    drag_window,
    format_probability,
    operating_points_text,
    render_rgb,
    task_word,
    verdict_text,
)
from desktop.screen_dialog import ScreenController, screen_job, viewer_key
from desktop.settings import ViewerSettings, preset_index
from desktop.studies import (
    PREVIEW_SIDE,
    THUMB_SIZE,
    DecodedImage,
    DicomExport,
    DiscoveryResult,
    StudyOutcome,
    ViewImage,
    analyse_study,
    compute_heatmaps,
    discover_paths,
    export_dicom_job,
    load_engine,
    score_outcome,
    unscored,
)
from desktop.tasks import Task
from models.engine import Engine, StudyPrediction
from models.errors import ConfigError, MuraError

#: How many analysed studies keep their decoded pixels in memory (an LRU); older ones are
#: decoded again when revisited. Radiographs are up to ~3000x3000 float32, twice (pixels and
#: modality values), so a few dozen would already cost gigabytes.
CACHE_STUDIES = 12


def _format_da(da: str) -> str:
    """DICOM DA "YYYYMMDD" as ISO "YYYY-MM-DD" (left alone when it is anything else)."""
    return f"{da[:4]}-{da[4:6]}-{da[6:8]}" if len(da) == 8 and da.isdigit() else da


def _fmt_wl(x: float) -> str:
    """Window values: whole numbers for stored units, 3 decimals for the [0, 1] plain scale."""
    return f"{x:.0f}" if abs(x) >= 100 else f"{x:.3g}"


def _thumb_icon(v: ViewImage) -> QIcon:
    """The image reduced; a plain dark tile while it is being decoded; crossed when it failed."""
    if v.thumb is not None:
        g = np.ascontiguousarray(v.thumb)
        h, w = g.shape
        img = QImage(g.data, w, h, w, QImage.Format.Format_Grayscale8).copy()
        return QIcon(QPixmap.fromImage(img))
    pm = QPixmap(THUMB_SIZE, THUMB_SIZE)
    pm.fill(QColor("#4a4a4a"))
    if v.pending:
        p = QPainter(pm)
        p.setPen(QColor("#a0a0a0"))
        p.drawText(pm.rect(), Qt.AlignmentFlag.AlignCenter, "…")
        p.end()
        return QIcon(pm)
    p = QPainter(pm)
    p.setPen(QColor("#e06060"))
    p.drawLine(8, 8, THUMB_SIZE - 8, THUMB_SIZE - 8)
    p.drawLine(THUMB_SIZE - 8, 8, 8, THUMB_SIZE - 8)
    p.end()
    return QIcon(pm)


def _verdict_icon(verdict: str) -> QIcon:
    pm = QPixmap(12, 12)
    pm.fill(QColor(VERDICT_STYLES.get(verdict, ("#d0d0d0", ""))[0]))  # light gray: not analysed
    return QIcon(pm)


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

    def __init__(self, engine: Engine | None = None, *, model_error: str = "",
                 settings: ViewerSettings | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.engine = engine
        self.settings = settings if settings is not None else ViewerSettings.load()
        if engine is not None:  # what is in use (e.g. from --model) is what Settings shows
            self.settings = dataclasses.replace(self.settings, device=engine.device,
                                                model_path=str(engine.bundle.root))
        self.model_error = model_error
        self.word = task_word(engine.bundle.card) if engine is not None else "abnormality"
        self.studies: list[Study] = []
        self.outcomes: OrderedDict[str, StudyOutcome] = OrderedDict()
        self.summaries: dict[str, StudyPrediction | None] = {}
        self.current_key: str | None = None
        self.current_index = 0
        self.current_window: tuple[float, float] | None = None  # None: the file's own VOI
        self.current_rgb: np.ndarray | None = None  # the picture as shown (oriented)
        self.orientation = Orientation()
        self._display01: np.ndarray | None = None
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(1)  # one engine, one infer request: run tasks in order
        # Compiling a model takes seconds: it gets its own thread, so studies are decoded and
        # shown meanwhile instead of queueing behind it.
        self._engine_pool = QThreadPool(self)
        self._engine_pool.setMaxThreadCount(1)
        self._engine_tag: str | None = None  # the model load in flight (the latest asked for)
        self._engine_loading = ""  # "name on DEVICE" while a model loads, else ""
        self._tasks: dict[str, tuple[Task, str]] = {}  # tag -> (task, study key or "")
        # studies being decoded: key -> (tag of the task, outcome filled in image by image)
        self._live: dict[str, tuple[str, StudyOutcome]] = {}
        self._first_pending: str | None = None  # study whose first image is awaited on screen
        #: a study's first image is shown from a quick reduced decode first (None: never)
        self.preview_side: int | None = PREVIEW_SIDE
        self._tag_counter = itertools.count(1)
        self._card_dialog: ModelCardDialog | None = None
        self.settings_dialog: SettingsDialog | None = None
        self.tag_dialog: TagBrowserDialog | None = None
        self.screen_controller: ScreenController | None = None
        self._pending_key: str | None = None  # study to show once the opened folder is discovered
        self.setWindowTitle("MURA viewer — research use only")
        self.setAcceptDrops(True)
        self.resize(1360, 860)
        self._build_ui()
        self._build_actions()
        self._show_model_state()

    # -- construction -----------------------------------------------------------------------
    def _build_ui(self) -> None:
        root = QWidget(self)
        outer = QVBoxLayout(root)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.setSpacing(0)

        self.disclaimer = QLabel(f"⚠  {DISCLAIMER}. The model output is not a diagnosis.", root)
        self.disclaimer.setObjectName("disclaimerLabel")
        self.disclaimer.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.disclaimer.setStyleSheet(
            "QLabel { background: #fff3cd; color: #5c4400; font-weight: bold; padding: 5px;"
            " border-bottom: 1px solid #e0c060; }")
        outer.addWidget(self.disclaimer)

        split = QSplitter(Qt.Orientation.Horizontal, root)
        outer.addWidget(split, 1)

        # left: studies
        self.study_list = QListWidget(split)
        self.study_list.setObjectName("studyList")
        self.study_list.setMinimumWidth(220)
        self.study_list.setIconSize(QSize(12, 12))
        self.study_list.setWordWrap(True)
        self.study_list.setStyleSheet(
            "QListWidget::item { padding: 6px 4px; border-bottom: 1px solid #e2e2e2; }"
            "QListWidget::item:selected { background: #cfe0f7; color: #000000; }")
        self.study_list.currentRowChanged.connect(self._on_study_row)

        # centre: image and navigation
        centre = QWidget(split)
        cl = QVBoxLayout(centre)
        cl.setContentsMargins(0, 0, 0, 0)
        cl.setSpacing(2)
        self.view = ImageView(centre)
        # drops on the image go to the window, which opens them
        self.view.setAcceptDrops(False)
        self.view.viewport().setAcceptDrops(False)
        self.view.window_dragged.connect(self._on_window_drag)
        self.view.zoom_changed.connect(lambda _z: self._update_overlay())
        cl.addWidget(self.view, 1)
        # the current study's images: click one to show it
        self.thumb_strip = QListWidget(centre)
        self.thumb_strip.setObjectName("thumbnailStrip")
        self.thumb_strip.setViewMode(QListView.ViewMode.IconMode)
        self.thumb_strip.setFlow(QListView.Flow.LeftToRight)
        self.thumb_strip.setWrapping(False)
        self.thumb_strip.setMovement(QListView.Movement.Static)
        self.thumb_strip.setIconSize(QSize(THUMB_SIZE, THUMB_SIZE))
        self.thumb_strip.setSpacing(4)
        self.thumb_strip.setFixedHeight(THUMB_SIZE + 42)
        self.thumb_strip.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        self.thumb_strip.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.thumb_strip.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # arrows stay with the window
        self.thumb_strip.setStyleSheet(
            "QListWidget { background: #1b1b1b; color: #d0d0d0; border: none; }"
            "QListWidget::item:selected { background: #3d5a80; color: #ffffff; }")
        self.thumb_strip.currentRowChanged.connect(self._on_thumb_row)
        self.thumb_strip.hide()
        # the strip's series, as captions right over their thumbnails
        strip_box = QWidget(centre)
        sb_layout = QVBoxLayout(strip_box)
        sb_layout.setContentsMargins(0, 0, 0, 0)
        sb_layout.setSpacing(0)
        self.series_bar = SeriesBar(self.thumb_strip, strip_box)
        self.series_bar.hide()
        sb_layout.addWidget(self.series_bar)
        sb_layout.addWidget(self.thumb_strip)
        cl.addWidget(strip_box)
        nav = QHBoxLayout()
        nav.setContentsMargins(6, 2, 6, 4)
        self.prev_button = QPushButton("◀ Previous", centre)
        self.next_button = QPushButton("Next ▶", centre)
        self.prev_button.clicked.connect(self.prev_image)
        self.next_button.clicked.connect(self.next_image)
        self.image_counter = QLabel("", centre)
        self.image_counter.setObjectName("imageCounter")
        self.image_counter.setAlignment(Qt.AlignmentFlag.AlignCenter)
        for w in (self.prev_button, self.next_button):
            w.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # arrow keys stay with the window
        nav.addWidget(self.prev_button)
        nav.addWidget(self.image_counter, 1)
        nav.addWidget(self.next_button)
        cl.addLayout(nav)

        # right: result, display and model
        # The result column scrolls instead of squeezing: in a short or narrow window a squeezed
        # layout clipped the verdict badge and the numbers under it.
        self.side_scroll = QScrollArea(split)
        self.side_scroll.setObjectName("sidePanel")
        self.side_scroll.setWidgetResizable(True)
        self.side_scroll.setFrameShape(QFrame.Shape.NoFrame)
        self.side_scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.side_scroll.setMinimumWidth(300)
        self.side_scroll.setMaximumWidth(440)
        side = QWidget()
        sl = QVBoxLayout(side)
        sl.setContentsMargins(8, 8, 8, 8)

        self.result_panel = QGroupBox("Model result", side)
        self.result_panel.setObjectName("resultPanel")
        rl = QVBoxLayout(self.result_panel)
        self.verdict_label = QLabel("—", self.result_panel)
        self.verdict_label.setObjectName("verdictLabel")
        self.verdict_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.verdict_label.setWordWrap(True)  # wraps at word boundaries; never cut
        # as tall as its wrapped text needs (height-for-width), never squeezed below it
        self.verdict_label.setSizePolicy(QSizePolicy.Policy.Preferred,
                                         QSizePolicy.Policy.Minimum)
        rl.addWidget(self.verdict_label)
        form = QFormLayout()
        form.setLabelAlignment(Qt.AlignmentFlag.AlignLeft)
        self.study_prob_caption = QLabel(f"Study P({self.word}):", self.result_panel)
        self.study_prob_label = QLabel("—", self.result_panel)
        self.study_prob_label.setObjectName("studyProbability")
        big = QFont(self.font())
        big.setPointSizeF(big.pointSizeF() * 1.6)
        big.setBold(True)
        self.study_prob_label.setFont(big)
        self.study_prob_label.setTextInteractionFlags(
            Qt.TextInteractionFlag.TextSelectableByMouse)
        form.addRow(self.study_prob_caption, self.study_prob_label)
        self.image_prob_caption = QLabel(f"Image P({self.word}):", self.result_panel)
        self.image_prob_label = QLabel("—", self.result_panel)
        self.image_prob_label.setObjectName("imageProbability")
        form.addRow(self.image_prob_caption, self.image_prob_label)
        self.body_part_label = QLabel("—", self.result_panel)
        self.body_part_label.setObjectName("bodyPart")
        self.body_part_label.setWordWrap(True)
        form.addRow("Body part:", self.body_part_label)
        self.images_label = QLabel("—", self.result_panel)
        self.images_label.setObjectName("imagesScored")
        form.addRow("Images scored:", self.images_label)
        self.operating_label = QLabel("—", self.result_panel)
        self.operating_label.setObjectName("operatingPoints")
        self.operating_label.setWordWrap(True)
        form.addRow("Operating points:", self.operating_label)
        rl.addLayout(form)
        self.errors_label = QLabel("", self.result_panel)
        self.errors_label.setObjectName("errorsLabel")
        self.errors_label.setWordWrap(True)
        self.errors_label.setStyleSheet("QLabel { color: #b3261e; }")
        self.errors_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.errors_label.hide()
        rl.addWidget(self.errors_label)
        sl.addWidget(self.result_panel)

        disp = QGroupBox("Display", side)
        dl = QFormLayout(disp)
        self.heatmap_check = QCheckBox("Heatmap overlay (A)", disp)
        self.heatmap_check.setObjectName("heatmapCheck")
        self.heatmap_check.toggled.connect(self.set_heatmap)
        dl.addRow(self.heatmap_check)
        self.opacity_slider = QSlider(Qt.Orientation.Horizontal, disp)
        self.opacity_slider.setRange(10, 90)
        self.opacity_slider.setValue(50)
        self.opacity_slider.valueChanged.connect(lambda _v: self._render())
        dl.addRow("Heatmap opacity:", self.opacity_slider)
        self.invert_check = QCheckBox("Invert (I)", disp)
        self.invert_check.setObjectName("invertCheck")
        self.invert_check.toggled.connect(self.set_invert)
        dl.addRow(self.invert_check)
        self.preset_combo = QComboBox(disp)
        self.preset_combo.setObjectName("windowPresets")
        self.preset_combo.setPlaceholderText("Custom (dragged)")
        self.preset_combo.activated.connect(self._on_preset)
        dl.addRow("Window:", self.preset_combo)
        hint = QLabel("Left-drag: window/level · wheel or +/−: zoom · middle-drag: pan · "
                      "=: fit · R/L: rotate · H/V: flip · Space: reset · F: full screen · "
                      "←/→: images", disp)
        hint.setWordWrap(True)
        hint.setStyleSheet("QLabel { color: #666; }")
        dl.addRow(hint)
        sl.addWidget(disp)

        model = QGroupBox("Model", side)
        ml = QVBoxLayout(model)
        self.model_label = QLabel("", model)
        self.model_label.setObjectName("modelLabel")
        self.model_label.setWordWrap(True)
        ml.addWidget(self.model_label)
        self.card_button = QPushButton("Model card…", model)
        self.card_button.setObjectName("modelCardButton")
        self.card_button.clicked.connect(self.show_model_card)
        ml.addWidget(self.card_button)
        sl.addWidget(model)
        sl.addStretch(1)

        split.addWidget(self.study_list)
        split.addWidget(centre)
        self.side_scroll.setWidget(side)
        split.addWidget(self.side_scroll)
        split.setStretchFactor(0, 0)
        split.setStretchFactor(1, 1)
        split.setStretchFactor(2, 0)
        split.setSizes([250, 760, 340])
        self.setCentralWidget(root)

        sb = self.statusBar()
        self.progress = QProgressBar(sb)
        self.progress.setMaximumWidth(180)
        self.progress.setTextVisible(False)
        self.progress.hide()
        sb.addPermanentWidget(self.progress)
        self.model_status = QLabel("", sb)
        sb.addPermanentWidget(self.model_status)
        sb.showMessage("Ready")

    def _build_actions(self) -> None:
        def action(text: str, slot: Callable, shortcut: str | QKeySequence | None = None,
                   checkable: bool = False) -> QAction:
            a = QAction(text, self)
            if shortcut is not None:
                a.setShortcut(QKeySequence(shortcut))
            a.setCheckable(checkable)
            (a.toggled if checkable else a.triggered).connect(slot)
            self.addAction(a)  # window-wide shortcuts, whichever child has the focus
            return a

        self.open_action = action("&Open folder…", self.open_folder_dialog, QKeySequence.Open)
        self.open_files_action = action("Open &file(s) or DICOMDIR…", self.open_files_dialog,
                                        "Ctrl+Shift+O")
        self.screen_action = action("&Screen folder…", self.screen_folder_dialog)
        self.export_pdf_action = action("Export study report (&PDF)…",
                                        lambda: self.export_report_dialog("pdf"))
        self.export_png_action = action("Export study report (P&NG)…",
                                        lambda: self.export_report_dialog("png"))
        self.export_dicom_action = action("Export &DICOM SC/SR…", self.export_dicom_dialog)
        self.settings_action = action("S&ettings…", self.show_settings, QKeySequence.Preferences)
        self.quit_action = action("&Quit", self.close, QKeySequence.Quit)
        self.prev_action = action("&Previous image", self.prev_image, "Left")
        self.next_action = action("&Next image", self.next_image, "Right")
        self.prev_study_action = action("Previous s&tudy", lambda: self._step_study(-1), "PgUp")
        self.next_study_action = action("Next &study", lambda: self._step_study(1), "PgDown")
        self.heatmap_action = action("&Heatmap overlay", self.set_heatmap, "A", checkable=True)
        self.invert_action = action("&Invert", self.set_invert, "I", checkable=True)
        self.rotate_cw_action = action("Rotate &clockwise", lambda: self.rotate(1), "R")
        self.rotate_ccw_action = action("Rotate c&ounter-clockwise", lambda: self.rotate(-1), "L")
        self.flip_h_action = action("Flip &horizontally", self.flip_horizontally, "H")
        self.flip_v_action = action("Flip &vertically", self.flip_vertically, "V")
        self.reset_action = action("&Reset view", self.reset_view, "Space")
        self.fit_action = action("&Fit to window", self.view.reset_zoom, "=")
        self.zoom_in_action = action("Zoom &in", lambda: self.view.zoom_by(1.25), "+")
        self.zoom_out_action = action("Zoom &out", lambda: self.view.zoom_by(0.8), "-")
        self.full_screen_action = action("F&ull screen", self.toggle_full_screen, "F11")
        # "F" too, as in RadiAnt; a second shortcut on the same action
        self.full_screen_action.setShortcuts([QKeySequence("F11"), QKeySequence("F")])
        self.card_action = action("&Model card…", self.show_model_card)
        self.tags_action = action("DICOM &tags…", self.show_tags, "T")

        mb = self.menuBar()
        m = mb.addMenu("&File")
        m.addAction(self.open_action)
        m.addAction(self.open_files_action)
        m.addAction(self.screen_action)
        m.addSeparator()
        m.addAction(self.export_pdf_action)
        m.addAction(self.export_png_action)
        m.addAction(self.export_dicom_action)
        self.export_menu_anchor = m.addSeparator()
        m.addAction(self.settings_action)
        m.addSeparator()
        m.addAction(self.quit_action)
        m = mb.addMenu("&View")
        for a in (self.prev_action, self.next_action, self.prev_study_action,
                  self.next_study_action):
            m.addAction(a)
        m.addSeparator()
        for a in (self.heatmap_action, self.invert_action, self.tags_action):
            m.addAction(a)
        m.addSeparator()
        for a in (self.rotate_cw_action, self.rotate_ccw_action, self.flip_h_action,
                  self.flip_v_action):
            m.addAction(a)
        m.addSeparator()
        for a in (self.fit_action, self.zoom_in_action, self.zoom_out_action, self.reset_action,
                  self.full_screen_action):
            m.addAction(a)
        m = mb.addMenu("&Help")
        m.addAction(self.card_action)

    def _show_model_state(self) -> None:
        self.word = task_word(self.engine.bundle.card) if self.engine is not None \
            else "abnormality"
        self.study_prob_caption.setText(f"Study P({self.word}):")
        self.image_prob_caption.setText(f"Image P({self.word}):")
        for w in (self.card_button, self.card_action, self.heatmap_check,
                  self.heatmap_action, self.screen_action, self.export_dicom_action):
            w.setEnabled(self.engine is not None)
        self.model_label.setStyleSheet("")
        if self.engine is None and self._engine_loading:
            self.operating_label.setText("—")
            self.model_label.setText(f"Loading {self._engine_loading}…")
            self.model_status.setText("loading model…")
            return
        if self.engine is None:
            self.operating_label.setText("—")
            msg = (f"Model could not be loaded: {self.model_error}" if self.model_error
                   else "No model loaded (choose a bundle in Settings, or start with "
                   "--model BUNDLE): images only.")
            self.model_label.setText(msg)
            self.model_status.setText("no model")
            self.verdict_label.setText("No model")
            self._style_verdict("failed")
            if self.model_error:
                self.model_label.setStyleSheet("QLabel { color: #b3261e; }")
            return
        card = self.engine.bundle.card
        val = card.get("validation", {}).get("verdict", "not_validated")
        self.model_label.setText(
            f"<b>{card['name']}</b> v{card['version']}<br>"
            f"Validation: {val} · {self.engine.device} · {self.engine.artifact}")
        self.model_status.setText(self.engine.bundle.model_id)
        self.operating_label.setText(operating_points_text(self.engine.thresholds))

    # -- opening ----------------------------------------------------------------------------
    def open_folder_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open a folder of studies")
        if folder:
            self.open_paths([folder])

    def open_files_dialog(self) -> None:
        """Files, including a DICOMDIR (which opens the images it lists)."""
        files, _ = QFileDialog.getOpenFileNames(
            self, "Open image files or a DICOMDIR", "",
            "DICOM, DICOMDIR and images (*.dcm *.DCM DICOMDIR *.png *.jpg *.jpeg *);;All files (*)")
        if files:
            self.open_paths(files)

    def open_paths(self, paths: Sequence[str | Path]) -> None:
        """Find the studies under ``paths`` on the worker; the first one is shown when found.

        Cancels the work on the studies shown so far, but not a model that is loading.
        """
        for tag, (task, _key) in list(self._tasks.items()):
            if not tag.startswith("engine:"):
                task.cancel()
        self.study_list.clear()
        self.studies = []
        self.outcomes.clear()
        self.summaries.clear()
        self._live.clear()
        self.current_key = None
        self._clear_result()
        self.view.clear("Looking for images…")
        self.statusBar().showMessage("Looking for images…")
        self._start("discover", "", discover_paths, [str(p) for p in paths])

    def screen_folder_dialog(self) -> None:
        src = QFileDialog.getExistingDirectory(self, "Screen which folder of studies?")
        if not src:
            return
        out = QFileDialog.getExistingDirectory(
            self, "Output folder (worklist.csv, failures.csv, report.html, screen.sqlite)")
        if out:
            self.screen_folder(src, out)

    def screen_folder(self, src: str | Path, out: str | Path, *,
                      restart: bool = False) -> ScreenController | None:
        """Screen ``src`` like ``mura-screen SRC --out OUT`` on the worker; results in a table.

        Returns the controller (its ``finished`` signal ends the run); None without a model.
        If ``out`` holds results of another model or folder, the controller offers to restart
        (``restart=True``, like ``--restart``) instead of only failing.
        """
        if self.engine is None:
            self.statusBar().showMessage("Screening needs a model (start with --model BUNDLE).")
            return None
        if self.screen_controller is not None and self.screen_controller.task is not None \
                and any(t is self.screen_controller.task for t, _k in self._tasks.values()):
            self.statusBar().showMessage("A screening is already running.")
            return None
        src, out = str(src), str(out)
        ctl = ScreenController(self, src, out, self.word)
        ctl.finished.connect(lambda run: self._on_screened(ctl, run))
        ctl.restart_requested.connect(lambda: self.screen_folder(src, out, restart=True))
        self.screen_controller = ctl
        self.statusBar().showMessage("Screening…")
        self._start("screen", "", screen_job, src, out, self.engine, restart, on_task=ctl.attach)
        return ctl

    def _on_screened(self, ctl: ScreenController, run: object) -> None:
        if ctl.conflict is not None:
            self.statusBar().showMessage(f"Not screened: {ctl.conflict.message}")
        elif ctl.error:
            self.statusBar().showMessage(f"Screening failed: {ctl.error}")
        elif run is None:
            self.statusBar().showMessage("Screening cancelled; finished studies are kept in "
                                         "screen.sqlite and screening again resumes.")
        else:
            self.statusBar().showMessage(f"Screening done: {len(run.result.results)} studies; "
                                         f"outputs in {ctl.out}")
        if ctl.dialog is not None:
            ctl.dialog.study_activated.connect(
                lambda key: self.open_study(viewer_key(key, ctl.src), ctl.src))

    def open_study(self, key: str, folder: str | Path) -> None:
        """Show study ``key``, opening ``folder`` first unless the study is already listed."""
        if any(s.key == key for s in self.studies):
            self.select_study(key)
            self.raise_()
            return
        self._pending_key = key
        self.open_paths([folder])

    def _start(self, kind: str, key: str, fn: Callable[..., object], *args: object,
               on_task: Callable[[Task], None] | None = None, partial: bool = False,
               pool: QThreadPool | None = None) -> Task:
        tag = f"{kind}:{next(self._tag_counter)}"
        # a worker waits (briefly) for each partial result to be shown before it goes on
        task = Task(tag, fn, *args, partial=partial, partial_wait_s=2.0 if partial else 0.0)
        s = task.signals
        s.progress.connect(self._on_task_progress)
        s.partial.connect(self._on_task_partial)
        s.result.connect(self._on_task_result)
        s.errored.connect(self._on_task_error)
        s.finished.connect(self._on_task_finished)
        if on_task is not None:
            on_task(task)  # before the pool runs it: no signal can be missed
        self._tasks[tag] = (task, key)
        self.progress.show()
        self.progress.setRange(0, 0)
        (pool or self._pool).start(task)
        return task

    # -- task callbacks (main thread, queued) -----------------------------------------------
    def _on_task_progress(self, tag: str, done: int, total: int, message: str) -> None:
        entry = self._tasks.get(tag)
        if entry is None or entry[0].is_cancelled:
            return
        self.progress.setRange(0, max(total, 1))
        self.progress.setValue(done)
        self.statusBar().showMessage(message)

    def _on_task_result(self, tag: str, res: object) -> None:
        entry = self._tasks.get(tag)
        if entry is None or entry[0].is_cancelled:
            return  # superseded (another folder opened) while the result was queued
        if isinstance(res, Engine):
            if tag == self._engine_tag:
                self._engine_tag = None
                self._set_engine(res, "")
        elif isinstance(res, DicomExport):
            self.statusBar().showMessage(f"DICOM export: {len(res.paths)} file(s) written to "
                                         f"{res.out_dir}")
            self.dicom_exported.emit(res)
        elif isinstance(res, DiscoveryResult):
            self._on_discovered(res)
        elif isinstance(res, StudyOutcome):
            self._on_outcome(res, tag)

    def _on_task_error(self, tag: str, message: str) -> None:
        task, key = self._tasks.get(tag, (None, ""))
        if task is None or task.is_cancelled:
            return
        self.statusBar().showMessage(f"Error: {message}")
        if key and key == self.current_key:
            self._set_errors([f"Analysis failed: {message}"])
            self.view.clear(f"Analysis failed:\n{message}")
            self.analysis_ready.emit(key)
        elif tag.startswith("discover:"):
            self.view.clear(f"Could not open: {message}")
            self.discovery_ready.emit(0)
        elif tag.startswith("engine:"):
            if tag == self._engine_tag:
                self._engine_tag = None
                self._set_engine(None, message)
        elif tag.startswith("dicom:"):
            self.statusBar().showMessage(f"DICOM export failed: {message}")
            self.dicom_exported.emit(None)

    def _on_task_partial(self, tag: str, obj: object) -> None:
        """A study's layout, then each image as soon as the worker has decoded it."""
        task, key = self._tasks.get(tag, (None, ""))
        if task is None:
            return
        try:
            if not task.is_cancelled and key:
                self._show_partial(tag, key, obj)
        finally:
            task.partial_taken()  # on screen: the worker may decode the next image

    def _show_partial(self, tag: str, key: str, obj: object) -> None:
        if isinstance(obj, StudyOutcome):
            self._live[key] = (tag, obj)
            if key == self.current_key and key not in self.outcomes:
                self._fill_thumbnails(obj)
                self._show_image(new=True)  # the first image's placeholder, until decoded
            return
        if not isinstance(obj, DecodedImage):
            return
        live = self._live.get(key)
        if live is None or live[0] != tag:
            return
        outcome = live[1]
        outcome.images[obj.index] = obj.view
        if key == self.current_key and key not in self.outcomes:
            self._set_thumbnail(obj.index, obj.view)
            if obj.index == self.current_index:
                self._show_image(new=True)

    def _on_task_finished(self, tag: str) -> None:
        task, key = self._tasks.pop(tag, (None, ""))
        if key in self._live and self._live[key][0] == tag:
            del self._live[key]  # cancelled midway: the partial study is dropped
        if not self._tasks:
            self.progress.hide()
            self.idle.emit()

    def _on_discovered(self, res: DiscoveryResult) -> None:
        self.studies = res.studies
        for st in res.studies:
            item = QListWidgetItem(self._study_text(st, None))
            item.setData(Qt.ItemDataRole.UserRole, st.key)
            item.setToolTip(st.key)
            item.setIcon(_verdict_icon("pending"))
            self.study_list.addItem(item)
        msg = f"{len(res.studies)} studies, {res.n_images} images"
        if res.skipped:
            first = res.skipped[0]
            msg += (f"; {len(res.skipped)} file(s) skipped (e.g. {Path(first[0]).name}: "
                    f"{first[1]})")
        if res.duplicates:
            msg += f"; {len(res.duplicates)} duplicate(s) ignored"
        self.statusBar().showMessage(msg)
        self.discovery_ready.emit(len(res.studies))
        if res.studies:
            pending, self._pending_key = self._pending_key, None
            self.study_list.setCurrentRow(
                next((i for i, st in enumerate(res.studies) if st.key == pending), 0))
        else:
            self.view.clear("No images found." + (f"\n{msg}" if res.skipped else ""))

    def _awaits_scores(self, outcome: StudyOutcome) -> bool:
        """Decoded but not (or no longer) scored while a model is there or on its way."""
        return (outcome.scored_by is None and (self.engine is not None or bool(
            self._engine_loading)) and any(v.image is not None for v in outcome.images))

    def _score(self, key: str, done_tag: str = "") -> None:
        """Score the cached (decoded) study ``key`` on the worker, unless that is under way
        (``done_tag``: the task whose result is being handled, finished but still listed)."""
        if self.engine is None or key not in self.outcomes:
            return
        if any(tkey == key and not task.is_cancelled and tag != done_tag
               and tag.split(":")[0] in ("study", "score")
               for tag, (task, tkey) in self._tasks.items()):
            return
        self.verdict_label.setText("Analysing…")
        self._start("score", key, score_outcome, self.outcomes[key], self.engine)

    def _on_outcome(self, outcome: StudyOutcome, tag: str = "") -> None:
        key = outcome.study.key
        if outcome.scored_by is not None and outcome.scored_by is not self.engine:
            outcome = unscored(outcome)  # the model changed meanwhile: its scores are stale
        live = self._live.pop(key, None)
        was_live = live is not None and key == self.current_key and key not in self.outcomes
        self.outcomes[key] = outcome
        self.outcomes.move_to_end(key)
        while len(self.outcomes) > CACHE_STUDIES:
            old = next(iter(self.outcomes))
            if old == self.current_key:
                self.outcomes.move_to_end(old)
                continue
            del self.outcomes[old]
        awaiting = self._awaits_scores(outcome)
        self.summaries[key] = outcome.prediction
        self._update_study_item(outcome.study, outcome.prediction, pending=awaiting)
        if outcome.prediction is not None:
            # heatmaps after the scores, in the background; cancelled with the study
            self._start("heat", f"heat:{key}", compute_heatmaps, outcome)
        if key == self.current_key:
            # shown image by image while decoding: keep the view (window, zoom) as it is
            self._show_outcome(outcome, reset_image=False, keep_view=was_live)
            n_fail = len(outcome.failures)
            msg = f"{len(outcome.images) - n_fail} of {len(outcome.images)} images decoded"
            if n_fail:
                first = outcome.failures[0]
                msg += f"; {first.name}: {first.error}"
            if outcome.model_error:
                msg += f"; model error: {outcome.model_error}"
            if awaiting and self.engine is None:
                msg += f"; scores follow when the model is loaded ({self._engine_loading})"
            self.statusBar().showMessage(msg)
            if awaiting:
                self._score(key, done_tag=tag)
            else:
                self.analysis_ready.emit(key)

    # -- study selection --------------------------------------------------------------------
    def _study_text(self, st: Study, pred: StudyPrediction | None) -> str:
        if st.is_dicom:
            title = st.description or "Study"
            folder = Path(st.images[0].path).parent.name if st.images else ""
            where = f"{folder} · " if folder else ""
        else:  # the folder is the study: name it once
            title, where = st.key[len("folder:"):], ""
        lines = [title, f"{where}{len(st.images)} image(s)"
                 + (f" · {st.modality}" if st.modality else "")]
        if pred is not None:
            verdict = verdict_text(pred.verdict, self.word)
            lines.append(f"{verdict} · {format_probability(pred.probability)}")
        return "\n".join(lines)

    def _update_study_item(self, st: Study, pred: StudyPrediction | None, *,
                           pending: bool = False) -> None:
        for row in range(self.study_list.count()):
            item = self.study_list.item(row)
            if item.data(Qt.ItemDataRole.UserRole) == st.key:
                item.setText(self._study_text(st, pred))
                verdict = "pending" if pending else (pred.verdict if pred is not None
                                                     else "failed")
                item.setIcon(_verdict_icon(verdict))

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
        study = next((s for s in self.studies if s.key == key), None)
        if study is None:
            return
        self.current_key = key
        self.current_index = 0
        self._first_pending = key
        for task, tkey in self._tasks.values():
            if tkey and tkey != key:
                task.cancel()
        if key in self.outcomes:
            out = self.outcomes[key]
            self.outcomes.move_to_end(key)
            self._show_outcome(out, reset_image=True)
            if self._awaits_scores(out):
                self._score(key)
            else:
                self.analysis_ready.emit(key)
            return
        running = any(tkey == key and not task.is_cancelled
                      for task, tkey in self._tasks.values())
        self._clear_result()
        self.view.clear("Decoding…")
        self.image_counter.setText(f"{len(study.images)} image(s)")
        live = self._live.get(key)
        if running and live is not None:
            self._fill_thumbnails(live[1])
            self._show_image(new=True)
        if not running:
            self._live.pop(key, None)
            self._start("study", key,
                        functools.partial(analyse_study, preview_side=self.preview_side),
                        study, self.engine, partial=True)

    # -- showing an outcome -----------------------------------------------------------------
    @property
    def current_outcome(self) -> StudyOutcome | None:
        """The shown study: analysed, or still being decoded (then some images are pending)."""
        if not self.current_key:
            return None
        out = self.outcomes.get(self.current_key)
        if out is None and self.current_key in self._live:
            out = self._live[self.current_key][1]
        return out

    @property
    def decoding(self) -> bool:
        """The shown study is still being decoded (its outcome is partial, without scores)."""
        return self.current_key is not None and self.current_key not in self.outcomes \
            and self.current_key in self._live

    @property
    def current_image(self) -> ViewImage | None:
        out = self.current_outcome
        if out is None or not out.images:
            return None
        return out.images[min(self.current_index, len(out.images) - 1)]

    def _clear_result(self) -> None:
        self.verdict_label.setText("Analysing…" if self.engine else
                                   "Model loading…" if self._engine_loading else "No model")
        self._style_verdict("failed")
        for w in (self.study_prob_label, self.image_prob_label, self.body_part_label,
                  self.images_label):
            w.setText("—")
        self._set_errors([])
        self.image_counter.setText("")
        self.thumb_strip.clear()
        self.thumb_strip.hide()
        self.series_bar.set_groups([])
        self.series_bar.hide()
        self.preset_combo.clear()
        self.current_rgb = None
        self._display01 = None

    def _style_verdict(self, verdict: str) -> None:
        bg, fg = VERDICT_STYLES.get(verdict, VERDICT_STYLES["failed"])
        self.verdict_label.setStyleSheet(
            f"QLabel {{ background: {bg}; color: {fg}; font-size: 15pt; font-weight: bold;"
            " padding: 8px; border-radius: 4px; }")

    def _set_errors(self, lines: list[str]) -> None:
        self.errors_label.setText("\n".join(lines))
        self.errors_label.setVisible(bool(lines))

    def _show_outcome(self, outcome: StudyOutcome, *, reset_image: bool,
                      keep_view: bool = False) -> None:
        """Result panel, strip and image; ``keep_view`` updates the image's numbers and overlay
        but keeps its window, zoom and orientation (the reader may have changed them while the
        scores were computed)."""
        pred = outcome.prediction
        n_ok = len(outcome.images) - len(outcome.failures)
        errors = [f"Cannot decode {v.name}: {v.error}" for v in outcome.failures]
        if outcome.model_error:
            errors.append(f"Model error: {outcome.model_error}")
        self._set_errors(errors)
        self.images_label.setText(f"{n_ok} of {len(outcome.images)}" if pred is not None
                                  else f"0 of {len(outcome.images)}")
        if pred is not None:
            self.verdict_label.setText(verdict_text(pred.verdict, self.word))
            self._style_verdict(pred.verdict)
            self.study_prob_label.setText(format_probability(pred.probability))
            header = outcome.study.body_part_tag
            self.body_part_label.setText(
                pred.body_part + (f" · DICOM header: {header}" if header else ""))
        else:
            awaiting = self._awaits_scores(outcome)
            self.verdict_label.setText(
                ("Analysing…" if self.engine is not None else "Model loading…") if awaiting
                else "No model" if self.engine is None else
                ("No result: no image could be decoded" if not n_ok else "No result"))
            self._style_verdict("failed")
            self.study_prob_label.setText("—")
            self.body_part_label.setText(outcome.study.body_part_tag or "—")
            if awaiting:
                self.images_label.setText("—")
        if reset_image:
            self.current_index = 0
        self._fill_thumbnails(outcome)
        self._show_image(new=not keep_view)

    def _show_image(self, *, new: bool) -> None:
        """Show ``current_index`` of the current study; ``new`` resets window, zoom and presets."""
        out = self.current_outcome
        v = self.current_image
        if out is None or v is None:
            return
        n = len(out.images)
        series = out.series[v.series] if 0 <= v.series < len(out.series) else None
        in_series = f" · {series.label}" if series is not None and len(out.series) > 1 else ""
        self.image_counter.setText(
            f"Image {self.current_index + 1} of {n} · {v.name}{in_series}")
        if self.tag_dialog is not None and self.tag_dialog.isVisible() \
                and v.ref.kind == "dicom":
            self.tag_dialog.set_path(v.ref.path)
        if self.thumb_strip.currentRow() != self.current_index:
            self.thumb_strip.blockSignals(True)
            self.thumb_strip.setCurrentRow(self.current_index)
            self.thumb_strip.blockSignals(False)
        self.prev_button.setEnabled(self.current_index > 0)
        self.next_button.setEnabled(self.current_index < n - 1)
        self.image_prob_label.setText(
            format_probability(v.prediction.probability) if v.prediction is not None else "—")
        if new:
            self.current_window = None
            self.orientation = Orientation()
            self.preset_combo.clear()
            self.preset_combo.addItem("File default", None)
            if v.image is not None:
                for name, c, w in v.image.window_presets():
                    self.preset_combo.addItem(f"{name} (W {_fmt_wl(w)} / L {_fmt_wl(c)})", (c, w))
            self.preset_combo.setCurrentIndex(0)  # with a placeholder set, Qt leaves it at -1
            names = [self.preset_combo.itemText(i) for i in range(1, self.preset_combo.count())]
            k = preset_index(names, self.settings.wl_preset)
            if k is not None and v.image is not None:
                self.preset_combo.setCurrentIndex(k + 1)
                c, w = self.preset_combo.itemData(k + 1)
                self.current_window = (float(c), float(w))
        if v.image is None:
            self.current_rgb = None
            self._display01 = None
            self.view.clear(f"Decoding {v.name}…" if v.pending
                            else f"Cannot decode {v.name}:\n{v.error}")
            self._update_overlay()
            return
        self._display01 = v.image.pixels if self.current_window is None else \
            v.image.display(self.current_window)
        self._render(new=new)
        if self._first_pending == self.current_key:
            self._first_pending = None
            self.first_image_shown.emit(self.current_key)

    def _render(self, new: bool = False) -> None:
        v = self.current_image
        if v is None or v.image is None or self._display01 is None:
            return
        heat = v.heat if (self.heatmap_check.isChecked() and v.heat is not None) else None
        rgb = render_rgb(self._display01, invert=self.invert_check.isChecked(),
                         heat01=heat, opacity=self.opacity_slider.value() / 100.0)
        self.current_rgb = self.orientation.apply(rgb)  # the heatmap turns with the image
        self.view.set_image(rgb_to_qimage(self.current_rgb), new=new)
        self._update_overlay()

    def _update_overlay(self) -> None:
        v = self.current_image
        if v is None or v.image is None:
            self.view.set_overlay()
            return
        info = v.image.info
        tl, tr = [], []
        if info is not None:
            # identifying data: shown on screen only, never logged
            tl += [x for x in (info.patient_name.replace("^", " ").strip(),
                               f"ID {info.patient_id}" if info.patient_id else "") if x]
            tl += [x for x in (_format_da(info.study_date), info.study_description) if x]
            tr += [" · ".join(x for x in (info.modality, info.body_part_examined) if x)]
        out = self.current_outcome
        n = len(out.images) if out else 1
        tr.append(f"Image {self.current_index + 1}/{n}")
        h, w = v.image.pixels.shape
        win = self.current_window
        bl = [f"{w}×{h} · zoom {self.view.zoom * 100:.0f}%",
              "W/L: file default" if win is None else f"W {_fmt_wl(win[1])} / L {_fmt_wl(win[0])}"]
        if self.invert_check.isChecked():
            bl.append("inverted")
        if not self.orientation.is_identity:
            bl.append(self.orientation.describe())
        if v.preview:
            bl.append("preview · full resolution follows")
        br = []
        if v.prediction is not None:
            br.append(f"P({self.word}) {format_probability(v.prediction.probability)}")
        if self.heatmap_check.isChecked() and v.heat is not None:
            br.append("heatmap on")
        self.view.set_overlay(top_left="\n".join(tl), top_right="\n".join(t for t in tr if t),
                              bottom_left="\n".join(bl), bottom_right="\n".join(br))

    @staticmethod
    def _thumb_tooltip(v: ViewImage) -> str:
        if v.preview:
            return f"{v.name} (preview; full resolution follows)"
        return (v.name if v.image is not None else f"{v.name}: decoding…" if v.pending
                else f"{v.name}: {v.error}")

    def _fill_thumbnails(self, outcome: StudyOutcome) -> None:
        """One thumbnail per image of the study, row = image index (a dark tile while it is
        decoded, a crossed one for an undecodable image); the series bar captions the groups.
        An existing strip of the same study is updated in place (no flicker, scroll kept)."""
        strip = self.thumb_strip
        strip.blockSignals(True)
        same = strip.count() == len(outcome.images) and all(
            strip.item(k).data(Qt.ItemDataRole.UserRole) == v.ref.path
            for k, v in enumerate(outcome.images))
        if same:
            for k, v in enumerate(outcome.images):
                self._set_thumbnail(k, v)
        else:
            strip.clear()
            for k, v in enumerate(outcome.images):
                item = QListWidgetItem(_thumb_icon(v), f"{k + 1}")
                item.setData(Qt.ItemDataRole.UserRole, v.ref.path)
                item.setToolTip(self._thumb_tooltip(v))
                item.setSizeHint(QSize(THUMB_SIZE + 10, THUMB_SIZE + 30))
                item.setTextAlignment(Qt.AlignmentFlag.AlignHCenter)
                strip.addItem(item)
        strip.setCurrentRow(min(self.current_index, len(outcome.images) - 1))
        strip.blockSignals(False)
        strip.setVisible(bool(outcome.images))
        groups, first = [], 0
        for s in outcome.series:
            groups.append((s.label, first, s.count))
            first += s.count
        self.series_bar.set_groups(groups if first == len(outcome.images) else [])
        self.series_bar.setVisible(bool(outcome.images) and bool(self.series_bar.groups))

    def _set_thumbnail(self, k: int, v: ViewImage) -> None:
        item = self.thumb_strip.item(k)
        if item is not None:
            item.setIcon(_thumb_icon(v))
            item.setToolTip(self._thumb_tooltip(v))

    def _on_thumb_row(self, row: int) -> None:
        out = self.current_outcome
        if out is not None and 0 <= row < len(out.images) and row != self.current_index:
            self.current_index = row
            self._show_image(new=True)

    # -- drag and drop ----------------------------------------------------------------------
    @staticmethod
    def _dropped_paths(mime) -> list[str]:
        if mime is None or not mime.hasUrls():
            return []
        return [u.toLocalFile() for u in mime.urls() if u.isLocalFile() and u.toLocalFile()]

    def dragEnterEvent(self, event) -> None:  # noqa: N802 - Qt override
        if self._dropped_paths(event.mimeData()):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dragMoveEvent(self, event) -> None:  # noqa: N802
        if self._dropped_paths(event.mimeData()):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dropEvent(self, event) -> None:  # noqa: N802
        """Files and folders dropped anywhere on the window are opened like command-line paths
        (a DICOMDIR among them opens the images it references)."""
        paths = self._dropped_paths(event.mimeData())
        if not paths:
            event.ignore()
            return
        event.acceptProposedAction()
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
        """Heatmap overlay on/off; the checkbox and the ``A`` action stay in step."""
        on = bool(on) and self.engine is not None
        for w in (self.heatmap_check, self.heatmap_action):
            if w.isChecked() != on:
                w.blockSignals(True)
                w.setChecked(on)
                w.blockSignals(False)
        self._render()

    def set_invert(self, on: bool) -> None:
        for w in (self.invert_check, self.invert_action):
            if w.isChecked() != bool(on):
                w.blockSignals(True)
                w.setChecked(bool(on))
                w.blockSignals(False)
        self._render()

    def rotate(self, quarter_turns_cw: int) -> None:
        """Turn the shown picture (``R`` clockwise, ``L`` counter-clockwise)."""
        self.set_orientation(self.orientation.rotated(quarter_turns_cw))

    def flip_horizontally(self) -> None:
        self.set_orientation(self.orientation.flipped_horizontally())

    def flip_vertically(self) -> None:
        self.set_orientation(self.orientation.flipped_vertically())

    def set_orientation(self, orientation: Orientation) -> None:
        self.orientation = orientation
        self._render()

    def reset_view(self) -> None:
        """Space: the image as first shown - file window, no invert, no turn, fitted."""
        self.orientation = Orientation()
        if self.invert_check.isChecked():
            self.set_invert(False)  # renders
        self.set_window(None)
        self.view.reset_zoom()
        self._render()

    def toggle_full_screen(self) -> None:
        """F11 / F: full screen and back (the window's previous geometry is restored)."""
        if self.isFullScreen():
            self.showNormal()
        else:
            self.showFullScreen()

    def set_window(self, window: tuple[float, float] | None) -> None:
        """Re-window the current image through :meth:`LoadedImage.display` (no re-decoding)."""
        v = self.current_image
        if v is None or v.image is None:
            return
        self.current_window = None if window is None else (float(window[0]), float(window[1]))
        self._display01 = v.image.display(self.current_window) if window is not None \
            else v.image.pixels
        if window is None:
            self.preset_combo.setCurrentIndex(0)
        self._render()

    def window_span(self) -> float:
        """The data's full range, in the units of a window: the scale of a window drag."""
        v = self.current_image
        if v is None or v.image is None or v.image.modality_pixels is None:
            return 1.0
        m = v.image.modality_pixels
        return float(np.nanmax(m) - np.nanmin(m)) or 1.0

    def start_window(self) -> tuple[float, float]:
        """The window a drag starts from when the file's own VOI is shown."""
        v = self.current_image
        if self.current_window is not None:
            return self.current_window
        presets = v.image.window_presets() if v is not None and v.image is not None else []
        return (presets[0][1], presets[0][2]) if presets else (0.5, 1.0)

    def _on_window_drag(self, dx: float, dy: float) -> None:
        v = self.current_image
        if v is None or v.image is None:
            return
        dicom = v.image.modality_pixels is not None
        new = drag_window(self.start_window(), dx, dy, self.window_span(),
                          min_width=1.0 if dicom else 1e-3)
        self.set_window(new)
        self.preset_combo.setCurrentIndex(-1)

    def _on_preset(self, index: int) -> None:
        self.set_window(self.preset_combo.itemData(index))

    # -- model card, screenshot, closing ----------------------------------------------------
    def show_model_card(self) -> ModelCardDialog | None:
        """Open the card dialog (non-blocking) and return it."""
        if self.engine is None:
            return None
        if self._card_dialog is None:
            self._card_dialog = ModelCardDialog(self.engine.bundle.card, self)
        self._card_dialog.show()
        self._card_dialog.raise_()
        return self._card_dialog

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
        filt = "PDF (*.pdf)" if fmt == "pdf" else "PNG image (*.png)"
        path, _ = QFileDialog.getSaveFileName(self, "Export study report", f"report.{fmt}", filt)
        if path:
            try:
                self.export_report(path)
            except (OSError, MuraError) as e:
                self.statusBar().showMessage(f"Export failed: {e}")

    def export_report(self, path: str | Path) -> Path:
        """Write the current study's report as PDF or PNG (by suffix); returns the path.

        Refuses a destination that is one of the study's source files: exporting must never
        alter an original.
        """
        out = self.current_outcome
        if out is None:
            raise ConfigError("export: no study is shown")
        if self.decoding:
            raise ConfigError(f"export: {out.study.key} is still being opened; export it once "
                              "its images are decoded")
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix not in (".pdf", ".png"):
            raise ConfigError(f"{path}: a report is written as .pdf or .png")
        target = path.resolve()
        for v in out.images:
            if Path(v.ref.path).resolve() == target:
                raise ConfigError(f"{path}: is a source image of the study; choose another file")
        card = self.engine.bundle.card if self.engine is not None else {}
        model_id = self.engine.bundle.model_id if self.engine is not None else "no model"
        content = report_content(out, card, model_id)
        written = (write_report_pdf if suffix == ".pdf" else write_report_png)(content, path)
        self.statusBar().showMessage(f"Report written: {written}")
        return written

    def export_dicom_dialog(self) -> None:
        if self.current_outcome is None or self.engine is None:
            self.statusBar().showMessage("DICOM export: open a study with a model first.")
            return
        out = QFileDialog.getExistingDirectory(self, "Folder for the DICOM Secondary Captures "
                                                     "and Structured Report")
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
        return self._start("dicom", "", export_dicom_job, out, self.engine.bundle.card,
                           str(out_dir), self.word)

    # -- settings ---------------------------------------------------------------------------
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
                   factory: Callable[..., Engine] | None = None) -> Task:
        """Load a bundle on its own worker thread; the window stays usable meanwhile.

        Studies opened while it loads are decoded and shown, and scored once it is ready
        (``engine_changed`` then). A failure sets ``model_error``, shown as before. A newer
        call supersedes an older one still loading. ``factory`` is passed to
        :func:`~desktop.studies.load_engine`.
        """
        if self._engine_tag is not None and self._engine_tag in self._tasks:
            self._tasks[self._engine_tag][0].cancel()
        self.settings = dataclasses.replace(self.settings, device=device,
                                            model_path=str(path))
        self._engine_loading = f"{Path(path).name} on {device}"
        self.statusBar().showMessage(f"Loading model {self._engine_loading}…")
        self._show_model_state()
        self.model_label.setText(f"Loading {self._engine_loading}…")  # also over an old model
        task = self._start("engine", "", functools.partial(load_engine, factory=factory),
                           str(path), device, pool=self._engine_pool)
        self._engine_tag = task.tag
        return task

    @property
    def model_loading(self) -> bool:
        return bool(self._engine_loading)

    def _set_engine(self, engine: Engine | None, error: str) -> None:
        """Swap the engine: results of the old model are dropped and the shown study scored
        again; decoded images are kept (a study is never decoded twice for a model change)."""
        self.engine, self.model_error = engine, error
        self._engine_loading = ""
        if self._card_dialog is not None:
            self._card_dialog.close()
            self._card_dialog = None
        self._show_model_state()
        for tag, (task, _key) in self._tasks.items():
            if tag.startswith(("score:", "heat:")):
                task.cancel()  # results of the old model
        self.outcomes = OrderedDict(
            (k, unscored(o) if o.scored_by is not None else o) for k, o in self.outcomes.items())
        self.summaries.clear()
        for st in self.studies:
            self._update_study_item(st, None, pending=True)
        if error:
            self.statusBar().showMessage(f"Model could not be loaded: {error}")
        elif engine is not None:
            self.statusBar().showMessage(f"Model loaded on {engine.device}")
        key = self.current_key
        if key is not None:
            self.current_key = None
            self.select_study(key)
        self.engine_changed.emit()

    def save_screenshot(self, path: str | Path) -> Path:
        """Save the whole window as shown (``window.grab()``) to a PNG."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if not self.grab().save(str(path), "PNG"):
            raise OSError(f"{path}: could not write the screenshot")
        return path

    @property
    def busy(self) -> bool:
        return bool(self._tasks)

    def shutdown(self, timeout_ms: int = 10000) -> None:
        """Cancel and wait for the workers, so no signal reaches a destroyed window."""
        for task, _key in list(self._tasks.values()):
            task.cancel()
        self._pool.waitForDone(timeout_ms)
        self._engine_pool.waitForDone(timeout_ms)

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt override
        self.shutdown()
        super().closeEvent(event)
