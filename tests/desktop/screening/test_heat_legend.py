"""The heatmap's colour scale travels with every heatmap (issue 15 §4)."""

from __future__ import annotations

import json

import numpy as np
import pydicom
import pytest

from desktop.screening.heat_legend import cam_grid, legend_rgb, legend_text
from desktop.screening.render import colormap_lut
from models.reference import reference_dir


@pytest.fixture(scope="module")
def card() -> dict:
    return json.loads((reference_dir() / "card.json").read_text())


def test_legend_says_units_and_the_models_real_grid(card):
    assert cam_grid(card) == (16, 16)
    text = legend_text(card)
    assert "local P(fracture) = sigmoid(CAM logit)" in text
    assert "16 × 16 cells (one per 16 px of its 256 px input)" in text


def test_legend_picture_holds_the_colour_scale(card):
    img = legend_rgb(card, width=300)
    assert img.dtype == np.uint8 and img.shape[1] == 300 and img.shape[2] == 3
    lut = colormap_lut()
    rows = [r for r in img if (np.abs(r.astype(int) - lut[0]).sum(axis=1) < 3).any()
            and (np.abs(r.astype(int) - lut[255]).sum(axis=1) < 3).any()]
    assert rows  # a row running from the scale's cold end to its hot end


def test_the_secondary_capture_carries_the_legend(phantom, tiny_bundle, tmp_path):
    from desktop.screening.dicom_export import write_study_dicom
    from desktop.screening.discovery import discover
    from models.engine import Engine
    from models.imageio import load_image

    eng = Engine(tiny_bundle)
    st = discover(phantom / "dicom").studies[0]
    ref = st.images[0]
    px = load_image(ref.path).pixels
    pred = eng.predict([px])[0]
    agg = __import__("models.engine", fromlist=["aggregate_study"]).aggregate_study([pred], eng.thresholds)
    with_card = write_study_dicom([(ref.path, px, pred)], agg, eng.bundle.card, tmp_path / "a")
    sc = pydicom.dcmread(with_card[0]).pixel_array
    lut = colormap_lut()
    band = sc[: sc.shape[0] - px.shape[0]]
    assert (np.abs(band.reshape(-1, 3).astype(int) - lut[128]).sum(axis=1) < 4).any()  # mid-scale colour in the band
