import json

import numpy as np
import pytest

from models.card import load_bundle
from models.engine import REQUESTS_PER_STREAM, Engine, aggregate_study, cam_to_image, verdict_for
from models.errors import ConfigError, ModelIOMismatchError
from models.imageio import load_image
from models.preprocess import Placement


def _images(phantom, n=3):
    paths = sorted((phantom / "mura").rglob("*.png"))[:n]
    return [load_image(p).pixels for p in paths]


def test_openvino_and_onnxruntime_agree(tiny_bundle, phantom):
    imgs = _images(phantom, 4)
    ov_preds = Engine(tiny_bundle, artifact="openvino_fp32").predict(imgs)
    ort_preds = Engine(tiny_bundle, backend="onnxruntime").predict(imgs)
    for a, b in zip(ov_preds, ort_preds, strict=True):
        assert a.probability == pytest.approx(b.probability, abs=1e-4)
        assert a.body_part == b.body_part
        np.testing.assert_allclose(a.cam, b.cam, atol=1e-3)


def test_int8_engine_outputs_are_consistent(tiny_bundle, phantom):
    eng = Engine(tiny_bundle)
    assert eng.artifact == "openvino_int8" and eng.precision == "f32"
    preds = eng.predict(_images(phantom, 3))
    for p in preds:
        assert 0 <= p.probability <= 1
        assert sum(p.body_part_probs.values()) == pytest.approx(1, abs=1e-3)
        assert p.body_part in eng.body_parts
        # the pooled CAM is the raw logit (LSE pooling, r=5), up to INT8 noise; the probability is
        # that logit through the card's Platt calibration
        lse = (np.log(np.mean(np.exp(5 * p.cam.astype(np.float64))))) / 5
        cal = eng.bundle.card.get("calibration") or {"slope": 1.0, "intercept": 0.0}
        z = cal["slope"] * lse + cal["intercept"]
        assert 1 / (1 + np.exp(-z)) == pytest.approx(p.probability, abs=0.05)
    study = aggregate_study(preds, eng.thresholds)
    assert study.probability == pytest.approx(np.mean([p.probability for p in preds]))
    assert study.n_images == 3 and study.verdict in ("likely", "suspicious", "negative")


@pytest.mark.parametrize("hint", ["LATENCY", "THROUGHPUT"])
def test_card_output_mismatch_is_caught(bundle_copy, hint):
    """Whichever model the engine will run (a screening engine checks its throughput model)."""
    card = json.loads((bundle_copy / "card.json").read_text())
    card["outputs"]["cam"]["shape"] = [-1, 5, 5]
    from models.card import write_bundle

    write_bundle(bundle_copy, card)
    with pytest.raises(ModelIOMismatchError, match="cam"):
        Engine(bundle_copy, performance_hint=hint)
    card["input"]["name"] = "pixels"
    write_bundle(bundle_copy, card)
    with pytest.raises(ModelIOMismatchError, match="pixels"):
        Engine(bundle_copy, performance_hint=hint)


@pytest.mark.parametrize("hint", ["LATENCY", "THROUGHPUT"])
def test_bad_backend_and_device(tiny_bundle, hint):
    with pytest.raises(ConfigError, match="backend"):
        Engine(tiny_bundle, backend="tensorrt", performance_hint=hint)
    with pytest.raises(ConfigError, match="NOPE.*available"):
        Engine(tiny_bundle, device="NOPE", performance_hint=hint)


def test_a_screening_engine_compiles_its_own_model_only_when_asked(tiny_bundle, phantom):
    """A THROUGHPUT engine runs its static batch-1 model; the bundle's dynamic-batch model, which
    every mura-screen run used to compile as well (~0.2 s), is compiled on the first predict."""
    eng = Engine(tiny_bundle, performance_hint="THROUGHPUT")
    assert eng._throughput is not None and eng._primary is None
    images = [load_image(p).pixels for p in sorted((phantom / "dicom").rglob("*.dcm"))[:3]]
    batch = eng.predict(images)  # three at once: the dynamic batch
    assert eng._primary is not None and len(batch) == 3
    latency = Engine(tiny_bundle).predict(images)
    assert [p.probability for p in batch] == pytest.approx([p.probability for p in latency], abs=1e-6)


def test_verdicts_and_heatmap_mapping():
    th = {"suspicious": 0.2, "likely": 0.6}
    assert [verdict_for(p, th) for p in (0.1, 0.2, 0.59, 0.6)] == ["negative", "suspicious", "suspicious", "likely"]
    # a tall image letterboxed into 8x8: content occupies columns 2..5
    cam = np.full((4, 4), -5.0, np.float32)
    cam[:, 2] = 5.0  # hot just right of centre
    hm = cam_to_image(cam, Placement(scale=0.5, offset_x=2, offset_y=0, width=4, height=8), (16, 8))
    assert hm.shape == (16, 8)
    assert hm[:, 4:].mean() > hm[:, :4].mean()


def test_bundle_precision_from_card(tiny_bundle):
    assert load_bundle(tiny_bundle).card["validation"]["inference_precision"] == "f32"


def test_fp16_ir_artifact_agrees_with_fp32(tiny_bundle, phantom):
    b = load_bundle(tiny_bundle)
    assert {"openvino_fp16", "openvino_fp32", "openvino_int8", "onnx"} <= set(b.card["artifacts"])
    assert (tiny_bundle / "model_fp16.bin").stat().st_size < 0.7 * (tiny_bundle / "model_fp32.bin").stat().st_size
    imgs = _images(phantom, 3)
    a = Engine(tiny_bundle, artifact="openvino_fp32").predict(imgs)
    h = Engine(tiny_bundle, artifact="openvino_fp16").predict(imgs)
    for x, y in zip(a, h, strict=True):
        assert x.probability == pytest.approx(y.probability, abs=1e-2)


@pytest.mark.parametrize("backend,hint", [("openvino", "LATENCY"), ("openvino", "THROUGHPUT"),
                                          ("onnxruntime", "LATENCY")])
def test_async_runner_equals_predict(tiny_bundle, phantom, backend, hint):
    """The screener's asynchronous path gives what predict() gives, image by image."""
    eng = Engine(tiny_bundle, backend=backend, performance_hint=hint)
    images = _images(phantom, n=6)
    runner = eng.async_runner()
    # two requests per stream keep every stream fed while Python turns a result around
    assert runner.n_requests == (1 if backend == "onnxruntime" else REQUESTS_PER_STREAM * int(
        eng.throughput_model().get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))
    for k, im in enumerate(images):
        x, placement = eng.prepare(im)
        runner.submit(x, placement, ("img", k))
    got = dict(runner.wait())
    assert runner.pending == 0 and sorted(got) == [("img", k) for k in range(len(images))]
    for k, im in enumerate(images):
        want = eng.predict([im])[0]
        # 1e-4, not 1e-6: the static batch-1 model and predict()'s dynamic-batch one may run other
        # f32 kernels (1.7e-5 apart seen on an AVX-512 BF16 AMD CPU); a wrong input is off by far more
        assert got[("img", k)].probability == pytest.approx(want.probability, abs=1e-4)
        assert got[("img", k)].body_part == want.body_part
        # the runner's static batch-1 compilation may pick other kernels than the dynamic-batch
        # one predict() uses: the same probabilities, the heatmap's logits within 1e-3
        np.testing.assert_allclose(got[("img", k)].cam, want.cam, atol=1e-3)
        assert got[("img", k)].placement == want.placement
    if backend == "openvino":
        static = eng.throughput_model()
        assert static is not eng.compiled_model  # the bundle's IR has a dynamic batch
        assert [d.get_length() for d in static.inputs[0].get_partial_shape()][0] == 1
