"""Atomic JSON files are strict JSON: any reader (a browser, jq, a PACS tool) can parse them."""

import json
import math

from models.fsutil import atomic_write_json


def test_undefined_figures_are_written_as_null_not_nan(tmp_path):
    # a body part with one class only has no AUC; Python's json would write the non-standard NaN
    obj = {"auc": float("nan"), "ci": [float("nan"), math.inf], "n": 7, "nested": [{"x": -math.inf, "y": 0.5}]}
    p = atomic_write_json(tmp_path / "m.json", obj)
    text = p.read_text()
    assert "NaN" not in text and "Infinity" not in text
    back = json.loads(text, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))
    assert back == {"auc": None, "ci": [None, None], "n": 7, "nested": [{"x": None, "y": 0.5}]}
