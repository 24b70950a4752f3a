"""The end of a training run: calibration, operating points, final figures and the hand-over.

The best checkpoint is scored on internal validation (and MURA's test split), Platt scaling and the
operating points are fitted there, and the figures and plots are written. The checkpoint's meta
gets them, and ``run_manifest.json`` (:mod:`models.manifest`), derived from that meta, is written
beside it: the only thing ``mura-compress`` reads about the run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from models.datasources import DatasetSplit, Record
from models.fsutil import atomic_write_json
from models.manifest import MANIFEST_FILE, manifest_from_meta, write_manifest
from models.metrics import choose_thresholds, evaluate_predictions, operating_points, study_ece
from models.nn.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from models.plots import draw_reliability_png
from models.preprocess import PreprocessConfig
from trainer.calibration import apply_platt, fit_calibration
from trainer.plots import write_evaluation_plots
from trainer.predict import predict


class RunSettings(Protocol):
    """What finishing a run needs of its ``TrainConfig`` (the split goes into the manifest)."""

    workers: int
    calibrate: bool
    sensitivity_target: float
    val_fraction: float
    seed: int
    max_train_images: int


def finalize(best_path: Path, val_split: DatasetSplit, test_split: DatasetSplit | None,
             cfg: RunSettings, out: Path) -> dict:
    """Reload the best model, calibrate it and choose thresholds on validation, score val (and
    test), save them in the checkpoint and hand the run over: summary.json and run_manifest.json."""
    ck = load_checkpoint(best_path)
    meta = ck["meta"]
    net = model_from_checkpoint(ck).to(memory_format=torch.channels_last)
    net.calibration = (1.0, 0.0)  # fitted afresh below, on the raw outputs
    pre = PreprocessConfig.from_dict(meta["preprocess"])
    bp_names = meta["body_parts"]
    raw, bps = predict(net, val_split.records, pre, bp_names, workers=cfg.workers)
    calibration = fit_calibration(val_split.records, raw, cfg.calibrate)
    cal = (calibration["slope"], calibration["intercept"])
    probs = apply_platt(raw, *cal)
    thresholds = choose_thresholds(val_split.records, probs, cfg.sensitivity_target)
    sets = [("internal_validation", val_split.records, probs, bps, raw)]
    if test_split is not None:
        tp, tb = predict(net, test_split.records, pre, bp_names, workers=cfg.workers)
        sets.append(("test", test_split.records, apply_platt(tp, *cal), tb, tp))
    metrics = {name: _final_metrics(out / "plots" / name, name, recs, pr, bp, rw, bp_names, thresholds,
                                    meta["architecture"])
               for name, recs, pr, bp, rw in sets}
    meta = {**meta, "calibration": calibration, "thresholds": thresholds, "metrics": metrics,
            "best_epoch": int(ck["epoch"]) + 1}
    save_checkpoint(best_path, {"model": ck["model"], "meta": meta, "epoch": ck["epoch"]})
    split = {"val_fraction": cfg.val_fraction, "seed": cfg.seed, "max_train_images": cfg.max_train_images}
    write_manifest(out / MANIFEST_FILE, manifest_from_meta(meta, checkpoint=best_path, epoch=meta["best_epoch"],
                                                           config=split))
    summary = {"checkpoint": str(best_path), **{k: meta[k] for k in ("architecture", "thresholds", "calibration", "metrics", "best_epoch")}}
    atomic_write_json(out / "summary.json", summary)
    for name, m in metrics.items():
        print(f"[{name}] image AUC {m['image']['auc']:.4f}  study AUC {m['study']['auc']:.4f}  "
              f"study kappa {m['study']['kappa']:.4f}  study acc {m['study']['accuracy']:.4f}  "
              f"({m['n_images']} images, {m['n_studies']} studies)")
    return summary


def _final_metrics(plots: Path, name: str, recs: list[Record], probs: np.ndarray, bps: np.ndarray,
                   raw: np.ndarray, body_parts: list[str], thresholds: dict[str, float], arch: str) -> dict:
    """One set's figures with intervals and operating points, and its plots (calibrated and raw)."""
    m = evaluate_predictions(recs, probs, bps, body_parts, thresholds["likely"], ci=True)
    m["study"]["ece_uncalibrated"] = study_ece(recs, raw)
    m["operating_points"] = operating_points(recs, probs, thresholds)
    write_evaluation_plots(plots, recs, probs, bps, body_parts, thresholds["likely"],
                           f"{arch} {name.replace('_', ' ')}")
    ok = ~np.isnan(raw)
    draw_reliability_png(plots / "reliability_uncalibrated.png",
                         [{"title": f"{name.replace('_', ' ')}: before calibration", "labels":
                           np.array([r.label for r in recs])[ok], "probs": raw[ok]}])
    return m
