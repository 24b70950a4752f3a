"""Accuracy control's metric is the gate: every evaluation set, image and study level.

NNCF's ``quantize_with_accuracy_control`` knows one number per model and stops when the quantized
model's number is within ``max_drop`` of the original's. The first version of this metric was the
image-level AUC (with an agreement penalty) on a sample of the first set only; on the phantom demo
it reported a drop of 2e-05 and returned the model unchanged, and the gate then failed it on the
study-level decisions it never saw. So the number here is built from exactly the gate's checks:

    metric = 1 - (number of gate checks that fail) - TOLERANCE * c,   c = r / (1 + r) in [0, 1)

where r is the RMS logit difference to FP32 over all items. The FP32 model scores 1, so
``drop <= TOLERANCE`` holds exactly when no gate check fails; the continuous term orders the
candidate models NNCF ranks (which op to give back to floating point) by how far they are from
FP32, and never decides pass or fail. (The offset 1 keeps NNCF's relative drop, which it computes
alongside the absolute one, from dividing by zero.)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from compress.decisions import check_decisions, decisions_pass, level_scores, logit
from models.metrics import roc_auc

TOLERANCE = 1e-3  # NNCF's max_drop: smaller than one failed check (1.0), larger than TOLERANCE * c


@dataclass(frozen=True)
class SetReference:
    """The FP32 side of one evaluation set, on the items given to accuracy control."""

    name: str
    labels: np.ndarray
    study_ids: list[str]
    probs: np.ndarray  # FP32 fracture_prob per item
    mirror: np.ndarray  # FP32 fracture_prob of each mirrored item (its own noise)


@dataclass(frozen=True)
class GateMetric:
    """The gate as one number over items ``0..N-1`` numbered set after set."""

    sets: tuple[SetReference, ...]
    thresholds: tuple[float, ...]
    budget: float
    min_agreement: float
    # the card's Platt scaling (slope, intercept): the FP32 reference came from the engines, which
    # apply it; the network NNCF compiles ends at the raw probability (trainer.calibration)
    calibration: tuple[float, float] = (1.0, 0.0)

    def calibrate(self, probs: np.ndarray) -> np.ndarray:
        a, b = self.calibration
        if (a, b) == (1.0, 0.0):
            return probs
        return 1.0 / (1.0 + np.exp(-(a * logit(probs) + b)))

    @property
    def offsets(self) -> np.ndarray:
        return np.cumsum([0] + [len(s.labels) for s in self.sets])

    def failures(self, idx: np.ndarray, probs: np.ndarray) -> list[str]:
        """The gate checks that fail on these items (``idx`` global, ``probs`` the model's)."""
        idx, probs = np.asarray(idx, dtype=int), np.asarray(probs, dtype=np.float64)
        off = self.offsets
        out = []
        for k, s in enumerate(self.sets):
            sel = (idx >= off[k]) & (idx < off[k + 1])
            if not sel.any():
                continue
            loc = idx[sel] - off[k]
            sids = [s.study_ids[i] for i in loc]
            for level in ("image", "study"):
                y, a, m, b = level_scores(level, sids, s.labels[loc], s.probs[loc], s.mirror[loc], probs[sel])
                d = roc_auc(y, b) - roc_auc(y, a)
                if not np.isnan(d) and abs(d) > self.budget:
                    out.append(f"{s.name} {level} ΔAUC {d:+.4f}")
                for t in self.thresholds:
                    if not decisions_pass(check_decisions(a, m, b, t), self.min_agreement):
                        out.append(f"{s.name} {level} firm flips at {t:.3f}")
        return out

    def __call__(self, idx: np.ndarray, raw_probs: np.ndarray) -> float:
        """The metric of a compiled network's raw ``fracture_prob`` on items ``idx``."""
        idx = np.asarray(idx, dtype=int)
        probs = self.calibrate(np.asarray(raw_probs, dtype=np.float64))
        ref = np.concatenate([s.probs for s in self.sets])[idx]
        r = float(np.sqrt(np.mean((logit(probs) - logit(ref)) ** 2))) if len(idx) else 0.0
        return 1.0 - float(len(self.failures(idx, probs))) - TOLERANCE * r / (1.0 + r)
