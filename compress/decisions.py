"""Which decision flips count against an INT8 model: the FP32 model's own noise decides.

A plain agreement floor ("99 % of decisions unchanged") is a coin toss on small sets: cases that
sit on a threshold flip with any change of arithmetic, and OpenVINO's INT8 kernels differ between
AVX2, AVX-512 VNNI and AMX CPUs. A weak model, whose thresholds sit in a crowd of cases, then
passes on one CPU and fails on the next with the same bundle (the phantom demo did: 4 flips of 235
studies on an Ice Lake, none on an EPYC).

So the gate asks a question that does not depend on the CPU: *does INT8 change a decision that the
FP32 model itself holds firmly?* The FP32 model's own noise on a case is how far its logit moves
when the image is mirrored — a change the model was trained to ignore (horizontal flip is a
training augmentation; left and right limbs look alike). A case is *firm* at a threshold when its
FP32 logit lies further from the threshold than that noise, and at least the set's median noise
(so that one lucky symmetric image does not make a borderline case firm). Flips of firm cases are
counted against ``1 - min_agreement``; flips of borderline cases are reported, not gated. The
report gives both counts with a Wilson 95 % interval, so a reader sees why a gate passed.

numpy only: used by the gate (``compress.validate``) and by accuracy control's metric
(``compress.quantize``), which must optimise exactly what the gate checks.
"""

from __future__ import annotations

import math

import numpy as np

from models.metrics import aggregate_studies

_EPS = 1e-7


def logit(p: np.ndarray | float) -> np.ndarray:
    q = np.clip(np.asarray(p, dtype=np.float64), _EPS, 1 - _EPS)
    return np.log(q) - np.log1p(-q)


def noise_band(ref: np.ndarray, ref_mirror: np.ndarray) -> np.ndarray:
    """Per case, the FP32 model's own logit noise: |logit(x) - logit(mirror x)|, floored at the
    set's median of it."""
    d = np.abs(logit(ref) - logit(ref_mirror))
    return np.maximum(d, float(np.median(d))) if len(d) else d


def wilson_interval(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a proportion k/n (sound at k = 0, unlike the normal one)."""
    if n <= 0:
        return float("nan"), float("nan")
    p = k / n
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return max(0.0, centre - half), min(1.0, centre + half)


def check_decisions(ref: np.ndarray, ref_mirror: np.ndarray, test: np.ndarray, threshold: float) -> dict:
    """Agreement at one threshold, split into flips of firm and of borderline cases."""
    ref, test = np.asarray(ref, np.float64), np.asarray(test, np.float64)
    n = len(ref)
    if n == 0:
        return {"n": 0, "agreement": float("nan"), "flips": 0, "firm": 0, "firm_flips": 0,
                "firm_flip_rate": float("nan"), "firm_flip_rate_ci95": [float("nan"), float("nan")]}
    flipped = (ref >= threshold) != (test >= threshold)
    firm = np.abs(logit(ref) - float(logit(threshold))) > noise_band(ref, ref_mirror)
    k = int(np.sum(flipped & firm))
    lo, hi = wilson_interval(k, n)
    return {"n": n, "agreement": float(1 - flipped.mean()), "flips": int(flipped.sum()),
            "firm": int(firm.sum()), "firm_flips": k, "firm_flip_rate": k / n,
            "firm_flip_rate_ci95": [lo, hi]}


def level_scores(level: str, study_ids: list[str], labels: np.ndarray, *scores: np.ndarray) -> tuple:
    """(labels, *scores) at image level, or aggregated per study (mean probability) at study level."""
    if level == "image":
        return (np.asarray(labels), *scores)
    _, y, _ = aggregate_studies(study_ids, labels, scores[0])
    return (y, *(aggregate_studies(study_ids, labels, s)[2] for s in scores))


def decisions_pass(check: dict, min_agreement: float) -> bool:
    """The gate's decision criterion: firm flips at most ``1 - min_agreement`` of the cases."""
    return check["n"] == 0 or check["firm_flip_rate"] <= (1.0 - min_agreement) + 1e-12


def explain(check: dict, name: str, min_agreement: float) -> str:
    """One sentence for the report: why this threshold passed or failed."""
    lo, hi = check["firm_flip_rate_ci95"]
    verdict = "passes" if decisions_pass(check, min_agreement) else "FAILS"
    return (f"'{name}': {check['flips']} of {check['n']} decisions flipped, {check['firm_flips']} of them "
            f"among the {check['firm']} cases FP32 holds firmly (firm-flip rate {check['firm_flip_rate']:.4f}, "
            f"95 % CI [{lo:.4f}, {hi:.4f}]; allowed {1 - min_agreement:.4f}) -> {verdict}; the other "
            f"{check['flips'] - check['firm_flips']} sit within FP32's own mirror-image noise of the threshold")
