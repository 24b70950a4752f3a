"""Evaluation figures: files exist, have the expected size, are not blank, and show the numbers
of the tested metric functions (confusion counts, reliability bins)."""

import numpy as np
import pytest
from PIL import Image

from models.datasources import Record
from models.plots import (
    SHADE_RANGE,
    binary_confusion_panel,
    draw_confusion_png,
    draw_reliability_png,
    draw_roc_png,
)
from trainer.plots import write_evaluation_plots


def _not_blank(path, min_colours=3):
    img = np.asarray(Image.open(path).convert("RGB"))
    assert img.std() > 5, f"{path} looks blank"
    assert len(np.unique(img.reshape(-1, 3), axis=0)) >= min_colours
    return img


def test_confusion_png_draws_the_tested_counts(tmp_path):
    y = [0, 0, 1, 2, 2, 2, 1, 0]
    p = [0, 1, 1, 2, 0, 2, 2, 0]
    cell, left, top = 56, 110, 60
    mats = draw_confusion_png(tmp_path / "cm.png", [{"title": "parts", "labels": ["hand", "hip", "leg"],
                                                     "y_true": y, "y_pred": p}], cell=cell)
    np.testing.assert_array_equal(mats[0], [[2, 1, 0], [0, 1, 1], [1, 0, 2]])  # hand-computed
    img = _not_blank(tmp_path / "cm.png")
    assert img.shape == (top + 3 * cell + 30, left + 3 * cell + 16, 3)
    # each cell's background is shaded by its row fraction (sampled away from the text)
    frac = mats[0] / mats[0].sum(1, keepdims=True)
    for i in range(3):
        for j in range(3):
            px = img[top + i * cell + 4, left + j * cell + cell - 4]
            shade = int(255 - SHADE_RANGE * frac[i, j])
            expected = (shade, 255, shade) if i == j else (shade, shade, 255)
            assert tuple(px) == expected, (i, j, tuple(px), expected)


def test_binary_confusion_panel_thresholds_at_the_operating_point(tmp_path):
    panel = binary_confusion_panel("studies", [0, 0, 1, 1, 1], [0.1, 0.6, 0.59, 0.7, 0.9], 0.6)
    (m,) = draw_confusion_png(tmp_path / "c.png", [panel])
    np.testing.assert_array_equal(m, [[1, 1], [1, 2]])  # tn fp / fn tp at >= 0.6


def test_roc_and_reliability_pngs(tmp_path):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    s = np.clip(y * 0.3 + rng.random(200) * 0.7, 0, 1)
    draw_roc_png(tmp_path / "roc.png", [{"title": "a", "labels": y, "series": {"m": s}},
                                        {"title": "b", "labels": y[:50], "series": {"m": s[:50], "n": 1 - s[:50]}}])
    img = _not_blank(tmp_path / "roc.png")
    assert img.shape == (360, 720, 3)  # two panels
    assert (np.abs(img.astype(int) - (31, 119, 180)).sum(-1) == 0).sum() > 100  # the curve is drawn
    (rb,) = draw_reliability_png(tmp_path / "rel.png", [{"title": "r", "labels": y, "probs": s}])
    assert Image.open(tmp_path / "rel.png").size == (360, 360)
    _not_blank(tmp_path / "rel.png")
    assert rb["count"].sum() == 200


def test_write_evaluation_plots_image_and_study_level(tmp_path):
    rng = np.random.default_rng(1)
    parts = ["hand", "hip", "leg"]
    recs, probs, bps = [], [], []
    for i in range(60):
        label = (i // 2) % 2  # one label per study
        recs.append(Record(path=f"x{i}.png", label=label, body_part=parts[i % 3], study_id=f"s{i // 2}",
                           patient_id=f"p{i // 4}"))
        probs.append(np.clip(0.3 * label + rng.random() * 0.7, 0, 1))
        bps.append(np.eye(3)[(i % 3) if i % 5 else (i + 1) % 3])
    probs = np.array(probs)
    probs[0] = np.nan  # undecodable: left out
    paths = write_evaluation_plots(tmp_path / "figs", recs, probs, np.array(bps), parts, 0.5, "demo")
    assert set(paths) == {"roc", "confusion", "reliability", "body_part_confusion"}
    for p in paths.values():
        _not_blank(p)
    assert Image.open(paths["roc"]).size == (720, 360)  # image + study panels
    paths = write_evaluation_plots(tmp_path / "one", recs, probs, None, ["hand"], 0.5)
    assert "body_part_confusion" not in paths


def test_training_writes_plots_for_the_best_checkpoint(tiny_checkpoint):
    out = tiny_checkpoint.parent / "plots"
    for name in ("internal_validation", "test"):  # the phantom MURA has an official valid split
        for fig in ("roc", "confusion", "reliability", "body_part_confusion"):
            _not_blank(out / name / f"{fig}.png")


def test_evaluate_metrics_have_body_part_confusion_and_part_cis(tiny_checkpoint):
    import json

    m = json.loads((tiny_checkpoint.parent / "summary.json").read_text())["metrics"]["internal_validation"]
    cm = np.array(m["body_part_confusion"]["matrix"])
    assert cm.shape == (len(m["body_part_confusion"]["labels"]),) * 2
    assert cm.sum() + m["body_part_confusion"]["n_unknown_part"] == m["n_images"]
    assert np.trace(cm) / cm.sum() == pytest.approx(m["body_part_accuracy"])
    c = m["study"]["confusion"]
    assert sum(c.values()) == m["n_studies"]
    for part in m["per_body_part"].values():
        assert len(part["auc_ci95"]) == 2 and len(part["kappa_ci95"]) == 2


def test_mura_evaluate_writes_plots_and_prints_the_body_part_matrix(tiny_checkpoint, phantom, tmp_path, capsys):
    from trainer.evaluate import main

    rc = main(["--checkpoint", str(tiny_checkpoint), "--data", f"mura:{phantom / 'mura'}",
               "--plots", str(tmp_path / "figs")])
    assert rc == 0
    text = capsys.readouterr().out
    assert "body-part confusion" in text and "figures written" in text
    for fig in ("roc", "confusion", "reliability", "body_part_confusion"):
        _not_blank(tmp_path / "figs" / f"{fig}.png")
