"""Calibration and the gate never use the images a non-MURA model was trained on."""

from __future__ import annotations

import json
import shutil

import pytest

from compress.sources import resolve_split
from models.errors import ConfigError
from trainer.train import TrainConfig, split_data


def _run_dir(tmp_path, data: str):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"data": data, "val_fraction": 0.25, "seed": 3, "arch": "custom_cnn"}))
    return run / "checkpoint_best.pt"  # only its folder matters here


def test_own_training_pool_is_split_as_the_trainer_split_it(phantom, tmp_path):
    spec = f"folder:{phantom / 'external'}"
    ck = _run_dir(tmp_path, spec)
    calib = resolve_split(spec, "calibration", ck, spec)
    val = resolve_split(spec, "validation", ck, spec)
    _, want_val, _ = split_data(TrainConfig(data=spec, val_fraction=0.25, seed=3))
    assert [r.path for r in val.records] == [r.path for r in want_val.records]
    assert not {r.path for r in calib.records} & {r.path for r in val.records}
    whole = resolve_split(spec, "validation", ck, f"mura:{phantom / 'mura'}")  # as an external set
    assert len(calib.records) + len(val.records) == len(whole.records)


def test_external_source_is_used_whole_minus_fracatlas_images(phantom, tmp_path):
    ext = tmp_path / "ext"
    shutil.copytree(phantom / "external", ext)
    first = sorted(ext.rglob("*.jpg"))[0]
    first.rename(first.with_name("IMG0000123.jpg"))
    spec = f"folder:{ext}"
    ck = _run_dir(tmp_path, "fracatlas:/data/fracatlas")
    whole = resolve_split(spec, "validation", ck, f"mura:{phantom / 'mura'}").records
    assert any(r.path.endswith("IMG0000123.jpg") for r in whole)
    seen_removed = resolve_split(spec, "validation", ck, "fracatlas:/data/fracatlas").records
    assert len(seen_removed) == len(whole) - 1
    assert not any(r.path.endswith("IMG0000123.jpg") for r in seen_removed)
    assert len(resolve_split(spec, "calibration", ck, "fracatlas:/data/fracatlas").records) == len(whole)


def test_mura_uses_its_official_splits(phantom, tmp_path):
    spec = f"mura:{phantom / 'mura'}"
    ck = _run_dir(tmp_path, spec)
    assert resolve_split(spec, "validation", ck, spec).name == "phantom mura-v1.1/valid"
    assert resolve_split(spec, "calibration", ck, spec).name == "phantom mura-v1.1/train"


def test_missing_run_config_is_a_clear_error(phantom, tmp_path):
    spec = f"folder:{phantom / 'external'}"
    with pytest.raises(ConfigError, match="config.json: missing"):
        resolve_split(spec, "validation", tmp_path / "nowhere" / "checkpoint_best.pt", spec)
