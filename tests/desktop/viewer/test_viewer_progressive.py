"""The viewer shows a study while it is being decoded and never waits on what it does not need.

Deterministic, never timed: the decoder (or the model load) is held on an Event until the test
has seen what must come first. Scores are checked against an Engine the test builds itself.
"""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid
from PySide6.QtCore import QPointF, Qt

import desktop.viewer.studies
from desktop.screening import render
from desktop.screening.discovery import discover
from desktop.viewer.app import ViewerWindow
from desktop.viewer.studies import DecodedImage, StudyOutcome, analyse_study, study_series
from models.engine import Engine, aggregate_study
from models.errors import BundleError
from models.imageio import load_image
from tests.conftest import load_bench

WAIT_MS = 60_000
GATE_S = 60


def _study(folder: Path):
    (study,) = discover(folder).studies
    return study


def _reference(engine: Engine, paths: list[str]):
    preds = engine.predict([load_image(p).pixels for p in paths])
    return dict(zip(paths, preds, strict=True)), aggregate_study(preds, engine.thresholds)


class GatedDecoder:
    """Stands in for ``load_image`` in the worker: counts calls, and holds every image but the
    ``free`` ones until ``gate`` is set."""

    def __init__(self, free: set[str]) -> None:
        self.free = free
        self.gate = threading.Event()
        self.calls: list[str] = []
        self._real = desktop.viewer.studies.load_image

    def __call__(self, path, **kw):
        self.calls.append(str(path))
        if str(path) not in self.free:
            assert self.gate.wait(GATE_S), "the test never released the decoder"
        return self._real(path, **kw)


@pytest.fixture
def gated(monkeypatch):
    made: list[GatedDecoder] = []

    def make(free: set[str]) -> GatedDecoder:
        dec = GatedDecoder(free)
        monkeypatch.setattr(desktop.viewer.studies, "load_image", dec)
        made.append(dec)
        return dec

    yield make
    for dec in made:  # never leave a worker blocked, whatever the test did
        dec.gate.set()


def test_first_image_is_shown_before_the_rest_is_decoded(qtbot, win, phantom, engine, gated):
    folder = phantom / "dicom" / "study_0004"
    refs, _series, _idx = study_series(_study(folder))
    paths = [r.path for r in refs]
    assert len(paths) == 3
    dec = gated({paths[0]})
    ready: list[str] = []
    win.analysis_ready.connect(ready.append)

    with qtbot.waitSignal(win.first_image_shown, timeout=WAIT_MS) as first:
        win.open_paths([folder])
    key = first.args[0]
    # image 1 is on screen while images 2 and 3 are still held in the decoder
    assert not dec.gate.is_set() and ready == [] and win.decoding
    assert key == win.current_key and key not in win.outcomes
    assert win.view.has_image and win.current_index == 0
    np.testing.assert_array_equal(win.current_rgb,
                                  render.render_rgb(load_image(paths[0]).pixels))
    assert win.study_prob_label.text() == "—" and win.image_prob_label.text() == "—"
    strip = win.thumb_strip
    assert strip.isVisible() and strip.count() == 3
    assert "decoding" not in strip.item(0).toolTip()
    assert all("decoding" in strip.item(k).toolTip() for k in (1, 2))
    assert win.current_outcome.images[0].thumb is not None
    assert all(v.pending for v in win.current_outcome.images[1:])
    # paging onto an image that is not decoded yet says so; it appears once decoded
    qtbot.keyClick(win, Qt.Key.Key_Right)
    assert win.current_index == 1 and not win.view.has_image and win.current_rgb is None

    with qtbot.waitSignal(win.analysis_ready, timeout=WAIT_MS):
        dec.gate.set()
    qtbot.waitUntil(lambda: not win.busy, timeout=WAIT_MS)
    assert ready == [key] and not win.decoding
    # the reader stayed on image 2: it is shown, with its score, and the study's numbers are
    # the engine's own for the three images
    by_path, agg = _reference(engine, paths)
    assert win.current_index == 1 and win.current_image.ref.path == paths[1]
    np.testing.assert_array_equal(win.current_rgb,
                                  render.render_rgb(load_image(paths[1]).pixels))
    assert win.image_prob_label.text() == f"{by_path[paths[1]].probability:.3f}"
    assert win.study_prob_label.text() == f"{agg.probability:.3f}"
    assert win.verdict_label.text() == render.verdict_text(agg.verdict, win.word)
    assert all("decoding" not in strip.item(k).toolTip() for k in range(3))
    assert sorted(dec.calls) == sorted(paths)  # each image decoded once


def test_analyse_study_reports_each_image_then_scores_them_in_one_batch(phantom, engine):
    study = _study(phantom / "dicom" / "study_0004")
    got: list[object] = []
    batches: list[int] = []

    class Counting:
        thresholds = engine.thresholds

        def predict(self, images):
            batches.append(len(images))
            return engine.predict(images)

    out = analyse_study(study, Counting(), partial=got.append)
    layout, *decoded = got
    assert isinstance(layout, StudyOutcome) and all(v.pending for v in layout.images)
    assert [d.index for d in decoded] == [0, 1, 2]
    assert all(isinstance(d, DecodedImage) and d.key == study.key for d in decoded)
    # what was handed out is what the outcome holds (pixels shared, never re-decoded)
    assert [d.view.image for d in decoded] == [v.image for v in out.images]
    assert all(v.pending for v in layout.images)  # handed-out objects are never changed
    assert batches == [3]
    _, agg = _reference(engine, [v.ref.path for v in out.images])
    assert out.prediction.probability == pytest.approx(agg.probability, abs=1e-6)


@pytest.mark.parametrize("engine_first", [False, True])
def test_model_loads_in_the_background_then_the_study_is_scored(qtbot, phantom, tiny_bundle,
                                                                engine, gated, engine_first,
                                                                bare_win):
    """Study decoded before the model is ready, and model ready before the study is decoded:
    either way each image is decoded once and the scores shown are the engine's."""
    folder = phantom / "dicom" / "study_0002"
    paths = [r.path for r in study_series(_study(folder))[0]]
    dec = gated({paths[0]} if engine_first else set(paths))
    model_gate = threading.Event()
    loads: list[str] = []

    def slow_engine(path, device):
        loads.append(device)
        if not engine_first:
            assert model_gate.wait(GATE_S)
        return Engine(path, device=device)

    w = bare_win
    try:
        w.load_model(tiny_bundle, "CPU", factory=slow_engine)
        assert w.model_loading and "Loading" in w.model_label.text() and w.engine is None
        ready: list[str] = []
        w.analysis_ready.connect(ready.append)
        with qtbot.waitSignal(w.first_image_shown, timeout=WAIT_MS) as first:
            w.open_paths([folder])
        key = first.args[0]
        assert w.view.has_image
        if engine_first:
            # the model gets ready while the study's other images are still held
            qtbot.waitUntil(lambda: w.engine is not None, timeout=WAIT_MS)
            assert key not in w.outcomes
            with qtbot.waitSignal(w.analysis_ready, timeout=WAIT_MS):
                dec.gate.set()
        else:
            qtbot.waitUntil(lambda: key in w.outcomes, timeout=WAIT_MS)
            assert w.outcomes[key].scored_by is None and w.engine is None
            assert w.verdict_label.text() == "Model loading…" and ready == []
            assert w.study_prob_label.text() == "—" and w.busy  # the model is still loading
            with qtbot.waitSignal(w.engine_changed, timeout=WAIT_MS), \
                    qtbot.waitSignal(w.analysis_ready, timeout=WAIT_MS):
                model_gate.set()
        qtbot.waitUntil(lambda: not w.busy, timeout=WAIT_MS)
        assert loads == ["CPU"] and not w.model_loading and not w.model_error
        assert w.outcomes[key].scored_by is w.engine
        _, agg = _reference(engine, paths)
        assert w.study_prob_label.text() == f"{agg.probability:.3f}"
        assert w.images_label.text() == f"{len(paths)} of {len(paths)}"
        assert sorted(dec.calls) == sorted(paths)  # no image decoded twice
    finally:
        model_gate.set()
        dec.gate.set()


def test_a_model_that_fails_to_load_leaves_the_images_viewable(qtbot, phantom):
    def broken(path, device):
        raise BundleError(f"{path}: card.json is missing")

    w = ViewerWindow(None)
    qtbot.addWidget(w)
    w.show()
    try:
        with qtbot.waitSignal(w.engine_changed, timeout=WAIT_MS):
            w.load_model("/nowhere/bundle", "CPU", factory=broken)
        assert w.engine is None and "card.json is missing" in w.model_error
        assert "could not be loaded" in w.model_label.text()
        with qtbot.waitSignal(w.analysis_ready, timeout=WAIT_MS):
            w.open_paths([phantom / "dicom" / "study_0001"])
        assert w.current_rgb is not None and w.verdict_label.text() == "No model"
    finally:
        w.shutdown()


def _two_series_study(src: Path, out: Path) -> list[Path]:
    """study_0004's three images re-filed as two series, numbered so that sorting by instance
    alone would interleave them: series 2 holds instances 1 and 3, series 1 instance 2."""
    out.mkdir(parents=True)
    files = sorted(src.iterdir())
    assert len(files) == 3
    uid_a, uid_b = generate_uid(), generate_uid()
    written = []
    for k, p in enumerate(files, start=1):
        ds = pydicom.dcmread(p)
        in_b = k == 2
        ds.SeriesInstanceUID = uid_b if in_b else uid_a
        ds.SeriesNumber = 1 if in_b else 2
        ds.SeriesDescription = "PA" if in_b else "LATERAL"
        ds.InstanceNumber = k
        q = out / f"im{k}.dcm"
        ds.save_as(q, enforce_file_format=True)
        written.append(q)
    return written


def test_thumbnails_are_grouped_by_series(qtbot, win, phantom, tmp_path):
    files = _two_series_study(phantom / "dicom" / "study_0004", tmp_path / "two_series")
    study = _study(tmp_path / "two_series")
    refs, series, idx = study_series(study)
    # Qt-free grouping: series 1 first, then series 2's images in instance order
    assert [Path(r.path).name for r in refs] == ["im2.dcm", "im1.dcm", "im3.dcm"]
    assert [(s.number, s.description, s.count) for s in series] == [(1, "PA", 1),
                                                                      (2, "LATERAL", 2)]
    assert idx == [0, 1, 1]
    modality = pydicom.dcmread(files[0]).Modality
    assert series[1].label == f"Series 2 · LATERAL · {modality} · 2 images"

    with qtbot.waitSignal(win.analysis_ready, timeout=WAIT_MS):
        win.open_paths([tmp_path / "two_series"])
    qtbot.waitUntil(lambda: not win.busy, timeout=WAIT_MS)
    bar, strip = win.series_bar, win.thumb_strip
    assert bar.isVisible() and strip.count() == 3
    assert bar.groups == [(series[0].label, 0, 1), (series[1].label, 1, 2)]
    a, b = bar.group_rects()
    assert a.width() > 0 and b.width() > a.width() and a.right() < b.left()
    # paging walks the images in strip order, one series after the other
    names = []
    for _ in range(3):
        names.append(win.current_image.name)
        assert strip.currentRow() == win.current_index
        assert win.current_outcome.series[win.current_image.series].label \
            in win.image_counter.text()
        qtbot.keyClick(win, Qt.Key.Key_Right)
    assert names == ["im2.dcm", "im1.dcm", "im3.dcm"]


def test_plain_images_of_a_mura_study_folder_are_one_series(qtbot, win, phantom, tmp_path):
    src = next(p for p in sorted((phantom / "external").rglob("*")) if p.is_dir()
               and any(f.suffix.lower() in (".png", ".jpg", ".jpeg") for f in p.iterdir()))
    folder = tmp_path / "patient00001" / "study1_positive"  # MURA's layout: the folder is the study
    folder.mkdir(parents=True)
    for f in sorted(src.iterdir())[:3]:
        shutil.copy(f, folder / f.name)
    n = len(list(folder.iterdir()))
    (_refs, series, idx) = study_series(_study(folder))
    assert len(series) == 1 and series[0].count == n and idx == [0] * n
    assert series[0].label == f"Images · {n} image{'s' * (n != 1)}"
    with qtbot.waitSignal(win.analysis_ready, timeout=WAIT_MS):
        win.open_paths([folder])
    qtbot.waitUntil(lambda: not win.busy, timeout=WAIT_MS)
    assert win.series_bar.groups == [(series[0].label, 0, n)]
    assert win.thumb_strip.count() == n


def test_task_waits_for_its_partial_result_to_be_taken(qtbot):
    """The worker does not go on until the UI has handled a partial result (decoders hold the
    GIL, so otherwise the UI could not show image 1 before image 2 is decoded)."""
    from PySide6.QtCore import QThreadPool

    from desktop.viewer.tasks import Task

    steps: list[str] = []

    def work(*, progress, cancelled, partial):
        steps.append("decoded 1")
        partial("image 1")
        steps.append("decoding 2")
        return len(steps)

    task = Task("t", work, partial=True, partial_wait_s=GATE_S)
    seen: list[tuple[str, list[str]]] = []

    def on_partial(_tag: str, obj: object) -> None:
        seen.append((str(obj), list(steps)))  # the worker is still parked here
        task.partial_taken()

    task.signals.partial.connect(on_partial)
    results: list[object] = []
    task.signals.result.connect(lambda _t, r: results.append(r))
    pool = QThreadPool()
    with qtbot.waitSignal(task.signals.finished, timeout=WAIT_MS):
        pool.start(task)
    pool.waitForDone()
    assert seen == [("image 1", ["decoded 1"])] and results == [2]


def _j2k_study(src: Path, out: Path) -> list[Path]:
    """Two 12-bit JPEG 2000 lossless radiographs of one study, made from phantom pixels."""
    write = load_bench("viewer").write_j2k_dicom
    out.mkdir(parents=True)
    study, series = generate_uid(), generate_uid()
    return [write(load_image(p).pixels, out / f"IM{k}.dcm", study=study, series=series, instance=k)
            for k, p in enumerate(sorted(src.iterdir())[:2], start=1)]


def test_a_large_jpeg2000_image_is_previewed_then_shown_in_full(qtbot, win, phantom, engine,
                                                                 gated, tmp_path):
    files = _j2k_study(phantom / "dicom" / "study_0004", tmp_path / "j2k")
    full = [load_image(p) for p in files]
    side = max(full[0].pixels.shape) // 2  # a reduction by 2 is the most this size allows
    win.preview_side = side
    dec = gated(set())  # every full decode waits: only the preview can reach the screen
    with qtbot.waitSignal(win.first_image_shown, timeout=WAIT_MS):
        win.open_paths([tmp_path / "j2k"])
    v = win.current_image
    assert v.preview and dec.calls in ([], [str(files[0])])
    h, w = full[0].pixels.shape
    assert v.image.pixels.shape == (-(-h // 2), -(-w // 2)) and win.current_rgb.shape[:2] == \
        v.image.pixels.shape
    assert "preview" in win.thumb_strip.item(0).toolTip()
    assert win.current_outcome.images[0].preview and win.study_prob_label.text() == "—"

    with qtbot.waitSignal(win.analysis_ready, timeout=WAIT_MS):
        dec.gate.set()
    qtbot.waitUntil(lambda: not win.busy, timeout=WAIT_MS)
    # the full decode replaced it; only full decodes were scored
    assert not any(x.preview for x in win.current_outcome.images)
    np.testing.assert_array_equal(win.current_rgb, render.render_rgb(full[0].pixels))
    _, agg = _reference(engine, [str(p) for p in files])
    assert win.study_prob_label.text() == f"{agg.probability:.3f}"
    assert "preview" not in win.thumb_strip.item(0).toolTip()


def _seen(view) -> tuple[float, float, float, float]:
    """The part of the picture in view: left, top, right, bottom as fractions of its size."""
    r = view.mapToScene(view.viewport().rect()).boundingRect()
    s = view.sceneRect()
    return (r.left() / s.width(), r.top() / s.height(), r.right() / s.width(),
            r.bottom() / s.height())


def test_the_readers_view_of_the_preview_survives_the_full_image(qtbot, win, phantom, gated,
                                                                 tmp_path):
    """What the reader set on the preview while the full decode ran stays when it arrives: the
    custom window, invert and turn, and the same part of the picture in view (the zoom scaled
    by the resolution ratio), now drawn from the full-resolution pixels."""
    files = _j2k_study(phantom / "dicom" / "study_0004", tmp_path / "j2k")
    full = load_image(files[0])
    win.preview_side = max(full.pixels.shape) // 2
    dec = gated(set())  # the full decodes wait until the reader has set the view
    with qtbot.waitSignal(win.first_image_shown, timeout=WAIT_MS):
        win.open_paths([tmp_path / "j2k"])
    assert win.current_image.preview
    win.view.window_dragged.emit(25.0, -15.0)  # a left-drag: a custom window
    window = win.current_window
    assert window is not None and win.preset_combo.currentIndex() == -1
    win.set_invert(True)
    win.rotate(1)
    win.view.zoom_by(3.0)
    preview_side = win.view.sceneRect().width()  # of the turned preview
    win.view.centerOn(QPointF(0.4 * preview_side, 0.55 * win.view.sceneRect().height()))
    zoom, seen = win.view.zoom, _seen(win.view)
    assert 0 < seen[0] < seen[2] < 1 and 0 < seen[1] < seen[3] < 1  # zoomed into the picture

    with qtbot.waitSignal(win.analysis_ready, timeout=WAIT_MS):
        dec.gate.set()
    qtbot.waitUntil(lambda: not win.busy, timeout=WAIT_MS)
    assert not win.current_image.preview and win.current_index == 0
    assert win.current_window == window and win.preset_combo.currentIndex() == -1
    assert win.invert_check.isChecked() and win.orientation == render.Orientation().rotated(1)
    full_side = win.view.sceneRect().width()
    assert full_side > preview_side
    assert win.view.zoom == pytest.approx(zoom * preview_side / full_side, rel=1e-6)
    assert _seen(win.view) == pytest.approx(seen, abs=0.01)
    expected = render.Orientation().rotated(1).apply(
        render.render_rgb(full.display(window), invert=True))
    np.testing.assert_array_equal(win.current_rgb, expected)
    assert "preview" not in win.view._overlay["bottom_left"]


def test_the_readers_view_survives_a_model_that_arrives_later(qtbot, phantom, tiny_bundle,
                                                              engine, bare_win):
    """A study decoded while the model was still loading is scored when the model arrives,
    without resetting what the reader set meanwhile (window, invert, turn, zoom, position)."""
    folder = phantom / "dicom" / "study_0004"
    model_gate = threading.Event()

    def slow_engine(path, device):
        assert model_gate.wait(GATE_S)
        return Engine(path, device=device)

    w = bare_win
    try:
        w.load_model(tiny_bundle, "CPU", factory=slow_engine)
        with qtbot.waitSignal(w.first_image_shown, timeout=WAIT_MS) as first:
            w.open_paths([folder])
        key = first.args[0]
        qtbot.waitUntil(lambda: key in w.outcomes, timeout=WAIT_MS)
        assert w.engine is None and w.outcomes[key].scored_by is None
        w.next_image()
        w.view.window_dragged.emit(30.0, 10.0)
        window = w.current_window
        assert window is not None
        w.set_invert(True)
        w.rotate(-1)
        w.view.zoom_by(2.0)
        zoom, seen = w.view.zoom, _seen(w.view)
        with qtbot.waitSignal(w.analysis_ready, timeout=WAIT_MS):
            model_gate.set()
        qtbot.waitUntil(lambda: not w.busy, timeout=WAIT_MS)
        assert w.engine is not None and w.outcomes[key].scored_by is w.engine
        assert w.study_prob_label.text() != "—"  # the scores are shown
        assert w.current_index == 1 and w.current_window == window
        assert w.invert_check.isChecked() and w.orientation == render.Orientation().rotated(-1)
        # same zoom and the same part of the picture (the result panel's new text may resize
        # the canvas by a few pixels: the edges move, the centre stays)
        assert w.view.zoom == pytest.approx(zoom) and _seen(w.view) == pytest.approx(seen, abs=0.01)
        now = _seen(w.view)
        assert (now[0] + now[2]) / 2 == pytest.approx((seen[0] + seen[2]) / 2, abs=1e-3)
        assert (now[1] + now[3]) / 2 == pytest.approx((seen[1] + seen[3]) / 2, abs=1e-3)
        img = w.current_image.image
        expected = render.Orientation().rotated(-1).apply(
            render.render_rgb(img.display(window), invert=True))
        np.testing.assert_array_equal(w.current_rgb, expected)
    finally:
        model_gate.set()


def test_a_start_up_model_load_waits_for_the_first_image(qtbot, phantom, tiny_bundle,
                                                         engine, tmp_path):
    """``after_first_image``: the compile starts once the first image is on screen (it would
    compete with that decode for the cores); the model shows as loading meanwhile, and an
    opening that finds no image starts it too."""
    events: list[str] = []

    def recording_engine(path, device):
        events.append("model load")
        return Engine(path, device=device)

    w = ViewerWindow(None)
    qtbot.addWidget(w)
    w.show()
    w.first_image_shown.connect(lambda _key: events.append("first image"))
    try:
        assert w.load_model(tiny_bundle, "CPU", factory=recording_engine,
                            after_first_image=True) is None
        assert w.model_loading and w.busy and "Loading" in w.model_label.text()
        with qtbot.waitSignal(w.analysis_ready, timeout=WAIT_MS):
            w.open_paths([phantom / "dicom" / "study_0004"])
        qtbot.waitUntil(lambda: not w.busy, timeout=WAIT_MS)
        assert events[:2] == ["first image", "model load"] and w.engine is not None
        assert w.outcomes[w.current_key].scored_by is w.engine
    finally:
        w.shutdown()

    empty = tmp_path / "empty"
    empty.mkdir()
    events.clear()
    w2 = ViewerWindow(None)
    qtbot.addWidget(w2)
    w2.show()
    try:
        w2.load_model(tiny_bundle, "CPU", factory=recording_engine, after_first_image=True)
        with qtbot.waitSignal(w2.engine_changed, timeout=WAIT_MS):
            w2.open_paths([empty])
        assert events == ["model load"] and w2.engine is not None and not w2.model_error
    finally:
        w2.shutdown()
