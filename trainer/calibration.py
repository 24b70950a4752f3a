"""Probability calibration fitted on internal validation: Platt scaling of the fracture logit.

The trainer weights the loss per body part (MURA's w_pos = N/(P+N)), which is right for ranking but
shifts every probability upwards on a set with 18 % positives: the logit is off by a constant,
which a temperature alone cannot remove. Platt scaling, p = sigmoid(slope * logit + intercept), is
a temperature (slope) plus that bias (intercept); two numbers fitted by maximum likelihood, so
they cannot overfit 500 images. Monotone, so AUC and the ranking are untouched; the card's
thresholds are chosen on the calibrated probabilities.

The card carries it and the engine applies it (``Engine.calibrate``, on every path: the gate, the
screener, the viewer, async requests), so every runtime shows calibrated probabilities. It is not
part of the exported network: after a weak model's calibration the probability barely varies, and
INT8 quantizers placed after it could not resolve it.
"""

from __future__ import annotations

import numpy as np

from models.datasources import Record
from models.errors import ConfigError
from models.metrics import expected_calibration_error

IDENTITY = {"method": "none", "slope": 1.0, "intercept": 0.0}
MIN_IMAGES = 10


def _logit(p: np.ndarray) -> np.ndarray:
    q = np.clip(np.asarray(p, dtype=np.float64), 1e-7, 1 - 1e-7)
    return np.log(q) - np.log1p(-q)


def fit_platt(labels: np.ndarray, probs: np.ndarray, l2: float = 1e-3, iters: int = 50) -> tuple[float, float]:
    """(slope, intercept) minimising the log-loss of sigmoid(slope * logit(p) + intercept).

    Newton's method on a 2-parameter convex problem; a tiny ridge towards the identity (1, 0)
    keeps it finite on separable data. Converges in a handful of steps.
    """
    y = np.asarray(labels, dtype=np.float64)
    ok = np.isfinite(np.asarray(probs, dtype=np.float64))
    y, z = y[ok], _logit(np.asarray(probs)[ok])
    if len(y) < MIN_IMAGES or y.min() == y.max():
        raise ConfigError(f"calibration needs both classes among >= {MIN_IMAGES} images (got {len(y)})")
    w = np.array([1.0, 0.0])
    x = np.stack([z, np.ones_like(z)], axis=1)
    for _ in range(iters):
        p = 1 / (1 + np.exp(-(x @ w)))
        grad = x.T @ (p - y) + l2 * len(y) * (w - np.array([1.0, 0.0]))
        h = (x * (p * (1 - p))[:, None]).T @ x + l2 * len(y) * np.eye(2)
        step = np.linalg.solve(h, grad)
        w -= step
        if np.max(np.abs(step)) < 1e-10:
            break
    return float(w[0]), float(w[1])


def apply_platt(probs: np.ndarray, slope: float, intercept: float) -> np.ndarray:
    z = slope * _logit(probs) + intercept
    out = 1 / (1 + np.exp(-z))
    return np.where(np.isfinite(np.asarray(probs, dtype=np.float64)), out, np.nan)


def fit_calibration(records: list[Record], raw: np.ndarray, enabled: bool) -> dict:
    """Platt scaling on internal-validation images (trainer.calibration), with what it was fitted on."""
    if not enabled:
        return dict(IDENTITY)
    y = np.array([r.label for r in records])
    ok = ~np.isnan(raw)
    if ok.sum() < MIN_IMAGES or len(set(y[ok].tolist())) < 2:
        # A smoke run or a one-class validation split: two parameters fitted on a handful of images
        # would be noise. Say so in the card instead of failing the whole training run.
        reason = f"not fitted: internal validation has {int(ok.sum())} scored images"
        reason += "" if len(set(y[ok].tolist())) == 2 else " of a single class"
        print(f"[train] calibration {reason}; probabilities stay uncalibrated", flush=True)
        return {**IDENTITY, "reason": reason}
    slope, intercept = fit_platt(y, raw)
    return {"method": "platt", "slope": slope, "intercept": intercept, "fitted_on": "internal_validation",
            "n_images": int(ok.sum()),
            "image_ece_before": expected_calibration_error(y[ok], raw[ok]),
            "image_ece_after": expected_calibration_error(y[ok], apply_platt(raw[ok], slope, intercept))}
