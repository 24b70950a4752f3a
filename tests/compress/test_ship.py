"""Shipping a bundle into the repository, and evaluating a bundle's own files against the truth."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from compress.evaluate_bundle import load_boxes, points_inside, uncalibrated
from compress.ship import ship, verify_samples
from models.card import load_bundle
from models.ovruntime import cpu_isa


def test_shipped_copy_keeps_int8_and_fp16_verifies_and_records_the_samples(tiny_bundle, tmp_path):
    samples = tmp_path / "samples"
    samples.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray((rng.random((90, 70)) * 255).astype(np.uint8)).save(samples / f"s{i}.png")
    out = tmp_path / "shipped"
    ship(tiny_bundle, out, samples)
    b = load_bundle(out)  # checksums verified
    assert set(b.card["artifacts"]) == {"openvino_int8", "openvino_fp16"}
    assert not (out / "model_fp32.xml").exists() and not (out / "model.onnx").exists()
    assert (out / "validation.md").is_file()
    rec = json.loads((out / "expected_samples.json").read_text())
    assert [r["file"] for r in rec["samples"]] == ["s0.png", "s1.png"]
    assert rec["isa"] == cpu_isa()
    # what the test of the real shipped model checks, on this machine and on one of another ISA
    assert verify_samples(out, samples, rec) == []
    other = {**rec, "isa": ["some-other-cpu"]}
    assert verify_samples(out, samples, other) == []
    bad = json.loads(json.dumps(rec))
    bad["samples"][0]["openvino_fp16"] += 0.01
    assert any("openvino_fp16 s0.png" in p for p in verify_samples(out, samples, bad))
    bad = {**json.loads(json.dumps(rec)), "isa": ["some-other-cpu"], "int8_tolerance": 0.0}
    bad["samples"][1]["fp32"] += 0.5
    assert any("openvino_int8 s1.png" in p and "gate" in p for p in verify_samples(out, samples, bad))


def test_a_failed_gate_ships_fp16_as_the_primary_model(bundle_copy, tmp_path):
    card_path = bundle_copy / "card.json"
    card = json.loads(card_path.read_text())
    card["validation"]["verdict"] = "failed"
    card_path.write_text(json.dumps(card))
    ship(bundle_copy, tmp_path / "shipped", None)
    b = load_bundle(tmp_path / "shipped")
    assert b.card["primary_artifact"] == "openvino_fp16" and "FP16" in b.card["validation"]["shipped"]


def test_pointing_game_hit_and_miss(tmp_path):
    heat = np.zeros((100, 80))
    heat[40, 30] = 1.0
    assert points_inside(heat, [(25, 35, 10, 10)])
    assert not points_inside(heat, [(0, 0, 10, 10), (50, 50, 5, 5)])
    csv = tmp_path / "boxes.csv"
    csv.write_text("image_id,x,y,width,height\nA.jpg,1,2,3,4\nA.jpg,5,6,7,8\nB.jpg,0,0,1,1\n")
    boxes = load_boxes(csv)
    assert boxes["A.jpg"] == [(1, 2, 3, 4), (5, 6, 7, 8)] and len(boxes["B.jpg"]) == 1


def test_uncalibrated_inverts_the_cards_platt_scaling():
    raw = np.array([0.05, 0.3, 0.5, 0.9])
    z = np.log(raw / (1 - raw))
    cal = 1 / (1 + np.exp(-(0.7 * z - 0.4)))
    assert uncalibrated(cal, {"slope": 0.7, "intercept": -0.4}) == pytest.approx(raw, rel=1e-6)


def test_evaluate_bundle_scores_its_own_files_with_ci_ece_plots_and_pointing_game(tiny_bundle, tiny_checkpoint,
                                                                                    phantom, tmp_path, capsys):
    from compress.evaluate_bundle import main
    from compress.sources import resolve_split
    from compress.trained import run_manifest

    spec = f"mura:{phantom / 'mura'}"
    split = resolve_split(spec, "validation", run_manifest(tiny_checkpoint)["data"])
    positives = [r for r in split.records if r.label == 1]
    boxes = tmp_path / "boxes.csv"  # every positive boxed whole: each one must count as a hit
    boxes.write_text("image_id,x,y,width,height\n" + "".join(
        f"{r.path.rsplit('/', 1)[-1]},0,0,10000,10000\n" for r in positives))
    out = tmp_path / "metrics.json"
    assert main(["--bundle", str(tiny_bundle), "--checkpoint", str(tiny_checkpoint), "--data", spec,
                 "--boxes", str(boxes), "--artifact", "int8", "--json", str(out),
                 "--plots", str(tmp_path / "plots")]) == 0
    r = json.loads(out.read_text())["results"][0]
    assert r["artifact"] == "int8" and r["n_images"] == len(split.records)
    lo, hi = r["image"]["auc_ci95"]
    assert lo <= r["image"]["auc"] <= hi
    assert set(r["operating_points"]) == {"suspicious", "likely"}
    assert 0 <= r["image"]["ece"] <= 1 and 0 <= r["image"]["ece_uncalibrated"] <= 1
    assert r["pointing_game"]["n"] == len(positives) > 0
    assert r["pointing_game"]["rate"] == 1.0
    assert Image.open(r["reliability_png"]).size[0] > Image.open(r["reliability_png"]).size[1]
    assert "AUC" in capsys.readouterr().out
