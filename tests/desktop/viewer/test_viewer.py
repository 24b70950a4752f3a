"""The viewer shows exactly what the model said, in the task's words, and never crashes on a file.

Runs offscreen (tests/conftest.py sets QT_QPA_PLATFORM). Probabilities are checked against an
Engine the test builds itself, so the window cannot agree with itself by construction.
"""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.uid import generate_uid
from PySide6.QtCore import QPoint, QPointF, Qt, QThreadPool
from PySide6.QtGui import QWheelEvent
from PySide6.QtWidgets import QApplication, QLabel

from desktop.screening import render
from desktop.screening.discovery import discover
from desktop.viewer.app import Task, ViewerWindow, build_parser, main, qimage_to_rgb
from models.engine import Engine, aggregate_study
from models.imageio import load_image

WAIT_MS = 30_000


def _open(qtbot, win: ViewerWindow, *paths: Path) -> str:
    with qtbot.waitSignal(win.analysis_ready, timeout=WAIT_MS) as blocker:
        win.open_paths(list(paths))
    qtbot.waitUntil(lambda: not win.busy, timeout=WAIT_MS)
    return blocker.args[0]


def _study_paths(folder: Path) -> list[str]:
    (study,) = discover(folder).studies
    return [r.path for r in study.images]


def _reference(tiny_bundle, paths):
    """The engine's own numbers for these files, computed without the viewer."""
    eng = Engine(tiny_bundle)
    preds = eng.predict([load_image(p).pixels for p in paths])
    return eng, preds, aggregate_study(preds, eng.thresholds)


# -- pure rendering ----------------------------------------------------------------------------
def test_render_functions_are_exact():
    x = np.array([[0.0, 0.5, 1.0], [-0.2, 0.25, 1.7]], dtype=np.float32)
    u8 = render.to_uint8(x)
    np.testing.assert_array_equal(u8, np.rint(np.clip(x, 0, 1) * 255).astype(np.uint8))
    np.testing.assert_array_equal(render.to_uint8(x, invert=True), 255 - u8)
    rgb = render.render_rgb(x)
    assert rgb.shape == (2, 3, 3) and rgb.dtype == np.uint8
    assert all(np.array_equal(rgb[..., k], u8) for k in range(3))
    # zero heat gets a faint tint of the scale's cold end (HEAT_FLOOR of the opacity), so the
    # opacity slider visibly acts on a negative image too; full heat at opacity 1 is the colormap
    lut = render.colormap_lut()
    a = 0.5 * render.HEAT_FLOOR
    want = np.rint(u8[..., None].astype(np.float32) * (1 - a) + lut[0].astype(np.float32) * a)
    np.testing.assert_array_equal(render.render_rgb(x, heat01=np.zeros_like(x)), want.astype(np.uint8))
    cold = np.zeros((64, 64), np.float32)
    gray = np.full((64, 64), 0.6, np.float32)
    low, high = (render.render_rgb(gray, heat01=cold, opacity=o).astype(int) for o in (0.1, 0.9))
    assert np.abs(high - low).mean() > 10  # the slider's ends look different
    full = render.blend_heatmap(u8, np.ones_like(x), opacity=1.0)
    assert (full == lut[255]).all()
    with pytest.raises(ValueError):
        render.blend_heatmap(u8, np.ones((5, 5), np.float32))
    # a drag right widens, a drag down raises the center; the width never drops below the minimum
    assert render.drag_window((100.0, 50.0), 60, 30, 600) == (130.0, 110.0)
    assert render.drag_window((100.0, 50.0), -6000, 0, 600)[1] == 1.0


def test_window_level_render_matches_loaded_image_display(phantom):
    path = _study_paths(phantom / "dicom" / "study_0004")[1]  # 16-bit MONOCHROME2
    img = load_image(path)
    (_, c, w), *_ = img.window_presets()
    narrow = (c, w / 4)
    got = render.render_rgb(img.display(narrow))
    np.testing.assert_array_equal(got[..., 0], render.to_uint8(img.display(narrow)))
    assert not np.array_equal(got, render.render_rgb(img.pixels))  # the window matters
    # the file's own window reproduces the decoded pixels
    np.testing.assert_array_equal(render.render_rgb(img.display((c, w))),
                                  render.render_rgb(img.pixels))


def test_wording_follows_the_card():
    assert render.task_word({"task": {"name": "abnormality"}}) == "abnormality"
    fracture_card = {"task": {"name": "fracture", "display_word": "fracture"}}
    assert render.task_word(fracture_card) == "fracture"
    assert render.verdict_text("suspicious", "abnormality") == "Suspicious for abnormality"
    assert render.verdict_text("likely", "fracture") == "Likely fracture"
    assert render.verdict_text("negative", "abnormality") == "Negative for abnormality"
    assert render.format_probability(0.12345) == "0.123"


# -- the window --------------------------------------------------------------------------------
def test_shown_probabilities_equal_the_engines_own(qtbot, win, phantom, tiny_bundle):
    folder = phantom / "dicom" / "study_0004"
    paths = _study_paths(folder)
    eng, preds, agg = _reference(tiny_bundle, paths)
    key = _open(qtbot, win, folder)

    assert key == win.current_key
    word = render.task_word(eng.bundle.card)
    assert win.study_prob_label.text() == f"{agg.probability:.3f}"
    assert win.verdict_label.text() == render.verdict_text(agg.verdict, word)
    assert win.body_part_label.text().startswith(agg.body_part)
    assert win.images_label.text() == f"{len(paths)} of {len(paths)}"
    assert win.operating_label.text() == render.operating_points_text(eng.thresholds)
    by_path = dict(zip(paths, preds, strict=True))
    assert len(win.current_outcome.images) == 3
    for k in range(3):
        assert win.current_index == k
        shown = win.current_image
        assert win.image_prob_label.text() == f"{by_path[shown.ref.path].probability:.3f}"
        assert win.image_counter.text().startswith(f"Image {k + 1} of 3")
        qtbot.keyClick(win, Qt.Key.Key_Right)  # arrow keys page through the study
    assert win.current_index == 2  # stops at the last image
    qtbot.keyClick(win, Qt.Key.Key_Left)
    assert win.current_index == 1


def test_drag_rewindows_through_loaded_image_display(qtbot, win, phantom):
    folder = phantom / "dicom" / "study_0004"
    _open(qtbot, win, folder)
    img = win.current_image.image
    before = win.current_rgb.copy()
    np.testing.assert_array_equal(before, render.render_rgb(img.pixels))
    start, span = win.start_window(), win.window_span()

    vp = win.view.viewport()
    qtbot.mousePress(vp, Qt.MouseButton.LeftButton, pos=QPoint(200, 200))
    qtbot.mouseMove(vp, QPoint(230, 215))
    qtbot.mouseMove(vp, QPoint(260, 230))
    qtbot.mouseRelease(vp, Qt.MouseButton.LeftButton, pos=QPoint(260, 230))

    expected = render.drag_window(start, 60, 30, span)
    assert win.current_window == pytest.approx(expected)
    want = render.render_rgb(img.display(win.current_window))
    np.testing.assert_array_equal(win.current_rgb, want)
    np.testing.assert_array_equal(qimage_to_rgb(win.view.pixmap_item.pixmap().toImage()), want)
    assert not np.array_equal(win.current_rgb, before)

    # a preset goes through the same call; Space returns to the file's own window
    idx = next(i for i in range(win.preset_combo.count()) if win.preset_combo.itemData(i))
    preset = win.preset_combo.itemData(idx)
    win.preset_combo.activated.emit(idx)
    np.testing.assert_array_equal(win.current_rgb, render.render_rgb(img.display(tuple(preset))))
    qtbot.keyClick(win, Qt.Key.Key_Space)
    assert win.current_window is None
    np.testing.assert_array_equal(win.current_rgb, before)


def test_invert_heatmap_and_zoom(qtbot, win, phantom, tiny_bundle):
    folder = phantom / "dicom" / "study_0002"
    _open(qtbot, win, folder)
    v = win.current_image
    plain = win.current_rgb.copy()

    qtbot.keyClick(win, Qt.Key.Key_I)
    assert win.invert_check.isChecked()
    np.testing.assert_array_equal(win.current_rgb, 255 - plain)
    qtbot.keyClick(win, Qt.Key.Key_I)
    np.testing.assert_array_equal(win.current_rgb, plain)

    # the heatmap is the engine's own, blended over the gray image
    _, preds, _ = _reference(tiny_bundle, [v.ref.path])
    np.testing.assert_allclose(v.heat, preds[0].heatmap(v.image.pixels.shape), atol=1e-5)
    qtbot.keyClick(win, Qt.Key.Key_A)
    assert win.heatmap_check.isChecked() and win.heatmap_action.isChecked()
    assert not np.array_equal(win.current_rgb, plain)
    gray = render.to_uint8(v.image.pixels)
    opacity = win.opacity_slider.value() / 100
    np.testing.assert_array_equal(win.current_rgb, render.blend_heatmap(gray, v.heat, opacity))
    shown = qimage_to_rgb(win.view.pixmap_item.pixmap().toImage())
    np.testing.assert_array_equal(shown, win.current_rgb)
    win.heatmap_check.click()  # the checkbox and the key are the same switch
    assert not win.heatmap_action.isChecked()
    np.testing.assert_array_equal(win.current_rgb, plain)

    z = win.view.zoom
    pos = QPointF(win.view.viewport().rect().center())
    ev = QWheelEvent(pos, win.view.viewport().mapToGlobal(pos), QPoint(0, 0), QPoint(0, 240),
                     Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier,
                     Qt.ScrollPhase.NoScrollPhase, False)
    QApplication.sendEvent(win.view.viewport(), ev)
    assert win.view.zoom == pytest.approx(z * 1.15**2, rel=1e-3)


def test_screenshot_shows_the_image(qtbot, win, phantom, tiny_bundle, tmp_path):
    folder = phantom / "dicom" / "study_0001"
    _open(qtbot, win, folder)
    qtbot.wait(50)
    out = win.save_screenshot(tmp_path / "win.png")
    png = np.asarray(Image.open(out).convert("RGB"))
    assert png.shape[:2] == (win.height(), win.width())
    tl = win.view.mapTo(win, QPoint(0, 0))
    region = png[tl.y(): tl.y() + win.view.height(), tl.x(): tl.x() + win.view.width()]
    assert region.size and region.std() > 10 and len(np.unique(region)) > 50

    # the command line does the same, waiting for the analysis before it grabs
    cli = tmp_path / "cli.png"
    rc = main([str(folder), "--model", str(tiny_bundle), "--screenshot", str(cli)])
    assert rc == 0 and cli.stat().st_size > 10_000
    big = np.asarray(Image.open(cli).convert("RGB"))
    h, w = big.shape[:2]
    centre = big[h // 3: 2 * h // 3, w // 3: 2 * w // 3]  # inside the image view
    assert centre.std() > 10


def test_corrupt_files_are_reported_not_fatal(qtbot, win, phantom, tiny_bundle, tmp_path):
    root = tmp_path / "mixed"
    study = root / "study"
    shutil.copytree(phantom / "dicom" / "study_0004", study)
    good = _study_paths(study)
    # a member of the study whose pixel data was cut off in transfer
    ds = pydicom.dcmread(good[0])
    ds.SOPInstanceUID = generate_uid()
    ds.InstanceNumber = 99
    ds.save_as(study / "cut.dcm", enforce_file_format=True)
    data = (study / "cut.dcm").read_bytes()
    (study / "cut.dcm").write_bytes(data[: len(data) // 2])
    # a file that says DICM and then is garbage, and a file that is no image at all
    rng = np.random.default_rng(0)
    (root / "broken.dcm").write_bytes(b"\0" * 128 + b"DICM" + rng.bytes(2000))
    (root / "notes.txt").write_text("not an image")

    messages: list[str] = []
    win.statusBar().messageChanged.connect(messages.append)
    _open(qtbot, win, root)
    assert any("skipped" in m and "notes.txt" in m for m in messages)
    assert len(win.studies) == 2
    # the first study is the broken file alone: no result, the reason on screen
    assert win.current_outcome.prediction is None
    assert "No result" in win.verdict_label.text()
    assert win.errors_label.isVisible() and "broken.dcm" in win.errors_label.text()
    assert "broken.dcm" in win.statusBar().currentMessage()
    assert win.current_rgb is None

    # the real study: the cut file is listed, the verdict rests on the three good images
    with qtbot.waitSignal(win.analysis_ready, timeout=WAIT_MS):
        win.study_list.setCurrentRow(1)
    _, _, agg = _reference(tiny_bundle, good)
    assert win.study_prob_label.text() == f"{agg.probability:.3f}"
    assert win.images_label.text() == "3 of 4"
    assert "cut.dcm" in win.errors_label.text() and win.errors_label.isVisible()
    assert "1 not decoded" in win.study_list.item(1).text()  # marked in the study list too
    win.load_model(tiny_bundle, "CPU")  # a model change drops the scores, not the mark
    qtbot.waitUntil(lambda: not win.busy, timeout=WAIT_MS)
    assert "1 not decoded" in win.study_list.item(1).text()
    assert "1 not decoded" in win.study_list.item(0).text()  # broken.dcm's study, not shown now
    assert "truncated" not in win.errors_label.text()  # the reason is shown with the image
    # the cut file belongs to the first image's series: paging walks series by series
    images = win.current_outcome.images
    cut = next(k for k, v in enumerate(images) if v.ref.path.endswith("cut.dcm"))
    assert images[cut].series == images[0].series and cut == 1
    for _ in range(cut):
        qtbot.keyClick(win, Qt.Key.Key_Right)
    assert win.current_image.ref.path.endswith("cut.dcm")
    assert win.current_rgb is None and not win.view.has_image
    assert "Cannot decode cut.dcm" in win.view._placeholder
    assert win.image_prob_label.text() == "—"


def test_disclaimer_and_abnormality_wording(qtbot, win, phantom, engine):
    assert engine.bundle.card["task"]["name"] == "abnormality"
    _open(qtbot, win, phantom / "dicom" / "study_0003")
    lab = win.disclaimer
    assert lab.isVisible() and "Research use only" in lab.text()
    assert "not for diagnostic use" in lab.text()
    assert lab.mapTo(win, QPoint(0, 0)).y() >= 0 and lab.height() > 10
    texts = [win.result_panel.title()] + [w.text() for w in win.result_panel.findChildren(QLabel)]
    joined = "\n".join(texts).lower()
    assert "abnormality" in joined
    assert "fracture" not in joined
    item = win.study_list.item(0).text().lower()
    assert "abnormality" in item and "fracture" not in item

    dlg = win.show_model_card()
    card = engine.bundle.card
    text = dlg.browser.toPlainText()
    for needle in (card["name"], card["version"], "Training data", "Validation data",
                   "Intended use", "Metrics", "not for diagnostic use"):
        assert needle.lower() in text.lower()
    dlg.close()


def test_no_model_shows_images_only(qtbot, phantom):
    w = ViewerWindow(None, model_error="card.json: missing")
    qtbot.addWidget(w)
    w.show()
    with qtbot.waitSignal(w.analysis_ready, timeout=WAIT_MS):
        w.open_paths([phantom / "dicom" / "study_0001"])
    assert w.current_rgb is not None
    assert "could not be loaded" in w.model_label.text()
    assert not w.card_button.isEnabled() and not w.heatmap_check.isEnabled()
    w.set_heatmap(True)
    assert not w.heatmap_check.isChecked()


def test_task_cancellation_skips_the_result(qtbot):
    pool = QThreadPool()
    gate = threading.Event()

    def slow(*, progress, cancelled):
        gate.wait(5)
        progress(1, 2, "half")
        if cancelled():
            from desktop.viewer.app import Cancelled

            raise Cancelled
        return 42

    results: list[object] = []
    task = Task("t", slow)
    task.signals.result.connect(lambda _t, r: results.append(r))
    with qtbot.waitSignal(task.signals.finished, timeout=WAIT_MS):
        pool.start(task)
        task.cancel()
        gate.set()
    assert results == []

    errors: list[str] = []
    bad = Task("b", lambda *, progress, cancelled: 1 / 0)
    bad.signals.errored.connect(lambda _t, m: errors.append(m))
    with qtbot.waitSignal(bad.signals.finished, timeout=WAIT_MS):
        pool.start(bad)
    assert errors and "ZeroDivisionError" in errors[0]
    pool.waitForDone()


def test_help_explains_every_option(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for action in build_parser()._actions:
        assert action.help
        for opt in action.option_strings:
            assert opt in out
    assert "not for diagnostic use" in " ".join(out.split())


def test_a_study_the_model_is_not_for_gets_no_verdict(qtbot, win, phantom, tmp_path):
    """Issue 15 §1: a chest film said "Likely abnormality · humerus"; now "Not indicated"."""
    folder = tmp_path / "chest"
    shutil.copytree(phantom / "dicom" / "study_0004", folder)
    for f in sorted(p for p in folder.iterdir() if p.is_file()):
        ds = pydicom.dcmread(f)
        ds.BodyPartExamined, ds.StudyDescription, ds.SeriesDescription = "CHEST", "THORAX", "PA"
        ds.save_as(f)
    _open(qtbot, win, folder)
    assert win.verdict_label.text() == "Not indicated"
    assert "CHEST" in win.verdict_label.toolTip()
    assert win.study_prob_label.text() == "—"
    assert win.current_outcome.prediction is None and "CHEST" in win.current_outcome.scope
    assert win.errors_label.isVisibleTo(win) and "Not indicated" in win.errors_label.text()
    assert "Not indicated" in win.study_list.item(0).text()


def test_the_model_box_shows_validated_performance_and_a_red_banner(qtbot, win, phantom):
    """The tiny test model is phantom-trained and at chance: 'Validation: passed' alone misled."""
    _open(qtbot, win, phantom / "dicom" / "study_0004")
    text = win.model_label.text()
    assert "NOT A CLINICALLY MEANINGFUL MODEL" in text and "phantom" in text
    assert "AUC" in text and "INT8 matches FP32" in text and "Indicated for" in text
    assert win.weak_banner.isVisibleTo(win) and "validation AUC" in win.weak_banner.text()
    assert "#b3261e" in win.weak_banner.styleSheet()


def test_the_heatmap_comes_with_its_colour_scale(qtbot, win, phantom):
    _open(qtbot, win, phantom / "dicom" / "study_0004")
    assert not win.ui.heat_legend.isVisibleTo(win)
    win.set_heatmap(True)
    assert win.ui.heat_legend.isVisibleTo(win) and not win.ui.heat_legend.pixmap().isNull()
    assert "sigmoid(CAM logit)" in win.ui.heat_legend.toolTip()
    win.set_heatmap(False)
    assert not win.ui.heat_legend.isVisibleTo(win)


def test_help_menu_has_about_and_shortcuts(qtbot, win, phantom):
    """Issue 15 §5: Help had only the model card."""
    _open(qtbot, win, phantom / "dicom" / "study_0004")
    menu = next(a.menu() for a in win.menuBar().actions() if a.text() == "&Help")
    assert [a.text() for a in menu.actions() if a.text()] == ["&Model card…", "&Keyboard shortcuts…",
                                                              "&About mura-viewer…"]
    about = win.show_about().browser.toPlainText()
    assert "not for diagnostic use" in about.lower() and "custom_cnn-abnormality" in about
    assert "NOT A CLINICALLY MEANINGFUL MODEL" in about and "Apache-2.0" in about
    keys = win.show_shortcuts().browser.toPlainText()
    assert "Heatmap overlay" in keys and "Next image" in keys and "Open folder" in keys


def test_first_launch_shows_nothing_it_cannot_do(qtbot, tiny_bundle):
    """Issue 15 §5: at first launch the badge said 'No model' next to a loaded model, the
    window combo 'Custom (dragged)', and Previous/Next were enabled with nothing open."""
    w = ViewerWindow()
    qtbot.addWidget(w)
    assert not w.ui.prev_button.isEnabled() and not w.ui.next_button.isEnabled()
    assert w.preset_combo.currentText() == "" and w.preset_combo.placeholderText() == "—"
    w.load_model(tiny_bundle, "CPU")
    qtbot.waitUntil(lambda: w.engine is not None, timeout=WAIT_MS)
    assert w.verdict_label.text() == "No study open"
