"""The scope checks on real files with the shipped reference model (issue 15 §1, measured).

Every non-extremity image of ../shared/data/dicom (chest, dental, ultrasound, MR, test patterns)
and every ImageNet photograph is refused; of FracAtlas's internal-validation images at most 2 %
are (the card's confidence threshold was fitted at 1.5 %). Skips without ../shared/data.
"""

from __future__ import annotations

import pytest

from models.engine import Engine
from models.reference import reference_dir
from models.scope import Indications
from tests.conftest import load_bench, shared_data


@pytest.fixture(scope="module")
def bench():
    return load_bench("scope")


@pytest.fixture(scope="module")
def engine():
    return Engine(reference_dir())


def test_every_non_extremity_image_is_refused(bench, engine):
    data = shared_data("dicom")
    ind = Indications.from_card(engine.bundle.card)
    outs = {f: bench.assess(data / f, engine, ind) for f in bench.NON_EXTREMITY_DICOM}
    assert {f: o.status for f, o in outs.items()} == dict.fromkeys(bench.NON_EXTREMITY_DICOM, "refused")
    # the chest film without any header hint is caught by the model's own body-part head
    assert outs["Monochrome1-Jpeg.dcm"].check == "confidence"
    photos = sorted(shared_data("imagenet-samples").glob("*.png"))
    assert photos and all(bench.assess(p, engine, ind).status == "refused" for p in photos)


def test_extremity_radiographs_are_scored(bench, engine):
    data = shared_data("dicom")
    ind = Indications.from_card(engine.bundle.card)
    assert all(bench.assess(data / f, engine, ind).status == "scored" for f in bench.EXTREMITY_DICOM)


def test_at_most_two_percent_of_internal_validation_is_refused(bench, engine):
    data = shared_data()
    paths = bench.fracatlas_internal_validation(data)
    assert len(paths) == 494
    ind = Indications.from_card(engine.bundle.card)
    refused = [p for p in paths if bench.assess(p, engine, ind).status == "refused"]
    assert len(refused) / len(paths) <= 0.02, refused
