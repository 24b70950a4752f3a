"""Calibration and the gate never use the images a non-MURA model was trained on."""

from __future__ import annotations

import shutil

import pytest

from compress.sources import resolve_split
from models.datasources import split_source
from models.errors import ConfigError


def _data(source: str, split: dict | None = None) -> dict:
    """A run manifest's ``data``: the training source and how the trainer split it."""
    split = {"method": "group_by_patient", "val_fraction": 0.25, "seed": 3} if split is None else split
    return {"source": source, "split": split or None}


def test_own_training_pool_is_split_as_the_trainer_split_it(phantom):
    spec = f"folder:{phantom / 'external'}"
    calib = resolve_split(spec, "calibration", _data(spec))
    val = resolve_split(spec, "validation", _data(spec))
    _, want_val, _ = split_source(spec, 0.25, 3)
    assert [r.path for r in val.records] == [r.path for r in want_val.records]
    assert not {r.path for r in calib.records} & {r.path for r in val.records}
    whole = resolve_split(spec, "validation", _data(f"mura:{phantom / 'mura'}"))  # as an external set
    assert len(calib.records) + len(val.records) == len(whole.records)


def test_trainer_and_compress_split_alike(phantom):
    """The trainer's split_data is split_source with the run's config: one function, one split."""
    from trainer.train import TrainConfig, split_data

    spec = f"folder:{phantom / 'external'}"
    _, trainer_val, _ = split_data(TrainConfig(data=spec, val_fraction=0.25, seed=3))
    assert [r.path for r in resolve_split(spec, "validation", _data(spec)).records] == \
        [r.path for r in trainer_val.records]


def test_external_source_is_used_whole_minus_fracatlas_images(phantom, tmp_path):
    ext = tmp_path / "ext"
    shutil.copytree(phantom / "external", ext)
    first = sorted(ext.rglob("*.jpg"))[0]
    first.rename(first.with_name("IMG0000123.jpg"))
    spec = f"folder:{ext}"
    fracatlas = _data("fracatlas:/data/fracatlas")
    whole = resolve_split(spec, "validation", _data(f"mura:{phantom / 'mura'}")).records
    assert any(r.path.endswith("IMG0000123.jpg") for r in whole)
    seen_removed = resolve_split(spec, "validation", fracatlas).records
    assert len(seen_removed) == len(whole) - 1
    assert not any(r.path.endswith("IMG0000123.jpg") for r in seen_removed)
    assert len(resolve_split(spec, "calibration", fracatlas).records) == len(whole)


def test_mura_uses_its_official_splits(phantom):
    spec = f"mura:{phantom / 'mura'}"
    assert resolve_split(spec, "validation", _data(spec)).name == "phantom mura-v1.1/valid"
    assert resolve_split(spec, "calibration", _data(spec)).name == "phantom mura-v1.1/train"


def test_unknown_split_is_a_clear_error(phantom):
    """An old checkpoint without its config.json: the manifest knows the source but not the split."""
    spec = f"folder:{phantom / 'external'}"
    with pytest.raises(ConfigError, match="records no split.*config.json"):
        resolve_split(spec, "validation", _data(spec, split={}))
