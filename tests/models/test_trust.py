"""models.trust: the model's validated performance beside every verdict, and a red banner when
the model is not a clinically meaningful one (issue 15 §2)."""

from __future__ import annotations

import json

from models.reference import reference_dir
from models.trust import AUC_FLOOR, model_warnings, performance_lines


def _card(auc: float = 0.9, suspicious: float = 0.2, likely: float = 0.6, training: str = "fracatlas (train part)",
          verdict: str = "passed") -> dict:
    return {"thresholds": {"suspicious": suspicious, "likely": likely},
            "provenance": {"training_data": {"dataset": training}, "validation_data": {"dataset": "fracatlas (internal val)"}},
            "validation": {"verdict": verdict},
            "metrics": {"gate:x": {"study_auc": 0.99},
                        "internal_validation": {"study_auc": auc, "study_auc_ci95": [auc - 0.05, auc + 0.04],
                                                "n_studies": 494, "operating_points": {
                                                    "suspicious": {"threshold": suspicious, "sensitivity": 0.9, "specificity": 0.5},
                                                    "likely": {"threshold": likely, "sensitivity": 0.6, "specificity": 0.95}}}}}


def test_a_good_model_has_no_warning_and_says_how_good_it_is():
    assert model_warnings(_card()) == []
    lines = performance_lines(_card())
    assert lines[0] == "AUC 0.90 (95 % CI 0.85–0.94) on fracatlas (internal val), 494 studies"
    assert "sensitivity 0.90, specificity 0.50" in lines[1] and "sensitivity 0.60, specificity 0.95" in lines[2]
    assert lines[-1] == "INT8 matches FP32 (gate passed)"  # said separately from the truth


def test_the_gate_is_not_taken_for_the_truth():
    """A chance-level model passes the INT8 gate: it must still be flagged."""
    w = model_warnings(_card(auc=0.54, suspicious=0.467, likely=0.468))
    assert any(f"below {AUC_FLOOR:.2f}" in x for x in w) and any("not distinct" in x for x in w)
    assert "INT8 matches FP32 (gate passed)" in performance_lines(_card(auc=0.54))


def test_phantom_and_unvalidated_models_are_flagged():
    assert any("phantom" in x for x in model_warnings(_card(training="phantom mura-v1.1/train")))
    bare = {"thresholds": {"suspicious": 0.2, "likely": 0.6}, "metrics": {"gate:x": {"study_auc": 0.9}}}
    assert model_warnings(bare) == ["the card has no validated AUC against the truth"]
    assert performance_lines(bare)[0] == "Validated performance: none recorded in the card"


def test_the_shipped_reference_model_is_not_flagged():
    card = json.loads((reference_dir() / "card.json").read_text())
    assert model_warnings(card) == []
    assert performance_lines(card)[0].startswith("AUC 0.88 (95 % CI 0.84–0.93) on fracatlas (internal val)")
    assert card["licences"]["weights"].startswith("Apache-2.0")  # ImageNet-initialised, via stage 1
    assert card["indications"]["min_body_part_confidence"] > 0.5
