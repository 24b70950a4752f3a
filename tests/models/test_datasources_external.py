"""The external set is scored without the FracAtlas images a FracAtlas-trained model has seen."""

from __future__ import annotations

from pathlib import Path

from models.datasources import FRACATLAS_PREFIX, external_records
from tests.conftest import shared_data


def test_fracatlas_images_are_left_out_of_the_external_set_for_fracatlas_models():
    root = shared_data("bone-fracture-binary")
    spec = f"folder:{root}"
    everything = external_records(spec, "mura:/somewhere")
    for_fracatlas = external_records(spec, f"fracatlas:{shared_data('fracatlas')}")
    assert len(everything) == 3782  # train and test folders together (the data README's count)
    overlap = [r for r in everything if Path(r.path).name.startswith(FRACATLAS_PREFIX)]
    assert 85 <= len(overlap) <= 100  # "about 90" FracAtlas images, some rotated
    assert len(for_fracatlas) == len(everything) - len(overlap)
    assert not any(Path(r.path).name.startswith(FRACATLAS_PREFIX) for r in for_fracatlas)
