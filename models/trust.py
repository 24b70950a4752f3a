"""How good is this model, in words a reader can act on, and is it good enough to show at all?

The INT8 gate answers another question (does INT8 rank cases like FP32?); a chance-level model
passes it. This module reads what the card says the model scored against the truth and turns it
into the lines every screen shows beside a verdict (:func:`performance_lines`), and into the
warnings that make the viewer, the reports and the screener show a red banner
(:func:`model_warnings`): a phantom-trained model, a validation AUC below :data:`AUC_FLOOR`,
operating points that are not distinct, or no validated figures at all. Qt- and torch-free.
"""

from __future__ import annotations

from collections.abc import Mapping

#: Below this validation AUC a model is "not clinically meaningful" (issue 15: e.g. 0.75).
AUC_FLOOR = 0.75
#: Operating points closer than this (in probability) are one threshold in practice.
MIN_THRESHOLD_GAP = 0.01
BANNER = "NOT A CLINICALLY MEANINGFUL MODEL"


def validation_metrics(card: Mapping) -> tuple[str, dict] | None:
    """The card's figures against the truth: the first set that is not a gate comparison."""
    for name, m in (card.get("metrics") or {}).items():
        if not name.startswith("gate:") and isinstance(m, Mapping) and m.get("study_auc") is not None:
            return name, dict(m)
    return None


def is_phantom(card: Mapping) -> bool:
    prov = card.get("provenance") or {}
    text = " ".join(str(prov.get(k, "")) for k in ("training_data", "validation_data"))
    return "phantom" in text.lower() or "phantom" in str((card.get("licences") or {}).get("training_data", "")).lower()


def model_warnings(card: Mapping) -> list[str]:
    """Why this model must not be taken for a clinically meaningful one (empty when none)."""
    out: list[str] = []
    if is_phantom(card):
        out.append("trained on phantom images (mura-synth), not on radiographs")
    found = validation_metrics(card)
    if found is None:
        out.append("the card has no validated AUC against the truth")
    else:
        auc = float(found[1]["study_auc"])
        if auc < AUC_FLOOR:
            out.append(f"validation AUC {auc:.2f} is below {AUC_FLOOR:.2f}")
    th = card.get("thresholds") or {}
    if th and abs(float(th.get("likely", 1)) - float(th.get("suspicious", 0))) < MIN_THRESHOLD_GAP:
        out.append(f"its operating points are not distinct ({float(th['suspicious']):.3f} and "
                   f"{float(th['likely']):.3f})")
    return out


def _dataset_name(card: Mapping, key: str, m: Mapping) -> str:
    prov = (card.get("provenance") or {}).get("validation_data")
    if key == "internal_validation" and isinstance(prov, Mapping) and prov.get("dataset"):
        return str(prov["dataset"])
    return str(m.get("dataset") or key)


def performance_lines(card: Mapping) -> list[str]:
    """'AUC 0.88 (95 % CI 0.84-0.93) on fracatlas (internal val), 494 studies', then one line per
    operating point with its sensitivity and specificity, then the INT8 gate, said separately."""
    lines: list[str] = []
    found = validation_metrics(card)
    if found is None:
        lines.append("Validated performance: none recorded in the card")
    else:
        key, m = found
        ci = m.get("study_auc_ci95") or []
        ci_txt = f" (95 % CI {ci[0]:.2f}–{ci[1]:.2f})" if len(ci) == 2 and None not in ci else ""
        n = m.get("n_studies") or m.get("n_images")
        lines.append(f"AUC {float(m['study_auc']):.2f}{ci_txt} on {_dataset_name(card, key, m)}"
                     + (f", {n} studies" if n else ""))
        for name, op in (m.get("operating_points") or {}).items():
            lines.append(f"{name.capitalize()} (≥ {float(op['threshold']):.3f}): sensitivity "
                         f"{float(op['sensitivity']):.2f}, specificity {float(op['specificity']):.2f}")
    verdict = (card.get("validation") or {}).get("verdict", "not_validated")
    lines.append({"passed": "INT8 matches FP32 (gate passed)",
                  "failed": "INT8 does NOT match FP32 (gate failed)"}.get(verdict, "INT8 not compared with FP32"))
    return lines
