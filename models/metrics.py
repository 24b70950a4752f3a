"""Classification metrics in plain numpy (the runtime and the compress gate have no sklearn).

MURA is judged per *study*: a study's probability is the mean of its images' probabilities.
The tests check every function against scikit-learn and hand-computed values. The last part
scores a set of :class:`models.datasources.Record` (image, study, per body part, operating
points): the trainer, ``mura-evaluate`` and compress's bundle evaluation report the same figures.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from models.errors import ConfigError

if TYPE_CHECKING:
    from models.datasources import Record

# What the functions take (each starts with np.asarray): labels 0/1 (or bools, e.g. a thresholded
# score array) and scores or probabilities, as lists or numpy arrays.
Labels = Sequence[int] | npt.NDArray[np.integer[Any]] | npt.NDArray[np.bool_]
Scores = Sequence[float] | npt.NDArray[np.floating[Any]]


def roc_auc(y_true: Labels, scores: Scores) -> float:
    """Area under the ROC curve (Mann–Whitney U with mid-ranks for ties); nan if one class."""
    y = np.asarray(y_true).astype(bool)
    s = np.asarray(scores, dtype=np.float64)
    if y.shape != s.shape:
        raise ConfigError(f"labels {y.shape} and scores {s.shape} differ in shape")
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s), dtype=np.float64)
    sorted_s = s[order]
    # mid-ranks for ties
    _, first, counts = np.unique(sorted_s, return_index=True, return_counts=True)
    mid = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(mid, counts)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def roc_curve(y_true: Labels, scores: Scores) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fpr, tpr, thresholds), thresholds decreasing, starting at +inf like scikit-learn."""
    y = np.asarray(y_true).astype(bool)
    s = np.asarray(scores, dtype=np.float64)
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    distinct = np.r_[np.where(np.diff(s))[0], len(s) - 1]
    tps = np.cumsum(y)[distinct]
    fps = (1 + distinct) - tps
    tpr = np.r_[0.0, tps / max(y.sum(), 1)]
    fpr = np.r_[0.0, fps / max((~y).sum(), 1)]
    return fpr, tpr, np.r_[np.inf, s[distinct]]


def confusion(y_true: Labels, y_pred: Labels) -> dict[str, int]:
    y = np.asarray(y_true).astype(bool)
    p = np.asarray(y_pred).astype(bool)
    return {
        "tp": int((y & p).sum()),
        "tn": int((~y & ~p).sum()),
        "fp": int((~y & p).sum()),
        "fn": int((y & ~p).sum()),
    }


def cohen_kappa(y_true: Labels, y_pred: Labels) -> float:
    """Cohen's kappa for two binary raters (MURA's headline study-level metric)."""
    c = confusion(y_true, y_pred)
    n = sum(c.values())
    if n == 0:
        return float("nan")
    po = (c["tp"] + c["tn"]) / n
    p_yes = ((c["tp"] + c["fn"]) / n) * ((c["tp"] + c["fp"]) / n)
    p_no = ((c["tn"] + c["fp"]) / n) * ((c["tn"] + c["fn"]) / n)
    pe = p_yes + p_no
    return float((po - pe) / (1 - pe)) if pe < 1 else (1.0 if po == 1 else 0.0)


def binary_metrics(y_true: Labels, scores: Scores, threshold: float = 0.5) -> dict:
    """AUC, accuracy, sensitivity, specificity and kappa at one threshold."""
    y = np.asarray(y_true).astype(int)
    s = np.asarray(scores, dtype=np.float64)
    pred = (s >= threshold).astype(int)
    c = confusion(y, pred)
    pos, neg = c["tp"] + c["fn"], c["tn"] + c["fp"]
    return {
        "n": int(len(y)),
        "auc": roc_auc(y, s),
        "accuracy": float((c["tp"] + c["tn"]) / max(len(y), 1)),
        "sensitivity": float(c["tp"] / pos) if pos else float("nan"),
        "specificity": float(c["tn"] / neg) if neg else float("nan"),
        "kappa": cohen_kappa(y, pred),
        "threshold": float(threshold),
    }


def aggregate_studies(
    study_ids: Sequence[str], labels: Labels, probs: Scores
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Mean image probability per study (MURA's rule); a study's label must be consistent."""
    acc: dict[str, list[float]] = defaultdict(list)
    lab: dict[str, int] = {}
    for sid, y, p in zip(study_ids, labels, probs, strict=True):
        acc[sid].append(float(p))
        if lab.setdefault(sid, int(y)) != int(y):
            raise ConfigError(f"study {sid!r} has images with different labels")
    ids = sorted(acc)
    return ids, np.array([lab[i] for i in ids]), np.array([np.mean(acc[i]) for i in ids])


def threshold_for_sensitivity(y_true: Labels, scores: Scores, target: float) -> float:
    """Highest threshold whose sensitivity reaches ``target`` (the "suspicious" operating point)."""
    y = np.asarray(y_true).astype(bool)
    s = np.asarray(scores, dtype=np.float64)
    pos = np.sort(s[y])[::-1]
    if len(pos) == 0:
        raise ConfigError("no positive cases: cannot choose a sensitivity threshold")
    k = int(np.ceil(target * len(pos))) - 1
    return float(pos[min(max(k, 0), len(pos) - 1)])


def threshold_for_specificity(y_true: Labels, scores: Scores, target: float) -> float:
    """Lowest threshold whose specificity (negatives scored below it) reaches ``target``."""
    y = np.asarray(y_true).astype(bool)
    s = np.asarray(scores, dtype=np.float64)
    neg = np.sort(s[~y])
    if len(neg) == 0:
        raise ConfigError("no negative cases: cannot choose a specificity threshold")
    k = min(max(int(np.ceil(target * len(neg))), 1), len(neg))
    return float(np.nextafter(neg[k - 1], np.inf))


def youden_threshold(y_true: Labels, scores: Scores) -> float:
    """Threshold maximising sensitivity + specificity - 1 (the "likely" operating point)."""
    fpr, tpr, thr = roc_curve(y_true, scores)
    i = int(np.argmax(tpr - fpr))
    return float(min(thr[i], 1.0)) if np.isfinite(thr[i]) else 1.0


def bootstrap_ci(
    metric: Callable[[npt.NDArray[Any], npt.NDArray[np.float64]], float], y_true: Labels,
    scores: Scores, *, n: int = 1000, seed: int = 0, alpha: float = 0.05,
) -> tuple[float, float]:
    """Percentile bootstrap (1 - alpha) CI of ``metric(y, s)``; resamples with both classes kept."""
    y = np.asarray(y_true)
    s = np.asarray(scores, dtype=np.float64)
    rng = np.random.default_rng(seed)
    vals = []
    for _ in range(n):
        idx = rng.integers(0, len(y), len(y))
        if y[idx].min() == y[idx].max():
            continue
        v = metric(y[idx], s[idx])
        if not np.isnan(v):
            vals.append(v)
    if not vals:
        return float("nan"), float("nan")
    lo, hi = np.quantile(vals, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def expected_calibration_error(y_true: Labels, probs: Scores, bins: int = 10) -> float:
    """ECE with equal-width bins: how far predicted probabilities are from observed frequencies."""
    y = np.asarray(y_true, dtype=np.float64)
    p = np.asarray(probs, dtype=np.float64)
    which = np.minimum((p * bins).astype(int), bins - 1)
    ece = 0.0
    for b in range(bins):
        m = which == b
        if m.any():
            ece += m.mean() * abs(p[m].mean() - y[m].mean())
    return float(ece)


def confusion_matrix(y_true: Labels, y_pred: Labels, n_classes: int) -> np.ndarray:
    """(n_classes, n_classes) counts, rows = true class, columns = predicted (scikit-learn's layout).

    Used for the body part (K classes) and, with n_classes=2, for the finding: row/column 0 is
    negative, 1 positive. Labels outside [0, n_classes) are an error, not silently dropped.
    """
    t = np.asarray(y_true, dtype=np.int64).ravel()
    p = np.asarray(y_pred, dtype=np.int64).ravel()
    if t.shape != p.shape:
        raise ConfigError(f"labels {t.shape} and predictions {p.shape} differ in shape")
    if n_classes < 1:
        raise ConfigError(f"n_classes must be >= 1, got {n_classes}")
    both = np.concatenate([t, p])
    bad = both[(both < 0) | (both >= n_classes)]
    if len(bad):
        raise ConfigError(f"class index {int(bad[0])} is outside [0, {n_classes})")
    return np.bincount(t * n_classes + p, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def reliability_bins(y_true: Labels, probs: Scores, bins: int = 10) -> dict[str, np.ndarray]:
    """The numbers behind a reliability diagram, with the same equal-width bins as the ECE.

    Per bin: ``count``, ``mean_prob`` (mean predicted probability) and ``frac_pos`` (observed
    fraction of positives); empty bins hold nan. ``edges`` are the bins' bounds.
    """
    y = np.asarray(y_true, dtype=np.float64)
    p = np.asarray(probs, dtype=np.float64)
    if y.shape != p.shape:
        raise ConfigError(f"labels {y.shape} and probabilities {p.shape} differ in shape")
    which = np.minimum((p * bins).astype(int), bins - 1)
    count = np.bincount(which, minlength=bins).astype(np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_prob = np.bincount(which, weights=p, minlength=bins) / count
        frac_pos = np.bincount(which, weights=y, minlength=bins) / count
    return {"edges": np.linspace(0.0, 1.0, bins + 1), "count": count, "mean_prob": mean_prob,
            "frac_pos": frac_pos}


# --- a set of records: image and study level --------------------------------------------------


def _scored(records: Sequence[Record], probs: np.ndarray) -> tuple[list[Record], np.ndarray]:
    """The records with a probability (undecodable images are nan and left out) and theirs."""
    ok = ~np.isnan(probs)
    return [r for r, k in zip(records, ok, strict=True) if k], np.asarray(probs)[ok]


def _studies(records: Sequence[Record], probs: np.ndarray) -> tuple[list[str], np.ndarray, np.ndarray]:
    recs, p = _scored(records, probs)
    return aggregate_studies([r.study_id for r in recs], np.array([r.label for r in recs]), p)


def body_part_indices(records: Sequence[Record], bps: np.ndarray,
                      body_parts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(true index, predicted index) per record; -1 for a true part outside ``body_parts``."""
    true_bp = np.array([body_parts.index(r.body_part) if r.body_part in body_parts else -1 for r in records],
                       dtype=int)
    return true_bp, np.asarray(bps).argmax(1).astype(int)


def study_ece(records: Sequence[Record], probs: np.ndarray) -> float:
    """Expected calibration error of the study probabilities (mean of each study's images)."""
    _, ys, ps = _studies(records, probs)
    return expected_calibration_error(ys, ps)


def operating_points(records: Sequence[Record], probs: np.ndarray, thresholds: dict[str, float]) -> dict:
    """Study-level sensitivity and specificity at each of the card's thresholds."""
    _, ys, ps = _studies(records, probs)
    out = {}
    for name, t in thresholds.items():
        c = confusion(ys, ps >= t)
        pos, neg = c["tp"] + c["fn"], c["tn"] + c["fp"]
        out[name] = {"threshold": float(t), "sensitivity": c["tp"] / pos if pos else float("nan"),
                     "specificity": c["tn"] / neg if neg else float("nan"), **c}
    return out


def choose_thresholds(records: Sequence[Record], probs: np.ndarray, sensitivity: float,
                      specificity: float = 0.95) -> dict[str, float]:
    """Operating points on validation *studies*.

    'likely': the stricter of Youden's point and the ``specificity`` point (few false alarms);
    'suspicious': the ``sensitivity`` point, never above 'likely' (few misses).
    """
    _, ys, ps = _studies(records, probs)
    if ys.min() == ys.max():
        return {"suspicious": 0.3, "likely": 0.5}
    likely = min(max(youden_threshold(ys, ps), threshold_for_specificity(ys, ps, specificity)), 1.0)
    sus = min(threshold_for_sensitivity(ys, ps, sensitivity), likely)
    return {"suspicious": float(sus), "likely": float(likely)}


def evaluate_predictions(records: Sequence[Record], probs: np.ndarray, bps: np.ndarray | None,
                         body_parts: list[str], threshold: float = 0.5, ci: bool = False) -> dict:
    """Image- and study-level metrics (study = mean of its images' probabilities).

    ``ci`` adds 95 % bootstrap intervals, study-level calibration (ECE) and a per-body-part table
    (study level, with AUC and kappa intervals). With body-part probabilities: the body-part
    accuracy and confusion matrix (per image; rows = truth, ``body_part_confusion``).
    """
    ok = ~np.isnan(probs)
    recs, p = _scored(records, probs)
    y = np.array([r.label for r in recs])
    out: dict = {"n_images": int(len(recs)), "n_failed": int((~ok).sum())}
    out["image"] = {**binary_metrics(y, p, threshold), "confusion": confusion(y, p >= threshold)}
    ids, ys, ps = aggregate_studies([r.study_id for r in recs], y, p)
    out["n_studies"] = len(ids)
    out["study"] = {**binary_metrics(ys, ps, threshold), "confusion": confusion(ys, ps >= threshold)}
    if bps is not None and len(body_parts) > 1 and len(recs):
        out.update(_body_part_figures(recs, np.asarray(bps)[ok], body_parts))
    if ci and len(recs):
        out["image"]["auc_ci95"] = bootstrap_ci(roc_auc, y, p)
        out["study"]["auc_ci95"] = bootstrap_ci(roc_auc, ys, ps)
        out["study"]["kappa_ci95"] = bootstrap_ci(lambda a, b: cohen_kappa(a, b >= threshold), ys, ps)
        out["study"]["ece"] = expected_calibration_error(ys, ps)
        out["per_body_part"] = _per_body_part(recs, y, p, threshold)
    return out


def _body_part_figures(recs: list[Record], bps: np.ndarray, body_parts: list[str]) -> dict:
    true_bp, pred_bp = body_part_indices(recs, bps, body_parts)
    known = true_bp >= 0
    return {"body_part_accuracy": float((pred_bp == true_bp).mean()),
            "body_part_confusion": {
                "labels": list(body_parts),
                "matrix": confusion_matrix(true_bp[known], pred_bp[known], len(body_parts)).tolist(),
                "n_unknown_part": int((~known).sum()),
            }}


def _per_body_part(recs: list[Record], y: np.ndarray, p: np.ndarray, threshold: float) -> dict:
    parts = {}
    for bp in sorted({r.body_part for r in recs}):
        sel = [i for i, r in enumerate(recs) if r.body_part == bp]
        sid, sy, sp = aggregate_studies([recs[i].study_id for i in sel], y[sel], p[sel])
        parts[bp] = {"n_studies": len(sid), **binary_metrics(sy, sp, threshold),
                     "auc_ci95": bootstrap_ci(roc_auc, sy, sp, n=500),
                     "kappa_ci95": bootstrap_ci(lambda a, b: cohen_kappa(a, b >= threshold), sy, sp, n=500)}
    return parts
