"""Rotate/flip keys show exactly the turned picture (heatmap included); Space undoes them all.

The expected pixels are built by applying numpy's own rot90/fliplr/flipud one key at a time to
the unturned picture, so the window's compact two-number state cannot agree with itself by
construction.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from PySide6.QtCore import Qt

from desktop.screening import render
from desktop.screening.render import Orientation
from desktop.viewer.image_view import qimage_to_rgb

WAIT_MS = 30_000

# what each key does to the picture as shown
NUMPY_OPS = {
    "r": lambda a: np.rot90(a, -1),
    "l": lambda a: np.rot90(a, 1),
    "h": lambda a: a[:, ::-1],
    "v": lambda a: a[::-1, :],
}
KEYS = {"r": Qt.Key.Key_R, "l": Qt.Key.Key_L, "h": Qt.Key.Key_H, "v": Qt.Key.Key_V}
STATE_OPS = {
    "r": lambda o: o.rotated(1),
    "l": lambda o: o.rotated(-1),
    "h": Orientation.flipped_horizontally,
    "v": Orientation.flipped_vertically,
}


def test_orientation_state_equals_numpy_sequence():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (5, 7, 3), dtype=np.uint8)  # non-square: turns swap H and W
    states = set()
    seqs = itertools.chain.from_iterable(itertools.product("rlhv", repeat=n) for n in range(5))
    for seq in seqs:
        o, want = Orientation(), img
        for k in seq:
            o, want = STATE_OPS[k](o), NUMPY_OPS[k](want)
        got = o.apply(img)
        assert got.flags["C_CONTIGUOUS"]
        np.testing.assert_array_equal(got, want, err_msg="".join(seq))
        states.add(o)
    assert len(states) == 8  # the dihedral group: every sequence is one of eight states
    assert Orientation().describe() == "" and "mirrored" in Orientation(1, True).describe()


def _open(qtbot, win, folder):
    with qtbot.waitSignal(win.analysis_ready, timeout=WAIT_MS):
        win.open_paths([folder])
    qtbot.waitUntil(lambda: not win.busy, timeout=WAIT_MS)


def _shown(win) -> np.ndarray:
    return qimage_to_rgb(win.view.pixmap_item.pixmap().toImage())


@pytest.mark.parametrize("keys", ["r", "l", "h", "v", "rh", "lv", "rrr", "hvr"])
def test_keys_turn_the_displayed_pixels_and_the_heatmap(qtbot, win, phantom, keys):
    _open(qtbot, win, phantom / "dicom" / "study_0002")
    v = win.current_image
    qtbot.keyClick(win, Qt.Key.Key_A)  # heatmap on: it must turn with the image
    assert win.heatmap_check.isChecked()
    base = render.blend_heatmap(render.to_uint8(v.image.pixels), v.heat,
                                win.opacity_slider.value() / 100)
    np.testing.assert_array_equal(_shown(win), base)
    want = base
    for k in keys:
        qtbot.keyClick(win, KEYS[k])
        want = NUMPY_OPS[k](want)
        np.testing.assert_array_equal(win.current_rgb, want)
        np.testing.assert_array_equal(_shown(win), want)
    # the scene follows the turned size
    h, w = want.shape[:2]
    rect = win.view.scene().sceneRect()
    assert (int(rect.width()), int(rect.height())) == (w, h)

    # Space: back to the untouched picture (window, invert, orientation, zoom)
    qtbot.keyClick(win, Qt.Key.Key_I)
    win.view.zoom_by(3.0)
    qtbot.keyClick(win, Qt.Key.Key_Space)
    assert win.orientation == Orientation() and not win.invert_check.isChecked()
    np.testing.assert_array_equal(_shown(win), base)
    z = win.view.zoom
    win.view.reset_zoom()
    assert win.view.zoom == pytest.approx(z)


def test_full_screen_toggles_with_f_and_f11(qtbot, win, phantom):
    _open(qtbot, win, phantom / "dicom" / "study_0001")
    assert not win.isFullScreen()
    qtbot.keyClick(win, Qt.Key.Key_F11)
    qtbot.waitUntil(win.isFullScreen, timeout=5000)
    qtbot.keyClick(win, Qt.Key.Key_F)
    qtbot.waitUntil(lambda: not win.isFullScreen(), timeout=5000)
    qtbot.keyClick(win, Qt.Key.Key_F)
    qtbot.waitUntil(win.isFullScreen, timeout=5000)
    win.toggle_full_screen()
    qtbot.waitUntil(lambda: not win.isFullScreen(), timeout=5000)


def test_rotation_is_reset_for_the_next_image_and_shown_in_the_overlay(qtbot, win, phantom):
    _open(qtbot, win, phantom / "dicom" / "study_0004")
    qtbot.keyClick(win, Qt.Key.Key_R)
    assert "rotated 90°" in win.view._overlay["bottom_left"]
    qtbot.keyClick(win, Qt.Key.Key_Right)
    assert win.orientation == Orientation()
    np.testing.assert_array_equal(win.current_rgb,
                                  render.render_rgb(win.current_image.image.pixels))
