"""The gate's additions: paired bootstrap CI of ΔAUC, report columns, ROC PNG, CLI flag, fallback."""

import json

import numpy as np
import pytest
from PIL import Image

from compress.cli import build_parser
from compress.evalset import EvalSet
from compress.validate import compare_set, draw_roc_png, markdown_report, paired_bootstrap_delta
from models.datasources import Record


def _evalset(n=240, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n // 2).repeat(2)  # studies of two images sharing one label
    recs = [Record(f"/x/{i}.png", int(y[i]), "hand", f"s{i // 2}", f"p{i // 2}") for i in range(n)]
    return EvalSet("toy", "fracture", recs, np.zeros((n, 1, 8, 8), np.float32)), rng


def test_bootstrap_ci_contains_zero_for_identical_models():
    es, rng = _evalset()
    good = np.clip(es.labels * 0.5 + rng.random(len(es.labels)) * 0.6, 0, 1)
    d, lo, hi = paired_bootstrap_delta(es.labels, good, good.copy(), groups=es.study_ids, n_resamples=300)
    assert d == 0 and lo <= 0 <= hi


def test_bootstrap_ci_excludes_zero_for_a_degraded_model():
    es, rng = _evalset()
    good = np.clip(es.labels * 0.5 + rng.random(len(es.labels)) * 0.6, 0, 1)
    bad = good + rng.normal(0, 0.5, len(good))
    d, lo, hi = paired_bootstrap_delta(es.labels, good, bad, groups=es.study_ids, n_resamples=300, seed=1)
    assert d < 0 and lo <= d <= hi and hi < 0
    again = paired_bootstrap_delta(es.labels, good, bad, groups=es.study_ids, n_resamples=300, seed=1)
    assert again == (d, lo, hi)  # seeded: the report is reproducible


def test_report_has_every_variant_column_and_ci():
    es, rng = _evalset()
    good = np.clip(es.labels * 0.5 + rng.random(len(es.labels)) * 0.6, 0, 1)
    noisy = good + rng.normal(0, 0.05, len(good))
    th = {"suspicious": 0.3, "likely": 0.6}
    r = compare_set(es, good, noisy, th, extra={"torch_fp32": good, "ov_bf16": noisy}, n_resamples=200)
    for level in ("image", "study"):
        for col in ("auc_fp32", "auc_int8", "auc_torch_fp32", "auc_ov_bf16", "auc_delta", "auc_drop",
                    "agreement_suspicious", "agreement_likely"):
            assert f"{level}_{col}" in r
        lo, hi = r[f"{level}_auc_delta_ci95"]
        assert lo <= r[f"{level}_auc_delta"] <= hi
    assert r["image_auc_torch_fp32"] == pytest.approx(r["image_auc_fp32"])
    variants = [{"name": "OpenVINO INT8", "precision": "f32", "latency_ms": 1.234, "size_mb": 0.5}]
    md = markdown_report([r], True, 0.01, "f32", variants, {"method": "ptq", "preset": "performance"})
    assert "AUC torch FP32" in md and "AUC OV bf16" in md and "95 % CI" in md
    assert "| OpenVINO INT8 | f32 | 1.23 | 0.50 |" in md and "Quantization: ptq" in md
    json.dumps(r)  # the report row stays JSON-serialisable


def test_roc_png_is_written_and_not_blank(tmp_path):
    es, rng = _evalset()
    good = np.clip(es.labels * 0.5 + rng.random(len(es.labels)) * 0.6, 0, 1)
    path = tmp_path / "roc.png"
    draw_roc_png(path, [{"title": "toy", "labels": es.labels, "series": {"FP32": good, "INT8": good * 0.9}},
                        {"title": "toy2", "labels": es.labels, "series": {"FP32": good, "INT8": good}}])
    im = np.asarray(Image.open(path).convert("RGB"))
    assert im.shape[1] == 2 * im.shape[0]
    assert (im < 250).any(axis=2).mean() > 0.01  # axes, curves and text drawn
    blue = (im[..., 2] > 150) & (im[..., 0] < 80)
    assert blue.sum() > 50  # the FP32 curve is there


def test_cli_accuracy_control_flag():
    base = ["--checkpoint", "c.pt", "--out", "o", "--calib-data", "mura:x"]
    assert build_parser().parse_args(base).no_accuracy_control is False
    assert build_parser().parse_args([*base, "--no-accuracy-control"]).no_accuracy_control is True
