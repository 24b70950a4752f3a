"""The run manifest: the schema-checked hand-over from mura-train to mura-compress."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from models.errors import ConfigError, ManifestError
from models.manifest import (
    MANIFEST_FILE,
    find_manifest,
    legacy_manifest,
    manifest_from_meta,
    read_manifest,
    write_manifest,
)

SUMMARY = {"dataset": "fracatlas (train part)", "source": "/data/fracatlas", "task": "fracture", "n_images": 80,
           "n_studies": 80, "n_patients": 12, "n_positive_images": 20, "body_parts": {"hand": 80}, "n_problems": 0}
SET = {"n_images": 20, "n_failed": 0, "n_studies": 20,
       "image": {"auc": 0.8, "accuracy": 0.7, "auc_ci95": (0.6, 0.9)},
       "study": {"auc": 0.8, "kappa": 0.4, "accuracy": 0.7, "auc_ci95": (0.6, 0.9), "ece": float("nan")},
       "operating_points": {"likely": {"threshold": 0.5, "sensitivity": 0.6, "specificity": 0.9}}}


def _meta(**changes) -> dict:
    """A finished run's meta, as trainer.finalize leaves it in checkpoint_best.pt."""
    meta = {"architecture": "efficientnet_lite0", "cam_pool": "lse", "cam_stride": 16, "body_parts": ["hand", "leg"],
            "task": "fracture",
            "preprocess": {"input_size": 256, "mean": 0.5, "std": 0.25, "clip_percentiles": (0.5, 99.5),
                           "version": "1"},
            "provenance": {"initialisation": "ImageNet (imagenet)", "localisation": "image labels only",
                           "training_data": SUMMARY, "validation_data": {**SUMMARY, "dataset": "val"},
                           "test_data": None, "data_source": "fracatlas:/data/fracatlas"},
            "calibration": {"method": "platt", "slope": 0.9, "intercept": -0.3},
            "thresholds": {"suspicious": 0.2, "likely": 0.6}, "metrics": {"internal_validation": SET},
            "best_epoch": 7}
    meta.update(changes)
    return meta


@pytest.fixture
def checkpoint(tmp_path) -> Path:
    ck = tmp_path / "checkpoint_best.pt"
    ck.write_bytes(b"weights")
    return ck


def _manifest(ck: Path, **changes) -> dict:
    return manifest_from_meta(_meta(**changes), checkpoint=ck, epoch=7,
                              config={"val_fraction": 0.15, "seed": 0, "max_train_images": 0})


def test_round_trip(checkpoint):
    path = write_manifest(checkpoint.parent / MANIFEST_FILE, _manifest(checkpoint))
    m = read_manifest(path)
    assert m["model"] == {"architecture": "efficientnet_lite0", "cam_pool": "lse", "cam_stride": 16,
                          "body_parts": ["hand", "leg"],
                          "task": {"name": "fracture", "positive_label": "fractured", "negative_label": "not fractured"}}
    assert m["data"]["split"] == {"method": "group_by_patient", "val_fraction": 0.15, "seed": 0, "max_train_images": 0}
    assert m["checkpoint"]["file"] == "checkpoint_best.pt" and m["checkpoint"]["epoch"] == 7
    assert m["preprocessing"]["clip_percentiles"] == [0.5, 99.5]  # JSON: tuples are lists
    assert m["metrics"]["internal_validation"]["study"]["ece"] is None  # strict JSON: NaN is null
    assert m["licences"]["training_data"].startswith("FracAtlas")
    assert find_manifest(checkpoint) == m


@pytest.mark.parametrize(("change", "field"), [
    ({"architecture": ""}, "model/architecture"),
    ({"cam_pool": "median"}, "model/cam_pool"),
    ({"task": "tumour"}, "model/task/name"),
    ({"body_parts": []}, "model/body_parts"),
    ({"thresholds": {"suspicious": 0.2, "likely": 1.5}}, "thresholds/likely"),
    ({"thresholds": {"suspicious": 0.7, "likely": 0.6}}, "thresholds/suspicious"),
    ({"metrics": {"test": {"n_images": 3}}}, "metrics/test"),
])
def test_a_bad_field_is_a_typed_error_naming_file_and_field(checkpoint, change, field):
    path = checkpoint.parent / MANIFEST_FILE
    with pytest.raises(ManifestError) as e:
        write_manifest(path, _manifest(checkpoint, **change))
    assert e.value.field == field and e.value.path == str(path)
    assert str(path) in str(e.value) and f"'{field}'" in str(e.value)
    assert not path.exists()  # nothing invalid is ever written


def test_reading_a_hand_edited_manifest_names_the_field(checkpoint):
    path = write_manifest(checkpoint.parent / MANIFEST_FILE, _manifest(checkpoint))
    m = json.loads(path.read_text())
    m["preprocessing"]["input_size"] = "256"
    path.write_text(json.dumps(m))
    with pytest.raises(ManifestError, match="run_manifest.json: invalid run manifest at 'preprocessing/input_size'"):
        read_manifest(path)
    path.write_text("{not json")
    with pytest.raises(ManifestError, match="'<root>': not readable JSON"):
        read_manifest(path)
    assert issubclass(ManifestError, ConfigError)  # the CLIs' error handling catches it


def test_a_manifest_of_a_rewritten_checkpoint_is_refused(checkpoint):
    write_manifest(checkpoint.parent / MANIFEST_FILE, _manifest(checkpoint))
    checkpoint.write_bytes(b"weights of a resumed, unfinished run")
    with pytest.raises(ManifestError) as e:
        find_manifest(checkpoint)
    assert e.value.field == "checkpoint/sha256"


def test_a_manifest_of_another_checkpoint_is_not_this_ones(checkpoint):
    write_manifest(checkpoint.parent / MANIFEST_FILE, _manifest(checkpoint))
    last = checkpoint.with_name("checkpoint_last.pt")
    last.write_bytes(b"other")
    assert find_manifest(last) is None
    assert find_manifest(checkpoint.parent / "elsewhere" / "checkpoint_best.pt") is None


def test_legacy_checkpoint_gets_the_trainers_manifest(checkpoint):
    """A checkpoint from before manifests: its meta and config.json give the very manifest the
    trainer would have written."""
    (checkpoint.parent / "config.json").write_text(json.dumps({"data": "fracatlas:/data/fracatlas",
                                                               "val_fraction": 0.15, "seed": 0,
                                                               "max_train_images": 0, "arch": "x"}))
    written = read_manifest(write_manifest(checkpoint.parent / "written.json", _manifest(checkpoint)))
    assert legacy_manifest(checkpoint, _meta(), 7) == written


def test_legacy_checkpoint_defaults_and_unknown_split(checkpoint):
    """An unfinished or old run: no calibration, thresholds, metrics, CAM fields or config.json."""
    meta = _meta()
    for key in ("calibration", "thresholds", "metrics", "cam_pool", "cam_stride"):
        meta.pop(key)
    m = legacy_manifest(checkpoint, meta, 0)
    assert m["calibration"] == {"method": "none", "slope": 1.0, "intercept": 0.0}
    assert m["thresholds"] == {"suspicious": 0.3, "likely": 0.5} and m["metrics"] == {}
    assert (m["model"]["cam_pool"], m["model"]["cam_stride"]) == ("mean", 32)
    assert m["data"]["split"] is None


def test_legacy_meta_with_a_bad_field_names_the_checkpoint(checkpoint):
    with pytest.raises(ManifestError) as e:
        legacy_manifest(checkpoint, _meta(body_parts=None), 3)
    assert e.value.field == "model/body_parts" and str(checkpoint) in e.value.path


def test_licences_follow_initialisation_and_data(checkpoint):
    random_mura = _manifest(checkpoint, provenance={**_meta()["provenance"], "initialisation": "random",
                                                    "data_source": "mura:/x"})
    assert random_mura["licences"]["weights"].startswith("none")
    assert random_mura["licences"]["training_data"].startswith("MURA")
    assert "efficientnet-lite0" in _manifest(checkpoint)["licences"]["weights"]
