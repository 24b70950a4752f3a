"""The end of a run hands it over: run_manifest.json beside the best checkpoint."""

from __future__ import annotations

from models.manifest import MANIFEST_FILE, find_manifest, legacy_manifest
from models.nn.checkpoint import load_checkpoint


def test_training_writes_the_manifest_of_its_best_checkpoint(tiny_checkpoint):
    assert (tiny_checkpoint.parent / MANIFEST_FILE).is_file()
    m = find_manifest(tiny_checkpoint)  # validated, and its sha256 is this very file's
    ck = load_checkpoint(tiny_checkpoint)
    meta = ck["meta"]
    assert m["checkpoint"]["epoch"] == meta["best_epoch"] == ck["epoch"] + 1
    assert m["model"]["architecture"] == meta["architecture"] == "custom_cnn"
    assert m["preprocessing"]["input_size"] == 64
    assert m["thresholds"] == meta["thresholds"] and m["calibration"]["method"] == meta["calibration"]["method"]
    assert m["data"]["source"] == meta["provenance"]["data_source"]
    assert m["data"]["split"] == {"method": "group_by_patient", "val_fraction": 0.15, "seed": 0, "max_train_images": 0}
    assert set(m["metrics"]) == {"internal_validation", "test"}
    # a checkpoint of this run without its manifest would get the very same one
    assert legacy_manifest(tiny_checkpoint, meta, ck["epoch"] + 1) == m
