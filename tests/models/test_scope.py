"""models.scope: what the model is not indicated for gets no verdict (issue 15 §1)."""

from __future__ import annotations

import numpy as np
import pytest
from pydicom.dataset import Dataset

from models.scope import (
    EXTREMITY_REGIONS,
    HeaderFields,
    Indications,
    body_part_refusal,
    chroma,
    header_refusal,
    image_refusal,
    prediction_refusal,
    regions_for,
    regions_in,
)

FRACATLAS = Indications.from_card({"body_parts": ["hand", "hip", "leg", "mixed", "shoulder"],
                                   "indications": {"regions": list(regions_for(["hand", "hip", "leg", "shoulder"])),
                                                   "min_body_part_confidence": 0.68}})
MURA = Indications.from_card({"body_parts": ["elbow", "finger", "forearm", "hand", "humerus", "shoulder", "wrist"]})


def _ds(**kw) -> Dataset:
    ds = Dataset()
    for k, v in kw.items():
        setattr(ds, k, v)
    return ds


@pytest.mark.parametrize("modality,refused", [
    ("CR", False), ("DX", False), ("RF", False), ("", False), ("OT", False),
    ("US", True), ("MR", True), ("CT", True), ("PT", True), ("NM", True), ("SR", True), ("MG", True),
    ("PX", True),
])
def test_modality(modality, refused):
    r = header_refusal(HeaderFields(modality=modality), FRACATLAS)
    assert (r is not None) == refused
    if refused:
        assert r.check == "modality" and modality in r.reason


@pytest.mark.parametrize("body_part,descriptions,refused", [
    ("CHEST", (), True),
    ("THORAX", (), True),
    ("", ("MODALITYLUT - TEETH",), True),
    ("SKULL", (), True),
    ("HEAD", (), True),
    ("LSPINE", (), True),
    ("HAND", (), False),
    ("EXTREMITY", ("Non-ossifying fibroma of distal femur",), False),
    ("HIP", ("HIP JOINT",), False),
    ("", ("Hüfte links a.p.",), False),
    ("", ("Thorax p.a.",), True),  # German chest
    ("", ("Radiografía de tórax",), True),  # Spanish chest, accents folded
    ("", ("Poignet face",), False),  # French wrist
    ("EXTREMITY", ("Скелет Крупный 25-45 kg", "Локоть LAT"), False),  # Russian: elbow
    ("", ("humeral head fracture",), False),  # "head" of a bone is not the head
    ("", ("unknown words only",), False),  # unknown is not a refusal
    ("", (), False),
    ("CHEST", ("HAND",), False),  # an indicated part named anywhere wins
])
def test_body_part_from_header(body_part, descriptions, refused):
    r = body_part_refusal(HeaderFields(body_part=body_part, descriptions=descriptions), FRACATLAS)
    assert (r is not None) == refused, r


def test_indications_depend_on_the_model():
    """A knee is indicated for the FracAtlas model (leg), not for MURA's upper-limb model."""
    knee = HeaderFields(modality="CR", body_part="KNEE")
    assert header_refusal(knee, FRACATLAS) is None
    r = header_refusal(knee, MURA)
    assert r is not None and r.check == "body_part" and "knee" in r.reason
    assert header_refusal(HeaderFields(modality="DX", body_part="ELBOW"), MURA) is None


def test_card_without_indications_gets_the_regions_its_body_parts_imply():
    ind = Indications.from_card({"body_parts": ["hand", "leg"]})
    assert "wrist" in ind.regions and "knee" in ind.regions and "shoulder" not in ind.regions
    assert ind.min_body_part_confidence is None
    assert Indications.from_card({"body_parts": ["unknown"]}).regions == EXTREMITY_REGIONS


def test_multiframe_palette_and_own_outputs_are_refused():
    assert header_refusal(HeaderFields(modality="US", frames=2), FRACATLAS).check == "modality"
    assert header_refusal(HeaderFields(modality="OT", frames=87), FRACATLAS).check == "frames"
    assert header_refusal(HeaderFields(modality="OT", photometric="PALETTE COLOR"), FRACATLAS).check == "colour"
    assert header_refusal(HeaderFields(modality="OT", photometric="RGB"), FRACATLAS).check == "colour"
    assert header_refusal(HeaderFields(modality="CR", photometric="RGB"), FRACATLAS) is None
    assert header_refusal(HeaderFields(modality="OT", manufacturer="mura-fracture"), FRACATLAS).check == "own_output"


def test_header_fields_from_a_dataset():
    h = HeaderFields.from_dataset(_ds(Modality="CR", BodyPartExamined="CHEST", StudyDescription="THORAX",
                                      NumberOfFrames="3", PhotometricInterpretation="MONOCHROME1"))
    assert (h.modality, h.body_part, h.descriptions, h.frames) == ("CR", "CHEST", ("THORAX",), 3)
    assert HeaderFields.from_dataset(_ds()).frames == 1


def test_regions_in_folds_accents_and_case():
    assert regions_in("HÜFTE") == {"hip"} and regions_in("hüfte") == {"hip"}
    assert regions_in("HEAD", whole_value=True) == {"head"} and regions_in("HEAD") == set()


def _radiograph(seed: int = 0, size: int = 256) -> np.ndarray:
    """A radiograph-like image: smooth anatomy, a dark background, noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    bone = np.exp(-((xx - 0.5) ** 2) / 0.02) * (0.5 + 0.3 * np.sin(yy * 9))
    return np.clip(0.1 + 0.7 * bone + rng.normal(0, 0.03, (size, size)), 0, 1).astype(np.float32)


def test_image_checks():
    assert image_refusal(_radiograph()) is None
    assert image_refusal(np.full((300, 300), 0.4, np.float32)).check == "blank"
    bars = np.repeat(np.repeat(np.linspace(0, 1, 8, dtype=np.float32)[None], 64, axis=1), 256, axis=0)
    assert image_refusal(bars).check == "pattern"
    assert image_refusal(_radiograph(), colour=0.2).check == "colour"
    assert image_refusal(_radiograph(), colour=0.04) is None  # JPEG chroma noise of a gray radiograph


def test_prediction_refusal_uses_the_cards_threshold():
    assert prediction_refusal({"hand": 0.9, "leg": 0.1}, FRACATLAS) is None
    r = prediction_refusal({"hand": 0.5, "leg": 0.5}, FRACATLAS)
    assert r is not None and r.check == "confidence" and "0.68" in r.reason
    assert prediction_refusal({"hand": 0.5, "leg": 0.5}, MURA) is None  # no threshold in the card


@pytest.mark.parametrize("shape", [(7, 5, 3), (1400, 1100, 3), (600, 900, 4), (0, 4, 3)])
def test_chroma_is_the_mean_channel_spread(shape):
    """The channel-by-channel chroma gives the same number as the plain max - min over the
    channels (the scope threshold must not move with a speed-up)."""
    rgb = np.random.default_rng(1).random(shape, dtype=np.float32)
    step = max(1, max(shape[:2]) // 512)
    a = rgb[::step, ::step, :3]
    expected = float((a.max(axis=-1) - a.min(axis=-1)).mean()) if a.size else 0.0
    assert chroma(rgb) == expected
