"""How the viewer's current image is displayed: window/level, turn and flip, inversion, heatmap
overlay, rendered into the canvas with its corner overlay.

:class:`ImageDisplay` holds that state for the one image shown and re-renders it from the
decoded pixels (never decoding again). The window says which image to show and when a new
image starts again from the file's own window; the reader's changes come through the controls
:class:`ImageDisplay` connects (the display box, the View menu's actions, the canvas's drags).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from desktop.screening.render import Orientation, drag_window, render_rgb
from desktop.viewer import panels
from desktop.viewer.image_view import rgb_to_qimage
from desktop.viewer.settings import preset_index
from desktop.viewer.studies import ViewImage
from desktop.viewer.window_ui import ViewerUi


class ImageDisplay:
    """The display state of the shown image and the widgets that show and change it.

    ``window`` is (center, width) in the image's window units (None: the file's own VOI),
    ``orientation`` the reader's turn and flip, ``rgb`` the picture as shown (oriented; None
    when nothing decoded is shown). Invert, heatmap and its opacity are the checkboxes' state.
    """

    def __init__(self, ui: ViewerUi, word: str, has_model: Callable[[], bool]) -> None:
        self.ui = ui
        self.word = word  # the model's task word, for the score in the overlay
        self._has_model = has_model  # a heatmap needs one
        self.image: ViewImage | None = None
        self.index, self.count = 0, 1  # of the image in its study, for the overlay
        self.window: tuple[float, float] | None = None
        self.orientation = Orientation()
        self.rgb: np.ndarray | None = None
        self._display01: np.ndarray | None = None
        self._connect()

    def _connect(self) -> None:
        """The controls that change how the image is shown."""
        ui = self.ui
        ui.heatmap_check.toggled.connect(self.set_heatmap)
        ui.heatmap_action.toggled.connect(self.set_heatmap)
        ui.view.window_dragged.connect(self.drag_window)
        ui.view.zoom_changed.connect(lambda _z: self.update_overlay())
        ui.opacity_slider.valueChanged.connect(lambda _v: self.render())
        ui.invert_check.toggled.connect(self.set_invert)
        ui.invert_action.toggled.connect(self.set_invert)
        ui.preset_combo.activated.connect(self.choose_preset)
        ui.rotate_cw_action.triggered.connect(lambda: self.rotate(1))
        ui.rotate_ccw_action.triggered.connect(lambda: self.rotate(-1))
        ui.flip_h_action.triggered.connect(self.flip_horizontally)
        ui.flip_v_action.triggered.connect(self.flip_vertically)
        ui.reset_action.triggered.connect(self.reset)

    def clear(self) -> None:
        """Nothing decoded to show (the canvas itself is cleared by the caller, with a reason)."""
        self.image = None
        self.rgb = None
        self._display01 = None

    def show(self, v: ViewImage, *, index: int, count: int, new: bool, preset: str) -> bool:
        """Show ``v`` (image ``index`` of ``count``); ``new`` starts again: the file's window,
        or the ``preset`` named in the settings if the image has it, no turn, fitted. Returns
        whether a decoded picture is on screen (else the canvas says why not)."""
        self.image, self.index, self.count = v, index, count
        if new:
            self.window = None
            self.orientation = Orientation()
            combo = self.ui.preset_combo
            panels.fill_presets(combo, v)
            combo.setCurrentIndex(0)  # with a placeholder set, Qt leaves it at -1
            names = [combo.itemText(i) for i in range(1, combo.count())]
            k = preset_index(names, preset)
            if k is not None and v.image is not None:
                combo.setCurrentIndex(k + 1)
                c, w = combo.itemData(k + 1)
                self.window = (float(c), float(w))
        if v.image is None:
            self.rgb = None
            self._display01 = None
            self.ui.view.clear(f"Decoding {v.name}…" if v.pending
                               else f"Cannot decode {v.name}:\n{v.error}")
            self.update_overlay()
            return False
        self._display01 = v.image.pixels if self.window is None else \
            v.image.display(self.window)
        self.render(new=new)
        return True

    def refresh_presets(self, v: ViewImage) -> None:
        """The presets of ``v``, another decode of the image shown (the full decode of a
        preview: presets from the data's range differ a little). A chosen preset stays chosen,
        with ``v``'s values; the file's window, or one the reader dragged, stays as it is."""
        combo = self.ui.preset_combo
        k = combo.currentIndex()
        panels.fill_presets(combo, v)
        if 0 < k < combo.count():
            combo.setCurrentIndex(k)
            c, w = combo.itemData(k)
            self.window = (float(c), float(w))
        else:
            combo.setCurrentIndex(k if k < combo.count() else -1)

    def render(self, new: bool = False) -> None:
        """Draw the picture again from the windowed pixels (invert, heatmap and turn applied);
        ``new`` fits it in the canvas."""
        v = self.image
        if v is None or v.image is None or self._display01 is None:
            return
        ui = self.ui
        heat = v.heat if (ui.heatmap_check.isChecked() and v.heat is not None) else None
        rgb = render_rgb(self._display01, invert=ui.invert_check.isChecked(),
                         heat01=heat, opacity=ui.opacity_slider.value() / 100.0)
        self.rgb = self.orientation.apply(rgb)  # the heatmap turns with the image
        ui.view.set_image(rgb_to_qimage(self.rgb), new=new)
        self.update_overlay()

    def update_overlay(self) -> None:
        v = self.image
        if v is None or v.image is None:
            self.ui.view.set_overlay()
            return
        ui = self.ui
        ui.view.set_overlay(**panels.overlay_texts(
            v, index=self.index, n=self.count, window=self.window, zoom=ui.view.zoom,
            inverted=ui.invert_check.isChecked(), orientation=self.orientation,
            heat_shown=ui.heatmap_check.isChecked() and v.heat is not None, word=self.word))

    # -- the reader's changes ---------------------------------------------------------------
    def set_heatmap(self, on: bool) -> None:
        """Heatmap overlay on/off (only with a model); the checkbox and the ``A`` action stay
        in step."""
        on = bool(on) and self._has_model()
        for w in (self.ui.heatmap_check, self.ui.heatmap_action):
            if w.isChecked() != on:
                w.blockSignals(True)
                w.setChecked(on)
                w.blockSignals(False)
        self.ui.heat_legend.setVisible(on)
        self.render()

    def set_invert(self, on: bool) -> None:
        """Invert on/off; the checkbox and the ``I`` action stay in step."""
        on = bool(on)
        for w in (self.ui.invert_check, self.ui.invert_action):
            if w.isChecked() != on:
                w.blockSignals(True)
                w.setChecked(on)
                w.blockSignals(False)
        self.render()

    def set_orientation(self, orientation: Orientation) -> None:
        self.orientation = orientation
        self.render()

    def rotate(self, quarter_turns_cw: int) -> None:
        """Turn the shown picture (``R`` clockwise, ``L`` counter-clockwise)."""
        self.set_orientation(self.orientation.rotated(quarter_turns_cw))

    def flip_horizontally(self) -> None:
        self.set_orientation(self.orientation.flipped_horizontally())

    def flip_vertically(self) -> None:
        self.set_orientation(self.orientation.flipped_vertically())

    def reset(self) -> None:
        """The image as first shown - file window, no invert, no turn, fitted."""
        self.orientation = Orientation()
        if self.ui.invert_check.isChecked():
            self.set_invert(False)  # renders
        self.set_window(None)
        self.ui.view.reset_zoom()
        self.render()

    def set_window(self, window: tuple[float, float] | None) -> None:
        """Re-window the image through :meth:`LoadedImage.display` (no re-decoding)."""
        v = self.image
        if v is None or v.image is None:
            return
        self.window = None if window is None else (float(window[0]), float(window[1]))
        self._display01 = v.image.display(self.window) if window is not None \
            else v.image.pixels
        if window is None:
            self.ui.preset_combo.setCurrentIndex(0)
        self.render()

    def window_span(self) -> float:
        """The data's full range, in the units of a window: the scale of a window drag."""
        v = self.image
        lo_hi = None if v is None or v.image is None else v.image.modality_range  # cached
        return (lo_hi[1] - lo_hi[0]) or 1.0 if lo_hi is not None else 1.0

    def start_window(self) -> tuple[float, float]:
        """The window a drag starts from when the file's own VOI is shown."""
        v = self.image
        if self.window is not None:
            return self.window
        presets = v.image.window_presets() if v is not None and v.image is not None else []
        return (presets[0][1], presets[0][2]) if presets else (0.5, 1.0)

    def drag_window(self, dx: float, dy: float) -> None:
        """A left-drag on the canvas: width and level follow the mouse; the preset is custom."""
        v = self.image
        if v is None or v.image is None:
            return
        dicom = v.image.modality_pixels is not None
        new = drag_window(self.start_window(), dx, dy, self.window_span(),
                          min_width=1.0 if dicom else 1e-3)
        self.set_window(new)
        self.ui.preset_combo.setCurrentIndex(-1)

    def choose_preset(self, index: int) -> None:
        self.set_window(self.ui.preset_combo.itemData(index))
