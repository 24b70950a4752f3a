"""A tiny training run for every backbone (64 px, phantom radiographs, one step of 8 images): the loss is
finite, the checkpoints load with weights_only=True, and mura-evaluate scores the result."""

import csv
import json
import math

import pytest
import torch

from models.datasources import load_source
from trainer.evaluate import main as evaluate_main
from trainer.train import TrainConfig, train


@pytest.fixture(scope="module")
def small_csv(phantom, tmp_path_factory):
    """About 40 phantom MURA images (whole patients, both labels, several body parts) as csv:."""
    recs = load_source(f"mura:{phantom / 'mura'}", "train").records
    patients = sorted({r.patient_id for r in recs})[:8]
    rows = [r for r in recs if r.patient_id in patients]
    assert {r.label for r in rows} == {0, 1} and len({r.body_part for r in rows}) > 1
    path = tmp_path_factory.mktemp("small") / "small.csv"
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "body_part", "study_id", "patient_id"])
        w.writerows([r.path, r.label, r.body_part, r.study_id, r.patient_id] for r in rows)
    return path


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["custom_cnn", "resnet50", "densenet169", "efficientnet_b0"])
def test_tiny_run_per_backbone(arch, small_csv, tmp_path, capsys):
    out = tmp_path / arch
    summary = train(TrainConfig(data=f"csv:{small_csv}", out=str(out), arch=arch, input_size=64, epochs=1,
                                batch_size=8, max_train_images=8, val_fraction=0.3, seed=0, lr=3e-4))
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert len(rows) == 1 and math.isfinite(float(rows[0]["train_loss"]))
    for name in ("checkpoint_best.pt", "checkpoint_last.pt"):
        ck = torch.load(out / name, map_location="cpu", weights_only=True)  # no pickled classes
        assert ck["meta"]["architecture"] == arch
        assert all(torch.isfinite(v).all() for v in ck["model"].values() if v.is_floating_point())
    assert summary["architecture"] == arch and (out / "plots" / "internal_validation" / "roc.png").is_file()
    capsys.readouterr()
    rc = evaluate_main(["--checkpoint", str(out / "checkpoint_best.pt"), "--data", f"csv:{small_csv}",
                        "--json", str(out / "eval.json")])
    assert rc == 0, capsys.readouterr().err
    m = json.loads((out / "eval.json").read_text())["metrics"]
    assert m["n_images"] > 0 and m["n_failed"] == 0 and 0 <= m["image"]["auc"] <= 1


def test_clahe_run_records_clahe_for_the_runtime(small_csv, tmp_path):
    """--clahe reaches the checkpoint's preprocessing (what compress copies into the card)."""
    from models.preprocess import PreprocessConfig
    from trainer.cli import build_parser, resolve_config

    cfg = resolve_config(build_parser().parse_args(
        ["--data", f"csv:{small_csv}", "--out", str(tmp_path), "--arch", "custom_cnn", "--input-size", "48",
         "--epochs", "1", "--batch-size", "8", "--max-train-images", "8", "--val-fraction", "0.3",
         "--clahe", "--clahe-tiles", "4", "--cache-dir", str(tmp_path / "cache")]))
    assert cfg.clahe is True and cfg.clahe_tiles == 4
    train(cfg)
    meta = torch.load(tmp_path / "checkpoint_best.pt", weights_only=True)["meta"]
    pre = PreprocessConfig.from_dict(meta["preprocess"])
    assert pre.clahe and pre.clahe_tiles == 4 and pre.clahe_clip_limit == 0.01
    assert json.loads((tmp_path / "config.json").read_text())["clahe"] is True
