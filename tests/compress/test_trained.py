"""compress reads the trainer's run manifest (compress.trained); older checkpoints still compress."""

from __future__ import annotations

import json
import shutil

import pytest

from compress.pipeline import CompressConfig, run
from compress.trained import load_trained, run_manifest
from models.card import load_bundle
from models.errors import ManifestError
from models.manifest import MANIFEST_FILE, read_manifest

SAME = ("task", "body_parts", "thresholds", "calibration", "licences", "input", "outputs", "provenance",
        "architecture", "artifacts", "primary_artifact")


def _old_run(tiny_checkpoint, tmp_path):
    """The run folder as mura-train wrote it before run manifests existed."""
    old = tmp_path / "old_run"
    old.mkdir()
    shutil.copy2(tiny_checkpoint, old / "checkpoint_best.pt")
    shutil.copy2(tiny_checkpoint.parent / "config.json", old / "config.json")
    return old / "checkpoint_best.pt"


def test_the_card_comes_from_the_manifest(tiny_bundle, tiny_checkpoint):
    card, m = load_bundle(tiny_bundle).card, read_manifest(tiny_checkpoint.parent / MANIFEST_FILE)
    assert card["body_parts"] == m["model"]["body_parts"] and card["architecture"] == m["model"]["architecture"]
    assert (card["task"]["positive_label"], card["task"]["negative_label"]) == ("abnormal", "normal")
    assert card["thresholds"] == m["thresholds"] and card["calibration"] == m["calibration"]
    assert card["input"]["preprocessing"] == m["preprocessing"] and card["licences"] == m["licences"]
    assert card["provenance"]["checkpoint_epoch"] == m["checkpoint"]["epoch"]
    assert card["metrics"]["internal_validation"]["study_auc"] == m["metrics"]["internal_validation"]["study"]["auc"]


def test_an_old_checkpoint_without_manifest_still_compresses(phantom, tiny_checkpoint, tiny_bundle, tmp_path):
    old = _old_run(tiny_checkpoint, tmp_path)
    assert run_manifest(old) == read_manifest(tiny_checkpoint.parent / MANIFEST_FILE)  # derived = written
    passed, card = run(CompressConfig(checkpoint=str(old), out=str(tmp_path / "bundle"),
                                      calib_data=f"mura:{phantom / 'mura'}",
                                      val_data=[f"mura:{phantom / 'mura'}", f"folder:{phantom / 'external'}"],
                                      budget=1.0, min_agreement=0.0, calib_size=32, latency_iters=2))
    assert passed
    reference = load_bundle(tiny_bundle).card
    assert {k: card[k] for k in SAME} == {k: reference[k] for k in SAME}
    assert load_bundle(tmp_path / "bundle").card["validation"]["verdict"] == "passed"
    assert not (old.parent / MANIFEST_FILE).exists()  # compress never writes the trainer's file


def test_a_bad_manifest_stops_compress_before_any_export(phantom, tiny_checkpoint, tmp_path):
    old = _old_run(tiny_checkpoint, tmp_path)
    m = read_manifest(tiny_checkpoint.parent / MANIFEST_FILE)
    m["model"]["cam_pool"] = "median"
    (old.parent / MANIFEST_FILE).write_text(json.dumps(m))
    with pytest.raises(ManifestError) as e:
        run(CompressConfig(checkpoint=str(old), out=str(tmp_path / "bundle"), calib_data=f"mura:{phantom / 'mura'}"))
    assert e.value.field == "model/cam_pool" and e.value.path == str(old.parent / MANIFEST_FILE)
    assert not (tmp_path / "bundle" / "model.onnx").exists()


def test_the_network_is_rebuilt_from_the_manifest(tiny_checkpoint):
    trained = load_trained(tiny_checkpoint)
    net = trained.network()
    assert not net.training and net.calibration == (trained.manifest["calibration"]["slope"],
                                                    trained.manifest["calibration"]["intercept"])
