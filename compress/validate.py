"""The INT8 validation gate: does the quantized model still rank cases like the FP32 one?

For every evaluation set: image- and study-level AUC of OpenVINO FP32 (precision hint ``f32``,
stated and forced: this CPU would otherwise run bf16) and of the INT8 model, the AUC drop, and the
agreement of decisions at the card's operating points. The gate fails when any drop exceeds the
budget, or when INT8 flips more decisions that FP32 holds firmly than ``1 - min_agreement`` of the
cases (``compress.decisions``: borderline flips depend on the CPU's INT8 kernels, firm ones do not);
the bundle is then written with verdict "failed" and the command exits non-zero.
"""

from __future__ import annotations

import math

import numpy as np

from compress.decisions import check_decisions, decisions_pass, explain, level_scores
from compress.evalset import EvalSet
from models.engine import Engine
from models.errors import ConfigError
from models.metrics import aggregate_studies, roc_auc
from models.plots import draw_roc_png  # noqa: F401 - re-exported for callers of compress.validate

BOOTSTRAP_RESAMPLES = 1000


def score(engine: Engine, es: EvalSet, batch_size: int = 16) -> np.ndarray:
    return score_inputs(engine, es.inputs, batch_size)


def score_inputs(engine: Engine, inputs: np.ndarray, batch_size: int = 16) -> np.ndarray:
    probs = [engine.infer(inputs[i : i + batch_size])["fracture_prob"].reshape(-1)
             for i in range(0, len(inputs), batch_size)]
    return np.concatenate(probs) if probs else np.zeros(0)


def cam_correlation(ref: Engine, test: Engine, inputs: np.ndarray, n: int = 64) -> dict:
    """Pearson r between the FP32 and INT8 heatmaps (the CAM output), per image.

    The viewer shows the INT8 model's CAM; if quantization scrambled it the score could survive
    while the heatmap points elsewhere, so the map gets its own check.
    """
    x = inputs[:n]
    if not len(x):
        return {"n": 0, "mean_r": float("nan"), "min_r": float("nan")}
    a = ref.infer(x)["cam"].reshape(len(x), -1).astype(np.float64)
    b = test.infer(x)["cam"].reshape(len(x), -1).astype(np.float64)
    rs = [float(np.corrcoef(u, v)[0, 1]) for u, v in zip(a, b, strict=True) if u.std() > 0 and v.std() > 0]
    return {"n": len(rs), "mean_r": float(np.mean(rs)) if rs else float("nan"),
            "min_r": float(np.min(rs)) if rs else float("nan")}


def paired_bootstrap_delta(
    labels: np.ndarray, ref: np.ndarray, test: np.ndarray, *, groups: list[str] | None = None,
    n_resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0, alpha: float = 0.05,
) -> tuple[float, float, float]:
    """ΔAUC (test − ref) and its paired percentile-bootstrap CI, numpy only.

    Both models are scored on the *same* resample each time, so the CI reflects the difference
    between the models and not the sampling noise each AUC carries on its own (which is much wider).
    With ``groups`` (study ids) whole studies are resampled, because images of one study are not
    independent. Resamples holding one class only are skipped.
    """
    y = np.asarray(labels).astype(int)
    a = np.asarray(ref, dtype=np.float64)
    b = np.asarray(test, dtype=np.float64)
    if not (len(y) == len(a) == len(b)):
        raise ConfigError(f"bootstrap: {len(y)} labels but {len(a)} and {len(b)} scores")
    delta = roc_auc(y, b) - roc_auc(y, a) if len(y) else float("nan")
    if len(y) == 0 or np.isnan(delta):
        return float("nan"), float("nan"), float("nan")
    if groups is None:
        members = [np.array([i]) for i in range(len(y))]
    else:
        idx: dict[str, list[int]] = {}
        for i, g in enumerate(groups):
            idx.setdefault(g, []).append(i)
        members = [np.array(v) for v in idx.values()]
    rng = np.random.default_rng(seed)
    deltas = []
    for _ in range(n_resamples):
        pick = rng.integers(0, len(members), len(members))
        sel = np.concatenate([members[k] for k in pick])
        yy = y[sel]
        if yy.min() == yy.max():
            continue
        deltas.append(roc_auc(yy, b[sel]) - roc_auc(yy, a[sel]))
    if not deltas:
        return float(delta), float("nan"), float("nan")
    lo, hi = np.percentile(deltas, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return float(delta), float(lo), float(hi)


def compare_set(es: EvalSet, ref: np.ndarray, test: np.ndarray, thresholds: dict[str, float],
                ref_name: str = "fp32", test_name: str = "int8", *,
                extra: dict[str, np.ndarray] | None = None, n_resamples: int = BOOTSTRAP_RESAMPLES,
                seed: int = 0, ref_mirror: np.ndarray | None = None) -> dict:
    """AUCs of both models (and of ``extra`` variants) per level, drops with a paired bootstrap CI
    of ΔAUC = test − ref, and decision agreement at the card's operating points.

    ``ref_mirror`` is the reference model's score of each mirrored image, its own noise: flips of
    cases within that noise of a threshold are borderline (``compress.decisions``). Without it
    every case counts as firm, i.e. the plain agreement floor.
    """
    y = es.labels
    mirror = ref if ref_mirror is None else np.asarray(ref_mirror)
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
        for name, sc in (extra or {}).items():
            if level == "image":
                out[f"image_auc_{name}"] = roc_auc(y, sc)
            else:
                out[f"study_auc_{name}"] = roc_auc(yy, aggregate_studies(es.study_ids, y, sc)[2])
        # images are resampled by study at both levels: images of one study are correlated
        groups = es.study_ids if level == "image" else None
        d, lo, hi = paired_bootstrap_delta(yy, a, b, groups=groups, n_resamples=n_resamples, seed=seed)
        out[f"{level}_auc_delta"] = d
        out[f"{level}_auc_delta_ci95"] = [lo, hi]
        _, m = level_scores(level, es.study_ids, y, mirror)
        for name, t in thresholds.items():
            out[f"{level}_agreement_{name}"] = float(np.mean((a >= t) == (b >= t))) if len(a) else float("nan")
            out[f"{level}_decisions_{name}"] = check_decisions(a, m, b, t)
    out["noise"] = "mirror" if ref_mirror is not None else "none"
    out["max_abs_prob_diff"] = float(np.max(np.abs(ref - test))) if len(ref) else float("nan")
    return out


def gate(results: list[dict], budget: float, min_agreement: float = 0.0) -> tuple[bool, list[str]]:
    """Pass iff on every set, at image and study level, |ΔAUC| <= ``budget`` and the INT8 model
    flips, at each of the card's operating points, at most ``1 - min_agreement`` of the cases as
    decisions that the FP32 model holds firmly (results without that split: any flip counts).

    Both directions of ΔAUC count: an INT8 model whose AUC moved a lot, up or down, is not the model
    that was validated. Agreement is gated because a clinic sees decisions, not AUCs: a shift of the
    probabilities near a threshold flips verdicts while leaving the ranking (AUC) untouched.
    """
    reasons = []
    for r in results:
        for level in ("image", "study"):
            d = r[f"{level}_auc_drop"]
            if math.isnan(d):
                reasons.append(f"{r['dataset']}: {level}-level AUC undefined (one class only); not gated")
            elif abs(d) > budget:
                reasons.append(f"{r['dataset']}: {level}-level AUC changed by {-d:+.4f}, beyond the budget "
                               f"of ±{budget}")
            for key in sorted(k for k in r if k.startswith(f"{level}_agreement_")):
                a = r[key]
                name = key.removeprefix(f"{level}_agreement_")
                check = r.get(f"{level}_decisions_{name}")
                if check is not None:
                    if not decisions_pass(check, min_agreement):
                        reasons.append(f"{r['dataset']}: {level}-level {explain(check, name, min_agreement)}")
                elif not math.isnan(a) and a < min_agreement:
                    reasons.append(f"{r['dataset']}: {level}-level decisions at the '{name}' threshold agree "
                                   f"in {a:.3f} of cases < {min_agreement}")
    failed = [x for x in reasons if "not gated" not in x]
    return not failed, reasons


def _f(x: object, fmt: str = ".4f") -> str:
    """A number for the report; missing columns (older callers) show as a dash, not a KeyError."""
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, fmt)


def markdown_report(results: list[dict], passed: bool, budget: float, precision_note: str,
                    variants: list[dict] | None = None, quantization: dict | None = None,
                    min_agreement: float | None = None) -> str:
    """The human-readable gate report: AUC per variant, ΔAUC with its CI, agreement, and (when
    given) latency and size per variant and which quantization method produced the INT8 model."""
    lines = [
        "# INT8 validation report",
        "",
        f"Verdict: **{'PASSED' if passed else 'FAILED'}** (budget: |ΔAUC| <= {budget}"
        + (f", decision agreement >= {min_agreement}" if min_agreement is not None else "") + ").  ",
        f"Precision: {precision_note}",
    ]
    if quantization:
        lines.append(f"Quantization: {quantization.get('method')} (preset {quantization.get('preset')})"
                     + (f"; plain PTQ gate: {quantization['ptq_gate']['verdict']}"
                        if "ptq_gate" in quantization else ""))
    lines += [
        "",
        "| set | level | n | AUC torch FP32 | AUC OV FP32 | AUC OV bf16 | AUC INT8 | ΔAUC INT8−FP32 "
        "[95 % CI] | agreement (suspicious / likely) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        for level in ("image", "study"):
            n = r["n_images"] if level == "image" else r.get("n_studies", 0)
            lo, hi = r.get(f"{level}_auc_delta_ci95", [None, None])
            delta = r.get(f"{level}_auc_delta", -r[f"{level}_auc_drop"])
            lines.append(
                f"| {r['dataset']} | {level} | {n} | {_f(r.get(f'{level}_auc_torch_fp32'))} | "
                f"{_f(r[f'{level}_auc_fp32'])} | {_f(r.get(f'{level}_auc_ov_bf16'))} | "
                f"{_f(r[f'{level}_auc_int8'])} | {_f(delta, '+.4f')} [{_f(lo, '+.4f')}, {_f(hi, '+.4f')}] | "
                f"{r[f'{level}_agreement_suspicious']:.3f} / {r[f'{level}_agreement_likely']:.3f} |"
            )
    lines += decision_lines(results, min_agreement)
    cams = [(r["dataset"], r["cam_correlation"]) for r in results if r.get("cam_correlation")]
    if cams:
        lines += ["", "Heatmap (CAM) agreement, Pearson r between FP32 and INT8 maps: " + "; ".join(
            f"{name}: mean {c['mean_r']:.3f}, min {c['min_r']:.3f} (n={c['n']})" for name, c in cams)]
    if variants:
        lines += ["", "| variant | inference precision | latency batch 1 (median ms) | size (MB) |",
                  "| --- | --- | --- | --- |"]
        for v in variants:
            lines.append(f"| {v['name']} | {v.get('precision', '—')} | {_f(v.get('latency_ms'), '.2f')} | "
                         f"{_f(v.get('size_mb'), '.2f')} |")
    return "\n".join(lines) + "\n"


def decision_lines(results: list[dict], min_agreement: float | None) -> list[str]:
    """The report's account of every flipped decision: firm (gated) or within FP32's own noise."""
    if min_agreement is None or not any(k.startswith("image_decisions_") for r in results for k in r):
        return []
    lines = ["", "Decisions: a flip counts against INT8 only when FP32 holds the case firmly (its logit "
             "is further from the threshold than its own change on the mirrored image, and than the "
             "set's median of that change); borderline flips depend on the CPU's INT8 kernels.", ""]
    for r in results:
        for level in ("image", "study"):
            for key in sorted(k for k in r if k.startswith(f"{level}_decisions_")):
                name = key.removeprefix(f"{level}_decisions_")
                lines.append(f"- {r['dataset']}, {level}: {explain(r[key], name, min_agreement)}")
    return lines
