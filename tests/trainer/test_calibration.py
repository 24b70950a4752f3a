"""Platt calibration: fitted on internal validation, stored in the checkpoint, part of the export."""

from __future__ import annotations

import numpy as np
import pytest

from models.metrics import expected_calibration_error, roc_auc
from trainer.calibration import apply_platt, fit_platt


def _shifted(n=4000, seed=0):
    """Scores of a class-weighted model: right ranking, every logit pushed up by 1.5 and too steep."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.18).astype(int)
    z_true = rng.normal(0, 1, n) + 2.2 * y - 2.0
    p_model = 1 / (1 + np.exp(-(1.6 * z_true + 1.5)))
    return y, p_model


def test_platt_repairs_a_prior_shift_and_keeps_the_ranking():
    y, p = _shifted()
    slope, intercept = fit_platt(y, p)
    q = apply_platt(p, slope, intercept)
    assert expected_calibration_error(y, p) > 0.1
    assert expected_calibration_error(y, q) < 0.03
    assert roc_auc(y, q) == pytest.approx(roc_auc(y, p), abs=1e-12)


def test_identity_on_calibrated_scores():
    rng = np.random.default_rng(1)
    z = rng.normal(0, 1.5, 5000)
    y = (rng.random(5000) < 1 / (1 + np.exp(-z))).astype(int)
    slope, intercept = fit_platt(y, 1 / (1 + np.exp(-z)))
    assert slope == pytest.approx(1, abs=0.1) and intercept == pytest.approx(0, abs=0.1)


def test_nan_scores_stay_nan():
    assert np.isnan(apply_platt(np.array([np.nan, 0.5]), 1.0, 0.0)[0])


def test_the_engine_applies_the_cards_calibration(tiny_bundle, tmp_path):
    """The IR returns raw probabilities; the engine turns them into the card's calibrated ones."""
    import json
    import shutil

    from models.card import load_bundle, write_bundle
    from models.engine import Engine

    dst = tmp_path / "b"
    shutil.copytree(tiny_bundle, dst)
    card = json.loads((dst / "card.json").read_text())
    write_bundle(dst, {**card, "calibration": {"method": "none", "slope": 1.0, "intercept": 0.0}})
    x = np.random.default_rng(0).standard_normal((3, *card["input"]["shape"][1:])).astype(np.float32)
    raw = Engine(dst).infer(x)["fracture_prob"].astype(np.float64)
    write_bundle(dst, {**card, "calibration": {"method": "platt", "slope": 0.5, "intercept": -1.0}})
    e = Engine(load_bundle(dst))
    z = np.log(raw / (1 - raw))
    np.testing.assert_allclose(e.infer(x)["fracture_prob"], 1 / (1 + np.exp(-(0.5 * z - 1.0))), rtol=1e-5)
    runner = e.async_runner(1)
    runner.submit(x[0], None, "a")
    (_, pred), = runner.wait()
    assert pred.probability == pytest.approx(1 / (1 + np.exp(-(0.5 * z[0] - 1.0))), rel=1e-5)


def test_a_tiny_or_one_class_validation_split_is_left_uncalibrated_with_a_reason(capsys):
    """A smoke run (7 validation images) must not fail training; the card says why it is uncalibrated."""
    from models.datasources import Record
    from trainer.calibration import fit_calibration

    recs = [Record(f"{i}.png", int(i == 0), "hand", str(i), str(i)) for i in range(7)]
    cal = fit_calibration(recs, np.full(7, 0.5), enabled=True)
    assert cal["method"] == "none" and (cal["slope"], cal["intercept"]) == (1.0, 0.0)
    assert "7 scored images" in cal["reason"]
    one_class = [Record(f"{i}.png", 0, "hand", str(i), str(i)) for i in range(30)]
    assert "single class" in fit_calibration(one_class, np.linspace(0.1, 0.9, 30), enabled=True)["reason"]
    assert "uncalibrated" in capsys.readouterr().out
