"""The bundle the pipeline writes carries the extended gate report, the ROC PNG and the method."""

import json

import numpy as np
from PIL import Image

from models.card import load_bundle


def test_bundle_report_has_variants_roc_and_method(tiny_bundle):
    report = json.loads((tiny_bundle / "validation.json").read_text())
    names = [v["name"] for v in report["variants"]]
    assert names == ["torch FP32", "OpenVINO FP32", "OpenVINO bf16", "OpenVINO INT8"]
    assert all(v["latency_ms"] > 0 and v["size_mb"] > 0 for v in report["variants"])
    for s in report["sets"]:
        assert {"image_auc_torch_fp32", "image_auc_ov_bf16", "study_auc_delta_ci95"} <= set(s)
    assert report["quantization"]["method"] == "ptq"
    assert load_bundle(tiny_bundle).card["quantization"]["ptq_gate"]["verdict"] == "passed"
    md = (tiny_bundle / "validation.md").read_text()
    assert "AUC torch FP32" in md and "latency batch 1" in md
    im = np.asarray(Image.open(tiny_bundle / "roc.png").convert("L"))
    assert im.min() < 100 and im.std() > 5


def test_failed_ptq_falls_back_to_accuracy_control(phantom, tiny_checkpoint, tmp_path, monkeypatch, capsys):
    import compress.pipeline as pipeline

    calls = []
    real_gate = pipeline.gate

    def fail_first(results, budget, min_agreement):
        calls.append(1)
        ok, reasons = real_gate(results, budget, min_agreement)
        return (False, [*reasons, "planted failure"]) if len(calls) == 1 else (ok, reasons)

    monkeypatch.setattr(pipeline, "gate", fail_first)
    metrics = []
    real_ac = pipeline.quantize_accuracy_control

    def spy(ov_model, calib, val_inputs, qcfg, metric):
        metrics.append(metric)
        return real_ac(ov_model, calib, val_inputs, qcfg, metric)

    monkeypatch.setattr(pipeline, "quantize_accuracy_control", spy)
    import nncf

    nncf_kwargs = []
    real_nncf_ac = nncf.quantize_with_accuracy_control

    def nncf_spy(*args, **kwargs):
        nncf_kwargs.append(kwargs)
        return real_nncf_ac(*args, **kwargs)

    monkeypatch.setattr(nncf, "quantize_with_accuracy_control", nncf_spy)
    out = tmp_path / "b"
    passed, card = pipeline.run(pipeline.CompressConfig(
        checkpoint=str(tiny_checkpoint), out=str(out), calib_data=f"mura:{phantom / 'mura'}",
        val_data=[f"mura:{phantom / 'mura'}"], budget=1.0, min_agreement=0.0, calib_size=16, latency_iters=2,
        quant=pipeline.QuantizeConfig(ac_max_iterations=3)))
    # the bound on reverted ops reaches NNCF and the card says it was set
    assert nncf_kwargs[0]["advanced_accuracy_restorer_parameters"].max_num_iterations == 3
    assert card["quantization"]["max_reverted_ops"] == 3
    q = card["quantization"]
    assert q["ptq_gate"]["verdict"] == "failed" and "planted failure" in q["ptq_gate"]["reasons"]
    assert q["method"] == "accuracy_control" and len(calls) == 2
    # its metric judges the raw network output on the card's calibrated scale, as the engines do
    cal = card["calibration"]
    assert metrics[0].calibration == (cal["slope"], cal["intercept"])
    assert passed and load_bundle(out).card["validation"]["verdict"] == "passed"
    log = capsys.readouterr().out
    # why the fallback runs is said before it starts, not only in the final report
    assert log.index("[compress] plain PTQ: planted failure") < log.index("retrying with NNCF accuracy control")


def test_no_accuracy_control_keeps_the_ptq_failure(phantom, tiny_checkpoint, tmp_path, monkeypatch):
    import compress.pipeline as pipeline

    monkeypatch.setattr(pipeline, "gate", lambda results, budget, min_agreement: (False, ["planted failure"]))
    passed, card = pipeline.run(pipeline.CompressConfig(
        checkpoint=str(tiny_checkpoint), out=str(tmp_path / "b"), calib_data=f"mura:{phantom / 'mura'}",
        val_data=[f"mura:{phantom / 'mura'}"], budget=1.0, min_agreement=0.0, calib_size=16, latency_iters=2,
        accuracy_control=False))
    assert not passed and card["quantization"]["method"] == "ptq"
    assert card["validation"]["verdict"] == "failed"
