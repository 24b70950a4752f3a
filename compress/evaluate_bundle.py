"""What a shipped bundle scores against the truth, from its own files: the reference model's figures.

The trainer's figures come from the torch checkpoint; the gate compares INT8 with FP32. A clinician
needs a third thing: how the files that ship (INT8 and FP32 IR, calibration included) do against
the labels, on internal validation and on an external set, with intervals; whether the
probabilities mean what they say (ECE before and after the card's calibration); and whether the
heatmap points at the fracture (pointing game on FracAtlas's boxes: the share of fractured images
whose heatmap maximum falls inside a box).

    python -m compress.evaluate_bundle --bundle B --checkpoint runs/x/checkpoint_best.pt \
        --data fracatlas:PATH --data folder:PATH --boxes PATH/boxes.csv --json OUT.json
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from compress.sources import resolve_split
from compress.trained import run_manifest
from models.card import load_bundle
from models.engine import Engine
from models.errors import ImageDecodeError, MuraError
from models.fsutil import atomic_write_json
from models.imageio import load_image
from models.metrics import (
    evaluate_predictions,
    expected_calibration_error,
    operating_points,
    study_ece,
)
from models.plots import draw_reliability_png

ARTIFACTS = {"int8": "openvino_int8", "fp32": "openvino_fp32"}


def load_boxes(path: str | Path) -> dict[str, list[tuple[float, float, float, float]]]:
    """FracAtlas ``boxes.csv``: image file name -> [(x, y, width, height)] in image pixels."""
    out: dict[str, list] = defaultdict(list)
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            out[row["image_id"]].append(tuple(float(row[k]) for k in ("x", "y", "width", "height")))
    return dict(out)


def points_inside(heat: np.ndarray, boxes: list[tuple[float, float, float, float]]) -> bool:
    """Does the heatmap's maximum fall inside any box (pixel centres, box edges inclusive)?"""
    r, c = np.unravel_index(int(np.argmax(heat)), heat.shape)
    return any(x <= c + 0.5 <= x + w and y <= r + 0.5 <= y + h for x, y, w, h in boxes)


def score_records(engine: Engine, records: list, boxes: dict | None) -> tuple[np.ndarray, list[bool]]:
    """Calibrated probability per record (nan if undecodable) and, for boxed images, hit or miss."""
    probs = np.full(len(records), np.nan)
    hits: list[bool] = []
    for i, r in enumerate(records):
        try:
            img = load_image(r.path).pixels
        except ImageDecodeError:
            continue
        pred = engine.predict([img])[0]
        probs[i] = pred.probability
        name = Path(r.path).name
        if boxes is not None and r.label == 1 and name in boxes:
            hits.append(points_inside(pred.heatmap(img.shape[:2]), boxes[name]))
    return probs, hits


def uncalibrated(probs: np.ndarray, calibration: dict) -> np.ndarray:
    """The network's raw probability, by inverting the card's (monotone) Platt scaling."""
    a, b = float(calibration.get("slope", 1.0)), float(calibration.get("intercept", 0.0))
    q = np.clip(probs, 1e-7, 1 - 1e-7)
    z = (np.log(q) - np.log1p(-q) - b) / a
    return 1 / (1 + np.exp(-z))


def write_reliability(path: Path, name: str, y: np.ndarray, raw: np.ndarray, calibrated: np.ndarray) -> Path:
    """Reliability diagram of the network's raw probabilities beside the card-calibrated ones."""
    draw_reliability_png(path, [{"title": f"{name}: uncalibrated (n={len(y)})", "labels": y, "probs": raw},
                                {"title": f"{name}: calibrated (card)", "labels": y, "probs": calibrated}])
    return path


def evaluate_set(bundle, artifact: str, split, boxes: dict | None, plots: Path | None = None) -> dict:
    engine = Engine(bundle, artifact=ARTIFACTS[artifact])
    t0 = time.time()
    probs, hits = score_records(engine, split.records, boxes)
    cal = bundle.card.get("calibration", {})
    m = evaluate_predictions(split.records, probs, None, bundle.body_parts, bundle.thresholds["likely"], ci=True)
    ok = ~np.isnan(probs)
    y = np.array([r.label for r in split.records])[ok]
    raw = uncalibrated(probs, cal)
    m["operating_points"] = operating_points(split.records, probs, bundle.thresholds)
    m["image"]["ece_uncalibrated"] = expected_calibration_error(y, raw[ok])
    m["image"]["ece"] = expected_calibration_error(y, probs[ok])
    m["study"]["ece_uncalibrated"] = study_ece(split.records, raw)
    m["pointing_game"] = {"n": len(hits), "hits": int(sum(hits)),
                          "rate": float(np.mean(hits)) if hits else float("nan")}
    if plots is not None:
        slug = "".join(c if c.isalnum() else "_" for c in split.name).strip("_")
        m["reliability_png"] = str(write_reliability(plots / f"reliability_{slug}_{artifact}.png", split.name,
                                                     y, raw[ok], probs[ok]))
    m["seconds"] = time.time() - t0
    return {"dataset": split.name, "artifact": artifact, **m}


def summary_line(r: dict) -> str:
    lo, hi = r["image"].get("auc_ci95", (float("nan"), float("nan")))
    ops = " ".join(f"{k}: sens {v['sensitivity']:.3f} spec {v['specificity']:.3f}"
                   for k, v in r["operating_points"].items())
    pg = r["pointing_game"]
    return (f"{r['dataset']} [{r['artifact']}] n={r['n_images']} AUC {r['image']['auc']:.4f} [{lo:.3f}, {hi:.3f}] "
            f"ECE {r['image']['ece_uncalibrated']:.3f} -> {r['image']['ece']:.3f}; {ops}"
            + (f"; pointing game {pg['hits']}/{pg['n']} = {pg['rate']:.3f}" if pg["n"] else ""))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m compress.evaluate_bundle", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", required=True, help="bundle folder (card.json + model files)")
    ap.add_argument("--checkpoint", required=True,
                    help="the bundle's checkpoint: its run manifest (run_manifest.json) rebuilds the split")
    ap.add_argument("--data", action="append", required=True,
                    help="source spec (repeatable); the checkpoint's own source gives its internal validation")
    ap.add_argument("--boxes", default=None, help="FracAtlas boxes.csv for the pointing game")
    ap.add_argument("--artifact", action="append", choices=sorted(ARTIFACTS), default=None,
                    help="which model files to score (default: int8 and fp32 when present)")
    ap.add_argument("--json", default=None, help="write every figure to this JSON file")
    ap.add_argument("--plots", default=None, help="folder for reliability diagrams (raw vs calibrated), one per set")
    a = ap.parse_args(argv)
    try:
        bundle = load_bundle(a.bundle)
        source = bundle.card["provenance"].get("training_data", {})
        data = run_manifest(a.checkpoint)["data"]
        boxes = load_boxes(a.boxes) if a.boxes else None
        arts = a.artifact or [k for k, v in ARTIFACTS.items() if v in bundle.card["artifacts"]]
        results = []
        for spec in a.data:
            split = resolve_split(spec, "validation", data)
            for art in arts:
                results.append(evaluate_set(bundle, art, split, boxes, Path(a.plots) if a.plots else None))
                print(summary_line(results[-1]), flush=True)
    except MuraError as e:
        print(f"evaluate_bundle: error: {e}", file=sys.stderr)
        return 2
    if a.json:
        atomic_write_json(a.json, {"bundle": bundle.model_id, "training_data": source,
                                   "calibration": bundle.card.get("calibration"), "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
