import json

import pytest

from models.card import CARD_SCHEMA, load_bundle, validate_card, write_bundle
from models.errors import BundleError, CardValidationError, ChecksumError


def test_bundle_loads_and_card_is_complete(tiny_bundle):
    b = load_bundle(tiny_bundle)
    card = b.card
    for key in CARD_SCHEMA["required"]:
        assert key in card
    assert "not for diagnostic use" in card["intended_use"].lower()
    assert card["task"]["name"] == "abnormality"  # trained on (phantom) MURA
    assert b.preprocess.input_size == 64
    assert set(card["files"]) >= {"model.xml", "model.bin", "model_fp32.xml", "model_fp32.bin", "model.onnx"}
    assert card["validation"]["verdict"] == "passed" and card["validation"]["inference_precision"] == "f32"
    assert card["provenance"]["training_data"]["n_images"] > 0
    assert b.model_id.startswith(card["name"] + "@")


def test_tampered_bin_is_refused(bundle_copy):
    p = bundle_copy / "model.bin"
    data = bytearray(p.read_bytes())
    data[len(data) // 2] ^= 0xFF
    p.write_bytes(bytes(data))
    with pytest.raises(ChecksumError, match="model.bin"):
        load_bundle(bundle_copy)


def test_edited_card_is_refused(bundle_copy):
    card_path = bundle_copy / "card.json"
    card = json.loads(card_path.read_text())
    card["thresholds"]["likely"] = 1.5
    card_path.write_text(json.dumps(card))
    with pytest.raises(CardValidationError, match="thresholds/likely"):
        load_bundle(bundle_copy)
    card["thresholds"] = {"suspicious": 0.9, "likely": 0.1}
    card_path.write_text(json.dumps(card))
    with pytest.raises(CardValidationError, match="must not exceed"):
        load_bundle(bundle_copy)


def test_card_without_disclaimer_is_invalid(tiny_bundle):
    card = json.loads((tiny_bundle / "card.json").read_text())
    card["intended_use"] = "Diagnose fractures."
    with pytest.raises(CardValidationError, match="intended_use"):
        validate_card(card)


def test_missing_files_and_garbage(bundle_copy, tmp_path):
    (bundle_copy / "model_fp32.bin").unlink()
    with pytest.raises(BundleError, match="model_fp32.bin"):
        load_bundle(bundle_copy)
    with pytest.raises(BundleError, match="not found"):
        load_bundle(tmp_path / "nope")
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "card.json").write_text("{not json")
    with pytest.raises(CardValidationError, match="not valid JSON"):
        load_bundle(tmp_path / "x")


def test_write_bundle_recomputes_checksums(bundle_copy):
    card = json.loads((bundle_copy / "card.json").read_text())
    (bundle_copy / "model.onnx").write_bytes(b"changed")
    b = write_bundle(bundle_copy, card)
    assert load_bundle(bundle_copy).card["files"]["model.onnx"] == b.card["files"]["model.onnx"]


def test_the_card_is_built_from_the_manifest_and_the_gate(tmp_path):
    """Labels, body parts, preprocessing, calibration and figures come from the run manifest; the
    gate adds its verdict, per-set rows, the quantization method and the indications."""
    from models.card import BundleFacts, card_from_manifest, gated_card
    from models.manifest import manifest_from_meta
    from tests.models.test_manifest import _meta

    ck = tmp_path / "checkpoint_best.pt"
    ck.write_bytes(b"weights")
    manifest = json.loads(json.dumps(manifest_from_meta(_meta(), checkpoint=ck, epoch=7, config=None)))
    facts = BundleFacts(name="", version="1.0.0", input_name="image", cam_shape=(16, 16),
                        artifacts={"onnx": "model.onnx"}, primary_artifact="onnx", gate_data=["folder:/x"],
                        calibration_data="fracatlas:/data/fracatlas", software={"python": "3.11"},
                        inference_precision="f32")
    card = card_from_manifest(manifest, facts)
    assert card["name"] == "efficientnet_lite0-fracture" and card["body_parts"] == ["hand", "leg"]
    assert card["task"] == {"name": "fracture", "positive_label": "fractured", "negative_label": "not fractured",
                            "display_word": "fracture"}
    assert card["outputs"]["body_part_prob"]["shape"] == [-1, 2] and card["outputs"]["cam"]["shape"] == [-1, 16, 16]
    assert card["provenance"]["checkpoint_epoch"] == 7 and card["validation"]["verdict"] == "not_validated"
    assert card["metrics"]["internal_validation"]["study_auc_ci95"] == [0.6, 0.9]
    final = gated_card(card, validation={"verdict": "passed", "precision": "int8"},
                       gate_results=[{"dataset": "val", "n_images": 3}], quantization={"method": "ptq"},
                       indications={"regions": ["hand"]})
    assert final["metrics"]["gate:val"] == {"dataset": "val", "n_images": 3} and "gate:val" not in card["metrics"]
    assert list(final)[-2:] == ["quantization", "indications"]
    validate_card({**final, "files": {"model.onnx": "0" * 64}})
