"""How the viewer's main window is put together: its widgets, their layout and looks, its actions
(menus and keyboard shortcuts), and the small pictures its lists show.

Like the ``Ui_*`` classes Qt Designer generates, :class:`ViewerUi` only builds: nothing here
connects a signal or knows what the window does, so a change of layout or wording happens here
and a change of behaviour in :mod:`desktop.viewer.main_window`. The window connects the signals.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QAction, QColor, QFont, QIcon, QImage, QKeySequence, QPainter, QPixmap
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QListView,
    QListWidget,
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

from desktop.screening.render import DISCLAIMER, VERDICT_STYLES
from desktop.viewer.image_view import ImageView, SeriesBar
from desktop.viewer.studies import STRIP_THUMB_SIZE, ViewImage


def thumb_icon(v: ViewImage) -> QIcon:
    """The image reduced; a plain dark tile while it is being decoded; crossed when it failed."""
    if v.thumb is not None:
        g = np.ascontiguousarray(v.thumb)
        h, w = g.shape
        img = QImage(g.data, w, h, w, QImage.Format.Format_Grayscale8).copy()
        return QIcon(QPixmap.fromImage(img))
    pm = QPixmap(STRIP_THUMB_SIZE, STRIP_THUMB_SIZE)
    pm.fill(QColor("#4a4a4a"))
    if v.pending:
        p = QPainter(pm)
        p.setPen(QColor("#a0a0a0"))
        p.drawText(pm.rect(), Qt.AlignmentFlag.AlignCenter, "…")
        p.end()
        return QIcon(pm)
    p = QPainter(pm)
    p.setPen(QColor("#e06060"))
    p.drawLine(8, 8, STRIP_THUMB_SIZE - 8, STRIP_THUMB_SIZE - 8)
    p.drawLine(STRIP_THUMB_SIZE - 8, 8, 8, STRIP_THUMB_SIZE - 8)
    p.end()
    return QIcon(pm)


def verdict_icon(verdict: str) -> QIcon:
    """The study list's coloured square for a verdict ("pending": light gray, not analysed)."""
    pm = QPixmap(12, 12)
    pm.fill(QColor(VERDICT_STYLES.get(verdict, ("#d0d0d0", ""))[0]))
    return QIcon(pm)


#: Scroll bars of the dark picture canvas and thumbnail strip, dark like them.
DARK_SCROLLBARS = ("QScrollBar { background: #1b1b1b; border: none; }"
                   "QScrollBar::handle { background: #5a5a5a; border-radius: 4px; min-width: 24px; min-height: 24px; }"
                   "QScrollBar::add-line, QScrollBar::sub-line { width: 0; height: 0; }")


class ViewerUi:
    """The window's widgets and actions, built into ``window``: study list | image | result.

    ``word`` is the model's task word for the probability captions (the window re-sets them
    when the model changes). Actions are added to the window itself, so their shortcuts work
    whichever child has the focus; none is connected to anything yet.
    """

    def __init__(self, window: QMainWindow, word: str) -> None:
        root = QWidget(window)
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
        # One line on how good the loaded model is; red for a model that is not clinically
        # meaningful (models.trust.model_warnings). Always there and one line high, so loading
        # a model never moves the picture the reader is looking at; the full text is its tooltip.
        self.weak_banner = QLabel("No model loaded", root)
        self.weak_banner.setObjectName("modelBanner")
        self.weak_banner.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.weak_banner.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
        outer.addWidget(self.weak_banner)

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

        centre = self._build_centre(split)
        self._build_side(split, window.font(), word)

        split.addWidget(self.study_list)
        split.addWidget(centre)
        split.addWidget(self.side_scroll)
        split.setStretchFactor(0, 0)
        split.setStretchFactor(1, 1)
        split.setStretchFactor(2, 0)
        split.setSizes([250, 760, 340])
        window.setCentralWidget(root)

        sb = window.statusBar()
        self.progress = QProgressBar(sb)
        self.progress.setMaximumWidth(180)
        self.progress.setTextVisible(False)
        self.progress.hide()
        sb.addPermanentWidget(self.progress)
        self.model_status = QLabel("", sb)
        sb.addPermanentWidget(self.model_status)
        sb.showMessage("Ready")

        self._build_actions(window)
        self._build_menus(window)

    def offer_samples(self, available: bool) -> None:
        """Show File → Open sample radiographs, and point to it on the empty image, only when
        there are samples (a checkout has ``samples/``; an installed app has none): a first
        look at the viewer should not need data of one's own."""
        self.open_samples_action.setVisible(available)
        if available and not self.view.has_image:
            self.view.clear("Open a folder or a DICOM file (File → Open folder…),\n"
                            "or look at the sample radiographs (File → Open sample radiographs)")

    def _build_centre(self, split: QSplitter) -> QWidget:
        """The image, the thumbnail strip with its series captions, previous / next."""
        centre = QWidget(split)
        cl = QVBoxLayout(centre)
        cl.setContentsMargins(0, 0, 0, 0)
        cl.setSpacing(2)
        self.view = ImageView(centre)
        self.view.setStyleSheet(DARK_SCROLLBARS)  # light bars on the dark canvas glared
        # drops on the image go to the window, which opens them
        self.view.setAcceptDrops(False)
        self.view.viewport().setAcceptDrops(False)
        cl.addWidget(self.view, 1)
        # the current study's images: click one to show it
        self.thumb_strip = QListWidget(centre)
        self.thumb_strip.setObjectName("thumbnailStrip")
        self.thumb_strip.setViewMode(QListView.ViewMode.IconMode)
        self.thumb_strip.setFlow(QListView.Flow.LeftToRight)
        self.thumb_strip.setWrapping(False)
        self.thumb_strip.setMovement(QListView.Movement.Static)
        self.thumb_strip.setIconSize(QSize(STRIP_THUMB_SIZE, STRIP_THUMB_SIZE))
        self.thumb_strip.setSpacing(4)
        self.thumb_strip.setFixedHeight(STRIP_THUMB_SIZE + 42)
        self.thumb_strip.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        self.thumb_strip.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.thumb_strip.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # arrows stay with the window
        self.thumb_strip.setStyleSheet(
            "QListWidget { background: #1b1b1b; color: #d0d0d0; border: none; }"
            "QListWidget::item:selected { background: #3d5a80; color: #ffffff; }" + DARK_SCROLLBARS)
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
        self.image_counter = QLabel("", centre)
        self.image_counter.setObjectName("imageCounter")
        self.image_counter.setAlignment(Qt.AlignmentFlag.AlignCenter)
        for w in (self.prev_button, self.next_button):
            w.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # arrow keys stay with the window
            w.setEnabled(False)  # nothing to go to until a study is open (panels.show_position)
        nav.addWidget(self.prev_button)
        nav.addWidget(self.image_counter, 1)
        nav.addWidget(self.next_button)
        cl.addLayout(nav)
        return centre

    def _build_side(self, split: QSplitter, font: QFont, word: str) -> None:
        """The result, display and model boxes, in a column that scrolls."""
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
        sl.addWidget(self._build_result_box(side, font, word))
        sl.addWidget(self._build_display_box(side))
        sl.addWidget(self._build_model_box(side))
        sl.addStretch(1)
        self.side_scroll.setWidget(side)

    def _build_result_box(self, side: QWidget, font: QFont, word: str) -> QGroupBox:
        """The verdict badge over the study's and the image's probability, the body part, how
        many images were scored, the operating points, and what failed."""
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
        self.study_prob_caption = QLabel(f"Study P({word}):", self.result_panel)
        self.study_prob_label = QLabel("—", self.result_panel)
        self.study_prob_label.setObjectName("studyProbability")
        big = QFont(font)
        big.setPointSizeF(big.pointSizeF() * 1.6)
        big.setBold(True)
        self.study_prob_label.setFont(big)
        self.study_prob_label.setTextInteractionFlags(
            Qt.TextInteractionFlag.TextSelectableByMouse)
        form.addRow(self.study_prob_caption, self.study_prob_label)
        self.image_prob_caption = QLabel(f"Image P({word}):", self.result_panel)
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
        return self.result_panel

    def _build_display_box(self, side: QWidget) -> QGroupBox:
        """The heatmap overlay with its opacity and colour scale, invert, the window presets,
        and a reminder of the mouse and keyboard."""
        disp = QGroupBox("Display", side)
        dl = QFormLayout(disp)
        self.heatmap_check = QCheckBox("Heatmap overlay (A)", disp)
        self.heatmap_check.setObjectName("heatmapCheck")
        dl.addRow(self.heatmap_check)
        self.opacity_slider = QSlider(Qt.Orientation.Horizontal, disp)
        self.opacity_slider.setRange(10, 90)
        self.opacity_slider.setValue(50)
        dl.addRow("Heatmap opacity:", self.opacity_slider)
        self.heat_legend = QLabel(disp)  # the colour scale (desktop.screening.heat_legend), shown with the overlay
        self.heat_legend.setObjectName("heatLegend")
        self.heat_legend.hide()
        dl.addRow(self.heat_legend)
        self.invert_check = QCheckBox("Invert (I)", disp)
        self.invert_check.setObjectName("invertCheck")
        dl.addRow(self.invert_check)
        self.preset_combo = QComboBox(disp)
        self.preset_combo.setObjectName("windowPresets")
        self.preset_combo.setPlaceholderText("—")  # "Custom (dragged)" once an image is shown
        dl.addRow("Window:", self.preset_combo)
        hint = QLabel("Left-drag: window/level · wheel or +/−: zoom · middle-drag: pan · "
                      "=: fit · R/L: rotate · H/V: flip · Space: reset · F: full screen · "
                      "←/→: images", disp)
        hint.setWordWrap(True)
        hint.setStyleSheet("QLabel { color: #666; }")
        dl.addRow(hint)
        return disp

    def _build_model_box(self, side: QWidget) -> QGroupBox:
        """Which model is loaded and how good it is; its card one click away."""
        model = QGroupBox("Model", side)
        ml = QVBoxLayout(model)
        self.model_label = QLabel("", model)
        self.model_label.setObjectName("modelLabel")
        self.model_label.setWordWrap(True)
        ml.addWidget(self.model_label)
        self.card_button = QPushButton("Model card…", model)
        self.card_button.setObjectName("modelCardButton")
        ml.addWidget(self.card_button)
        return model

    def _build_actions(self, window: QMainWindow) -> None:
        """Every command of the window, with its shortcut; the window connects them."""
        def action(text: str, shortcut: str | QKeySequence | None = None,
                   checkable: bool = False) -> QAction:
            a = QAction(text, window)
            if shortcut is not None:
                a.setShortcut(QKeySequence(shortcut))
            a.setCheckable(checkable)
            window.addAction(a)  # window-wide shortcuts, whichever child has the focus
            return a


        self.open_action = action("&Open folder…", QKeySequence.Open)
        self.open_files_action = action("Open &file(s) or DICOMDIR…", "Ctrl+Shift+O")
        self.open_samples_action = action("Open sample &radiographs")
        self.screen_action = action("&Screen folder…")
        self.received_action = action("&Received from the DICOM node…", "Ctrl+R")
        self.export_pdf_action = action("Export study report (&PDF)…")
        self.export_png_action = action("Export study report (P&NG)…")
        self.export_dicom_action = action("Export &DICOM SC/SR…")
        self.settings_action = action("S&ettings…", QKeySequence.Preferences)
        self.quit_action = action("&Quit", QKeySequence.Quit)
        self.prev_action = action("&Previous image", "Left")
        self.next_action = action("&Next image", "Right")
        self.prev_study_action = action("Previous s&tudy", "PgUp")
        self.next_study_action = action("Next &study", "PgDown")
        self.heatmap_action = action("&Heatmap overlay", "A", checkable=True)
        self.invert_action = action("&Invert", "I", checkable=True)
        self.rotate_cw_action = action("Rotate &clockwise", "R")
        self.rotate_ccw_action = action("Rotate c&ounter-clockwise", "L")
        self.flip_h_action = action("Flip &horizontally", "H")
        self.flip_v_action = action("Flip &vertically", "V")
        self.reset_action = action("&Reset view", "Space")
        self.fit_action = action("&Fit to window", "=")
        self.zoom_in_action = action("Zoom &in", "+")
        self.zoom_out_action = action("Zoom &out", "-")
        self.full_screen_action = action("F&ull screen", "F11")
        # "F" too, as in RadiAnt; a second shortcut on the same action
        self.full_screen_action.setShortcuts([QKeySequence("F11"), QKeySequence("F")])
        self.card_action = action("&Model card…")
        self.shortcuts_action = action("&Keyboard shortcuts…", QKeySequence.HelpContents)
        self.about_action = action("&About mura-viewer…")
        self.tags_action = action("DICOM &tags…", "T")

    def _build_menus(self, window: QMainWindow) -> None:
        """File, View and Help menus; ``export_menu_anchor`` marks where exports end."""
        mb = window.menuBar()
        m = mb.addMenu("&File")
        m.addAction(self.open_action)
        m.addAction(self.open_files_action)
        m.addAction(self.open_samples_action)
        m.addAction(self.screen_action)
        m.addAction(self.received_action)
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
        m.addAction(self.shortcuts_action)
        m.addSeparator()
        m.addAction(self.about_action)
