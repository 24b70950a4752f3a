"""The walking skeleton end to end at tiny size: synth -> train -> INT8 + gate -> screen.

Also plants a bad quantization (calibration on blank images) and checks that the gate catches it.
"""

import csv
import json

import numpy as np
import pytest

from compress.pipeline import CompressConfig, run
from desktop.screening.cli import main as screen_main
from models.card import load_bundle
from models.synth import write_dicom_studies, write_external, write_mura
from trainer.train import TrainConfig, train


@pytest.fixture(scope="module")
def e2e(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    write_mura(root / "mura", seed=11, n_patients=400, size_range=(128, 192))
    write_external(root / "external", seed=12, n_images=60, size_range=(128, 160))
    write_dicom_studies(root / "dicom", seed=13, n_studies=6)
    summary = train(TrainConfig(data=f"mura:{root / 'mura'}", out=str(root / "train"), arch="custom_cnn",
                                input_size=128, epochs=5, batch_size=32, lr=2e-3, patience=5, seed=0))
    return root, summary


@pytest.mark.slow
def test_pipeline_learns_compresses_and_screens(e2e, capsys):
    root, summary = e2e
    assert summary["metrics"]["test"]["study"]["auc"] > 0.75  # learns the phantom at tiny size
    bundle = root / "bundle"
    passed, card = run(CompressConfig(checkpoint=summary["checkpoint"], out=str(bundle),
                                      calib_data=f"mura:{root / 'mura'}",
                                      val_data=[f"mura:{root / 'mura'}", f"folder:{root / 'external'}"],
                                      calib_size=100, min_agreement=0.97))
    # The default |ΔAUC| budget (0.005); agreement 0.97, not 0.99: 284 images, so 0.99 allows 2 flips,
    # and INT8 kernels differ between CPUs (measured 0.986 here). `make demo` gates at 0.99.
    report = json.loads((bundle / "validation.json").read_text())
    assert passed, report["reasons"]
    assert load_bundle(bundle).card["validation"]["verdict"] == "passed"
    mura = next(s for s in report["sets"] if s["dataset"] == "phantom mura-v1.1/valid")
    assert mura["image_auc_fp32"] > 0.75 and abs(mura["image_auc_drop"]) <= 0.005
    assert min(mura["image_agreement_likely"], mura["study_agreement_suspicious"]) >= 0.97
    md = (bundle / "validation.md").read_text()
    for level in ("image", "study"):  # the gate's table: one row per set and level
        assert md.count(f"| phantom mura-v1.1/valid | {level} |") == 1
    assert "## Reduced-resolution decode" in md  # issue 18 §2: the decode check has its own section

    out = root / "screen"
    rc = screen_main([str(root / "dicom"), "--model", str(bundle), "--out", str(out)])
    assert rc == 0
    rows = list(csv.DictReader((out / "worklist.csv").open()))
    labels = {r["study_uid"]: int(r["label"]) for r in csv.DictReader((root / "dicom" / "labels.csv").open())}
    assert {r["study"] for r in rows} == set(labels)
    probs = [float(r["probability"]) for r in rows]
    assert probs == sorted(probs, reverse=True)
    assert "not for diagnostic use" in capsys.readouterr().out.lower()


@pytest.mark.slow
def test_gate_catches_a_planted_bad_quantization(e2e, monkeypatch):
    """Calibrating on blank images collapses the activation ranges: plain INT8 must fail the gate.

    The accuracy-control fallback may then rescue it (by keeping layers in floating point) or not;
    the final verdict must match what the fallback achieved, and the PTQ failure stays reported.
    """
    import compress.pipeline as pipeline

    root, summary = e2e
    real_build = pipeline.build_evalset

    def blank_calibration(split, cfg, *, limit=0, seed=0):
        es = real_build(split, cfg, limit=limit, seed=seed)
        if limit:  # the calibration set is the only one built with a limit here
            es.inputs = np.full_like(es.inputs, (0 - cfg.mean) / cfg.std)
        return es

    monkeypatch.setattr(pipeline, "build_evalset", blank_calibration)
    passed, card = run(CompressConfig(checkpoint=summary["checkpoint"], out=str(root / "bad_bundle"),
                                      calib_data=f"mura:{root / 'mura'}", val_data=[f"mura:{root / 'mura'}"],
                                      budget=0.01, calib_size=50))
    # plain PTQ must be caught and reported, whatever the accuracy-control fallback achieves after
    q = card["quantization"]
    assert q["ptq_gate"]["verdict"] == "failed" and q["ptq_gate"]["reasons"]
    report = json.loads((root / "bad_bundle" / "validation.json").read_text())
    assert report["quantization"]["ptq_gate"]["verdict"] == "failed"
    assert "plain PTQ gate: failed" in (root / "bad_bundle" / "validation.md").read_text()
    verdict = "passed" if passed else "failed"
    assert card["validation"]["verdict"] == verdict
    assert load_bundle(root / "bad_bundle").card["validation"]["verdict"] == verdict
    if passed:  # only accuracy control can have rescued it
        assert q["method"] == "accuracy_control"
