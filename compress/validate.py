"""The INT8 validation gate: does the quantized model still rank cases like the FP32 one?

For every evaluation set: image- and study-level AUC of OpenVINO FP32 (precision hint ``f32``,
stated and forced: this CPU would otherwise run bf16) and of the INT8 model, the AUC drop, and the
agreement of decisions at the card's operating points. The gate fails when any drop exceeds the
budget; the bundle is then written with verdict "failed" and the command exits non-zero.
"""

from __future__ import annotations

import math

import numpy as np

from compress.evalset import EvalSet
from models.engine import Engine
from models.metrics import aggregate_studies, roc_auc


def score(engine: Engine, es: EvalSet, batch_size: int = 16) -> np.ndarray:
    probs = [engine.infer(es.inputs[i : i + batch_size])["fracture_prob"].reshape(-1)
             for i in range(0, len(es.inputs), batch_size)]
    return np.concatenate(probs) if probs else np.zeros(0)


def compare_set(es: EvalSet, ref: np.ndarray, test: np.ndarray, thresholds: dict[str, float],
                ref_name: str = "fp32", test_name: str = "int8") -> dict:
    """AUCs of both models at image and study level, drops, and decision agreement."""
    y = es.labels
    out: dict = {"dataset": es.name, "n_images": int(len(y)), "n_failed": len(es.failed)}
    for level in ("image", "study"):
        if level == "image":
            yy, a, b = y, ref, test
        else:
            _, yy, a = aggregate_studies(es.study_ids, y, ref)
            _, _, b = aggregate_studies(es.study_ids, y, test)
            out["n_studies"] = int(len(yy))
        auc_a, auc_b = roc_auc(yy, a), roc_auc(yy, b)
        out[f"{level}_auc_{ref_name}"] = auc_a
        out[f"{level}_auc_{test_name}"] = auc_b
        out[f"{level}_auc_drop"] = auc_a - auc_b
        for name, t in thresholds.items():
            out[f"{level}_agreement_{name}"] = float(np.mean((a >= t) == (b >= t))) if len(a) else float("nan")
    out["max_abs_prob_diff"] = float(np.max(np.abs(ref - test))) if len(ref) else float("nan")
    return out


def gate(results: list[dict], budget: float) -> tuple[bool, list[str]]:
    """Pass iff every set's image and study AUC drop is within ``budget``."""
    reasons = []
    for r in results:
        for level in ("image", "study"):
            d = r[f"{level}_auc_drop"]
            if math.isnan(d):
                reasons.append(f"{r['dataset']}: {level}-level AUC undefined (one class only); not gated")
            elif d > budget:
                reasons.append(f"{r['dataset']}: {level}-level AUC dropped by {d:.4f} > budget {budget}")
    failed = [x for x in reasons if "not gated" not in x]
    return not failed, reasons


def markdown_report(results: list[dict], passed: bool, budget: float, precision_note: str) -> str:
    lines = [
        "# INT8 validation report",
        "",
        f"Verdict: **{'PASSED' if passed else 'FAILED'}** (budget: AUC drop <= {budget}).  ",
        f"Precision: {precision_note}",
        "",
        "| set | level | n | AUC FP32 | AUC INT8 | drop | agreement (suspicious / likely) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        for level in ("image", "study"):
            n = r["n_images"] if level == "image" else r.get("n_studies", 0)
            lines.append(
                f"| {r['dataset']} | {level} | {n} | {r[f'{level}_auc_fp32']:.4f} | {r[f'{level}_auc_int8']:.4f} | "
                f"{r[f'{level}_auc_drop']:+.4f} | {r[f'{level}_agreement_suspicious']:.3f} / "
                f"{r[f'{level}_agreement_likely']:.3f} |"
            )
    return "\n".join(lines) + "\n"
