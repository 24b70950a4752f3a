"""compress.indications: the card's confidence threshold is fitted where it means something."""

from __future__ import annotations

import json

import numpy as np

from compress.evalset import EvalSet
from compress.indications import MIN_HEAD_ACCURACY, REFUSE_RATE, fit_indications
from models.datasources import Record

PARTS = ["hand", "leg"]


class FakeEngine:
    """Returns the body-part probabilities it was given, in order (the head under test)."""

    body_parts = PARTS

    def __init__(self, probs: np.ndarray) -> None:
        self.probs, self.i = probs, 0

    def infer(self, batch):
        out = self.probs[self.i : self.i + len(batch)]
        self.i += len(batch)
        return {"body_part_prob": out}


def _set(labels: list[str]) -> EvalSet:
    recs = [Record(f"{k}.png", 0, b, str(k), str(k)) for k, b in enumerate(labels)]
    return EvalSet("internal val", "fracture", recs, np.zeros((len(recs), 1, 8, 8), np.float32))


def test_threshold_is_the_refuse_rate_quantile_of_a_good_head():
    rng = np.random.default_rng(0)
    top = rng.uniform(0.6, 1.0, 400)
    probs = np.stack([top, 1 - top], axis=1)  # always "hand", as labelled
    ind = fit_indications({"body_parts": PARTS, "provenance": {}}, FakeEngine(probs), [_set(["hand"] * 400)],
                          "fracatlas:x")
    assert ind["body_part_accuracy"] == 1.0
    assert ind["min_body_part_confidence"] == float(np.quantile(top, REFUSE_RATE))
    assert ind["refused_by_confidence"]["internal val"]["fraction"] <= 0.02
    assert ind["views"] == ["frontal", "lateral", "oblique"] and "wrist" in ind["regions"]
    json.dumps(ind)  # goes into the card as is


def test_no_threshold_from_a_head_that_cannot_tell_body_parts_apart():
    """A near-random head would refuse in-scope images at random: the check stays off."""
    probs = np.tile([0.55, 0.45], (100, 1))  # says "hand" for every image, half are legs
    ind = fit_indications({"body_parts": PARTS, "provenance": {}}, FakeEngine(probs),
                          [_set(["hand", "leg"] * 50)], "mura:x")
    assert "min_body_part_confidence" not in ind
    assert ind["body_part_accuracy"] == 0.5 < MIN_HEAD_ACCURACY and ind["confidence_check"].startswith("off")


def test_a_phantom_model_says_so_in_its_indications():
    card = {"body_parts": PARTS, "provenance": {"training_data": {"dataset": "phantom mura-v1.1/train"}}}
    ind = fit_indications(card, FakeEngine(np.zeros((0, 2))), [], "mura:x")
    assert ind["views"] == ["phantom"] and "phantom" in ind["age"]
