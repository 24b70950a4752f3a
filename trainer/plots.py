"""The evaluation figures of one model on one data set: ROC, confusion matrices, reliability.

Written by ``mura-evaluate --plots DIR`` and, for the best checkpoint, at the end of training
(``OUT/plots/<set>/``). Image level and study level (a study's probability is the mean of its
images') side by side; the body-part confusion matrix is per image (every image has a part).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from models.datasources import Record
from models.metrics import aggregate_studies, body_part_indices
from models.plots import (
    binary_confusion_panel,
    draw_confusion_png,
    draw_reliability_png,
    draw_roc_png,
)


def write_evaluation_plots(out_dir: str | Path, records: list[Record], probs: np.ndarray, bps: np.ndarray | None,
                           body_parts: list[str], threshold: float, name: str = "") -> dict[str, Path]:
    """Write ``roc.png``, ``confusion.png``, ``reliability.png`` and, with more than one body part,
    ``body_part_confusion.png`` into ``out_dir``; returns {figure: path}. Undecodable images
    (nan probability) are left out, as in the metrics."""
    out = Path(out_dir)
    ok = ~np.isnan(probs)
    recs = [r for r, k in zip(records, ok, strict=True) if k]
    p = probs[ok]
    y = np.array([r.label for r in recs], dtype=int)
    _, ys, ps = aggregate_studies([r.study_id for r in recs], y, p)
    tag = f"{name}: " if name else ""
    img_t, study_t = f"{tag}images (n={len(y)})", f"{tag}studies (n={len(ys)})"
    paths = {
        "roc": draw_roc_png(out / "roc.png", [{"title": img_t, "labels": y, "series": {"model": p}},
                                              {"title": study_t, "labels": ys, "series": {"model": ps}}]),
        "reliability": out / "reliability.png",
        "confusion": out / "confusion.png",
    }
    draw_reliability_png(paths["reliability"], [{"title": img_t, "labels": y, "probs": p},
                                                {"title": study_t, "labels": ys, "probs": ps}])
    draw_confusion_png(paths["confusion"], [binary_confusion_panel(img_t, y, p, threshold),
                                            binary_confusion_panel(study_t, ys, ps, threshold)])
    if bps is not None and len(body_parts) > 1:
        true_bp, pred_bp = body_part_indices(recs, bps[ok], body_parts)
        known = true_bp >= 0  # parts the model was not trained on have no row
        paths["body_part_confusion"] = out / "body_part_confusion.png"
        draw_confusion_png(paths["body_part_confusion"],
                           [{"title": f"{tag}body part per image (n={int(known.sum())})", "labels": body_parts,
                             "y_true": true_bp[known], "y_pred": pred_bp[known]}])
    return paths
