import numpy as np
import pytest

from compress.evalset import EvalSet, stratified_sample
from compress.validate import compare_set, gate, markdown_report
from models.datasources import Record


def _evalset(n=200, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    recs = [Record(f"/x/{i}.png", int(y[i]), "hand", f"s{i // 2}", f"p{i // 2}") for i in range(n)]
    # studies must have a single label: make pairs share the label of their first image
    recs = [Record(r.path, recs[2 * (i // 2)].label, r.body_part, r.study_id, r.patient_id) for i, r in enumerate(recs)]
    return EvalSet("toy", "fracture", recs, np.zeros((n, 1, 8, 8), np.float32)), rng


def test_identical_models_pass_and_degraded_fail():
    es, rng = _evalset()
    good = np.clip(es.labels * 0.6 + rng.random(len(es.labels)) * 0.5, 0, 1)
    th = {"suspicious": 0.3, "likely": 0.6}
    same = compare_set(es, good, good + 1e-4, th)
    assert same["image_auc_drop"] == pytest.approx(0, abs=1e-9) and same["image_agreement_likely"] > 0.99
    noisy = np.clip(good + rng.normal(0, 0.4, len(good)), 0, 1)
    bad = compare_set(es, good, noisy, th)
    assert bad["image_auc_drop"] > 0.05
    ok, reasons = gate([same], 0.01)
    assert ok and not reasons
    ok, reasons = gate([same, bad], 0.01)
    assert not ok and any("toy: image-level AUC changed by -" in r for r in reasons)
    md = markdown_report([same, bad], ok, 0.01, "f32")
    assert "FAILED" in md and md.count("| toy |") == 4


def test_one_class_set_is_reported_not_gated():
    es, _ = _evalset()
    es.records = [Record(r.path, 1, r.body_part, r.study_id, r.patient_id) for r in es.records]
    r = compare_set(es, np.full(len(es.records), 0.5), np.full(len(es.records), 0.5), {"suspicious": 0.3, "likely": 0.6})
    ok, reasons = gate([r], 0.01)
    assert ok and all("not gated" in x for x in reasons)


def test_stratified_sample_covers_strata():
    recs = [Record(f"{i}", i % 2, ["hand", "wrist", "elbow"][i % 3], f"{i}", f"{i}") for i in range(600)]
    s = stratified_sample(recs, 60, seed=0)
    assert len(s) == 60 and len(set(s)) == 60
    counts = {}
    for r in s:
        counts[(r.body_part, r.label)] = counts.get((r.body_part, r.label), 0) + 1
    assert len(counts) == 6 and set(counts.values()) == {10}


def test_cam_correlation_between_engines(tiny_bundle, phantom):
    from compress.validate import cam_correlation
    from models.engine import Engine
    from models.imageio import load_image

    fp32 = Engine(tiny_bundle, artifact="openvino_fp32")
    int8 = Engine(tiny_bundle)
    imgs = [load_image(p).pixels for p in sorted((phantom / "mura").rglob("*.png"))[:6]]
    x = np.stack([fp32.prepare(im)[0] for im in imgs])
    same = cam_correlation(fp32, fp32, x)
    assert same["n"] == 6 and same["min_r"] == pytest.approx(1.0)
    c = cam_correlation(fp32, int8, x)
    assert c["n"] == 6 and -1 <= c["min_r"] <= c["mean_r"] <= 1


def test_gate_counts_auc_changes_both_ways_and_decision_agreement():
    base = {"dataset": "toy", "image_auc_drop": 0.0, "study_auc_drop": 0.0,
            "image_agreement_suspicious": 1.0, "image_agreement_likely": 1.0,
            "study_agreement_suspicious": 1.0, "study_agreement_likely": 1.0}
    assert gate([base], 0.005, 0.99) == (True, [])
    better = {**base, "study_auc_drop": -0.02}  # INT8 "gained" 0.02: not the validated model either
    ok, reasons = gate([better], 0.005, 0.99)
    assert not ok and reasons == ["toy: study-level AUC changed by +0.0200, beyond the budget of ±0.005"]
    flips = {**base, "image_agreement_likely": 0.96}
    ok, reasons = gate([flips], 0.005, 0.99)
    assert not ok and "image-level decisions at the 'likely' threshold agree in 0.960 of cases < 0.99" in reasons[0]
    assert gate([flips], 0.005, 0.95)[0]  # the floor is configurable
    assert gate([flips], 0.005)[0]  # and off unless asked for (callers choose; the CLI asks for 0.99)
