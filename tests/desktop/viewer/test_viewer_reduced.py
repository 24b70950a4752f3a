"""The viewer scores from the reduced-resolution decode only for a model whose card validated it.

``validated_bundle`` is the tiny bundle with a card saying the check passed; ``tiny_bundle``'s
own card says it did not. Full decodes are held on an Event where the order matters, so the
tests see what comes first (the scores) without timing anything.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from pydicom.uid import generate_uid

import desktop.viewer.studies
from desktop.screening import render
from desktop.screening.discovery import discover
from desktop.viewer.app import ViewerWindow
from desktop.viewer.studies import analyse_study, score_outcome, scoring_side, study_series
from models.engine import Engine
from models.imageio import load_image
from models.reduction import CODECS, Reduction
from tests.conftest import load_bench

WAIT_MS = 60_000
GATE_S = 60
SIDE = 128  # twice the tiny model's 64 px input
BOTH = Reduction(SIDE, CODECS)  # what the validated card allows


@pytest.fixture(scope="module")
def j2k_study(tmp_path_factory) -> list[Path]:
    """Three 12-bit JPEG 2000 radiographs of one study, 320 x 280: a reduction by 2 keeps them
    >= 128 px, and the display preview (1024 px) never applies."""
    from models.synth import render_radiograph

    write = load_bench("viewer").write_j2k_dicom
    out = tmp_path_factory.mktemp("j2k_reduced")
    rng = np.random.default_rng(7)
    study, series = generate_uid(), generate_uid()
    return [write(render_radiograph(rng, "wrist", bool(k % 2), (320, 280)), out / f"IM{k}.dcm",
                  study=study, series=series, instance=k, BodyPartExamined="WRIST")
            for k in range(1, 4)]


def _study(files: list[Path]):
    (study,) = discover(files[0].parent).studies
    return study


def _paths(files: list[Path]) -> list[str]:
    return [r.path for r in study_series(_study(files))[0]]


def _probs(engine: Engine, paths: list[str], side: int | None) -> list[float]:
    px = [load_image(p, min_side=side).pixels if side else load_image(p).pixels for p in paths]
    return [p.probability for p in engine.predict(px)]


@pytest.fixture(scope="module")
def validated_engine(validated_bundle) -> Engine:
    return Engine(validated_bundle)


class HeldFullDecodes:
    """Stands in for ``load_image`` in the worker: reduced decodes go through, full ones wait
    for ``gate``."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.full: list[str] = []
        self.reduced: list[str] = []
        self._real = desktop.viewer.studies.load_image

    def __call__(self, path, **kw):
        if kw.get("min_side") is None:
            self.full.append(str(path))
            assert self.gate.wait(GATE_S), "the test never released the full decodes"
        else:
            self.reduced.append(str(path))
        return self._real(path, **kw)


@pytest.fixture
def held(monkeypatch):
    dec = HeldFullDecodes()
    monkeypatch.setattr(desktop.viewer.studies, "load_image", dec)
    yield dec
    dec.gate.set()


def test_the_study_is_decoded_and_scored_as_the_card_allows(j2k_study, engine, validated_engine):
    study, paths = _study(j2k_study), _paths(j2k_study)
    side = scoring_side(validated_engine)
    assert side == BOTH and scoring_side(engine) is None
    out = analyse_study(study, validated_engine, score_side=side)
    assert out.reduced_side == BOTH and all(v.preview for v in out.images)
    assert all(max(v.image.pixels.shape) == 160 for v in out.images)  # 320 px / 2
    assert [v.prediction.probability for v in out.images] == pytest.approx(
        _probs(validated_engine, paths, SIDE), abs=1e-6)
    exact = analyse_study(study, engine, score_side=scoring_side(engine))
    assert exact.reduced_side is None and not any(v.preview for v in exact.images)
    assert [v.prediction.probability for v in exact.images] == pytest.approx(
        _probs(engine, paths, None), abs=1e-6)
    # a model that did not validate the reduced decode never scores one: it decodes in full first
    rescored = score_outcome(out, engine)
    assert rescored.reduced_side is None and not any(v.preview for v in rescored.images)
    assert [v.prediction.probability for v in rescored.images] == pytest.approx(
        _probs(engine, paths, None), abs=1e-6)


def test_validated_model_shows_scores_before_the_full_images(qtbot, j2k_study, validated_engine,
                                                             held):
    paths = _paths(j2k_study)
    w = ViewerWindow(validated_engine)
    qtbot.addWidget(w)
    w.show()
    try:
        with qtbot.waitSignal(w.analysis_ready, timeout=WAIT_MS) as ready:
            w.open_paths([j2k_study[0].parent])
        key = ready.args[0]
        # the scores are on screen while every full decode is still held
        reduced = _probs(validated_engine, paths, SIDE)
        agg = float(np.mean(reduced))
        assert held.full in ([], [paths[0]]) and not held.gate.is_set()
        assert w.study_prob_label.text() == f"{agg:.3f}"
        assert w.image_prob_label.text() == f"{reduced[0]:.3f}"
        assert all(v.preview for v in w.outcomes[key].images) and w.current_image.preview
        assert "preview" in w.thumb_strip.item(0).toolTip() and w.busy

        held.gate.set()
        qtbot.waitUntil(lambda: not w.busy, timeout=WAIT_MS)
        out = w.outcomes[key]
        assert not any(v.preview for v in out.images) and out.scored_by is validated_engine
        full = load_image(paths[0]).pixels
        np.testing.assert_array_equal(w.current_rgb, render.render_rgb(full))
        # the scores stay those of the validated decode; heatmaps at full size
        assert [v.prediction.probability for v in out.images] == pytest.approx(reduced, abs=1e-6)
        assert w.study_prob_label.text() == f"{agg:.3f}"
        # and the panel says so: the scores did not come from the full images now shown
        assert w.images_label.text() == "3 of 3 · from a reduced decode"
        assert "JPEG 2000" in w.images_label.toolTip() and "validated" in w.images_label.toolTip()
        assert out.images[0].heat_cache is not None and out.images[0].heat_cache.shape == full.shape
        assert sorted(held.full) == sorted(paths) and sorted(held.reduced) == sorted(paths)
    finally:
        held.gate.set()
        w.shutdown()


def test_unvalidated_model_decodes_in_full_before_scoring(qtbot, win, j2k_study, engine, held):
    paths = _paths(j2k_study)
    held.gate.set()  # nothing to hold: the scores need the full decodes
    with qtbot.waitSignal(win.analysis_ready, timeout=WAIT_MS) as ready:
        win.open_paths([j2k_study[0].parent])
    qtbot.waitUntil(lambda: not win.busy, timeout=WAIT_MS)
    out = win.outcomes[ready.args[0]]
    assert held.reduced == [] and sorted(held.full) == sorted(paths)
    assert out.reduced_side is None and not any(v.preview for v in out.images)
    assert win.study_prob_label.text() == f"{float(np.mean(_probs(engine, paths, None))):.3f}"
    assert win.images_label.text() == "3 of 3" and win.images_label.toolTip() == ""


def test_only_the_codecs_a_card_validated_are_decoded_reduced(j2k_study, engine, validated_engine):
    """A card that validated baseline JPEG alone leaves a JPEG 2000 study to the exact decode; one
    that validated JPEG 2000 reduces it, and a model validated for another set of codecs does not
    score those stand-ins but decodes them in full first."""
    study, paths = _study(j2k_study), _paths(j2k_study)
    jpeg_only = analyse_study(study, None, score_side=Reduction(SIDE, frozenset({"jpeg"})))
    assert jpeg_only.reduced_side is None and not any(v.preview for v in jpeg_only.images)
    assert all(max(v.image.pixels.shape) == 320 for v in jpeg_only.images)
    j2k = Reduction(SIDE, frozenset({"jpeg2000"}))
    out = analyse_study(study, None, score_side=j2k)
    assert out.reduced_side == j2k and all(v.preview for v in out.images)
    assert all(max(v.image.pixels.shape) == 160 for v in out.images)
    # the validated engine's card allows both codecs, not this decode's set: decoded again in full
    rescored = score_outcome(out, validated_engine)
    assert rescored.reduced_side is None and not any(v.preview for v in rescored.images)
    assert [v.prediction.probability for v in rescored.images] == pytest.approx(
        _probs(validated_engine, paths, None), abs=1e-6)


def test_a_loading_validated_model_gets_the_reduced_decode_first(qtbot, j2k_study, validated_bundle,
                                                                 validated_engine, held, bare_win):
    """Cold start: the study is decoded as the loading model's card allows, its scores come as
    soon as the model is ready, and only then the full images."""
    paths = _paths(j2k_study)
    model_gate = threading.Event()

    def slow_engine(path, device):
        assert model_gate.wait(GATE_S)
        return Engine(path, device=device)

    w = bare_win
    try:
        w.load_model(validated_bundle, "CPU", factory=slow_engine)
        with qtbot.waitSignal(w.first_image_shown, timeout=WAIT_MS) as first:
            w.open_paths([j2k_study[0].parent])
        key = first.args[0]
        qtbot.waitUntil(lambda: key in w.outcomes, timeout=WAIT_MS)
        out = w.outcomes[key]
        assert w.engine is None and out.scored_by is None and out.reduced_side == BOTH
        assert held.full == []  # the full images wait for the scores
        with qtbot.waitSignal(w.analysis_ready, timeout=WAIT_MS):
            model_gate.set()
        assert w.study_prob_label.text() == f"{float(np.mean(_probs(validated_engine, paths, SIDE))):.3f}"
        held.gate.set()
        qtbot.waitUntil(lambda: not w.busy, timeout=WAIT_MS)
        assert not any(v.preview for v in w.outcomes[key].images)
    finally:
        model_gate.set()
        held.gate.set()
