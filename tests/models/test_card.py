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
