"""The model card and the bundle folder that carries it (MONAI-bundle style).

A bundle is a folder: ``card.json`` plus model files. The card says what the model is for, what it
expects and returns, where it was trained and validated and what it scored there, and the sha256 of
every file. Loading refuses a bundle whose files or card do not match; the engine then feeds a
dummy input and checks the network's real inputs/outputs against the card.

The card is built here, from the trainer's run manifest (:mod:`models.manifest`) and what compress
adds (:class:`BundleFacts`: name, files, data) by :func:`card_from_manifest`, then completed with
the gate's results by :func:`gated_card`; compress writes it once, with :func:`write_bundle`.
"""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from models.errors import BundleError, CardValidationError, ChecksumError
from models.fsutil import atomic_write_json, sha256_file
from models.labels import TASK_WORDS
from models.preprocess import PreprocessConfig

CARD_SCHEMA_VERSION = "1.0"
CARD_FILE = "card.json"
INTENDED_USE = (
    "Research use only. Not for diagnostic use: outputs are a second opinion for research and "
    "triage studies and must not replace a radiologist's reading."
)

_num = {"type": "number"}
_metric_set = {
    "type": "object",
    "properties": {
        "dataset": {"type": "string"},
        "n_images": {"type": "integer", "minimum": 0},
        "n_studies": {"type": "integer", "minimum": 0},
    },
    "additionalProperties": {"type": ["number", "string", "integer", "null", "object", "array"]},
}

_count = {"type": "integer", "minimum": 0}
_prob = {"type": "number", "minimum": 0, "maximum": 1}
#: Optional (cards written before it load as they are): did scoring from a reduced-resolution
#: decode keep the gate's bar (compress.reduced_decode)? ``passed`` (every codec) or the codecs in
#: ``codecs_passed``, at ``min_side``, let a runtime use it (models.reduction.validated_reduction).
_REDUCED_DECODE = {
    "type": "object",
    "required": ["passed", "min_side", "rule", "n_images", "n_reduced", "criteria", "sets"],
    "properties": {
        "passed": {"type": "boolean"},
        "min_side": {"type": "integer", "minimum": 1},
        "rule": {"type": "string", "minLength": 1},
        "n_images": _count,
        "n_reduced": _count,
        "abs_dp_reduced": {"type": "object", "properties": {"max": _prob, "p99": _prob}},
        "criteria": {"type": "object", "required": ["budget", "min_agreement"],
                     "properties": {"budget": {"type": "number", "minimum": 0},
                                    "min_agreement": _prob}},
        "sets": {"type": "array", "items": {
            "type": "object", "required": ["dataset", "decoding", "n_images", "n_reduced"],
            "properties": {"dataset": {"type": "string"}, "decoding": {"type": "string"},
                           "n_images": _count, "n_reduced": _count}}},
        "reasons": {"type": "array", "items": {"type": "string"}},
        "codecs_passed": {"type": "array", "items": {"enum": ["jpeg", "jpeg2000"]}, "uniqueItems": True},
        "by_codec": {"type": "object", "additionalProperties": {
            "type": "object", "required": ["passed"],
            "properties": {"passed": {"type": "boolean"}, "n_reduced": _count, "max_abs_dp": _prob,
                           "reasons": {"type": "array", "items": {"type": "string"}}}}},
    },
}

CARD_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "mura-fracture model card",
    "type": "object",
    "required": [
        "schema_version", "name", "version", "architecture", "task", "intended_use", "input",
        "outputs", "body_parts", "thresholds", "metrics", "validation", "provenance", "artifacts",
        "primary_artifact", "software", "files",
    ],
    "properties": {
        "schema_version": {"const": CARD_SCHEMA_VERSION},
        "name": {"type": "string", "minLength": 1},
        "version": {"type": "string", "minLength": 1},
        "created": {"type": "string"},
        "architecture": {"type": "string", "minLength": 1},
        "task": {
            "type": "object",
            "required": ["name", "positive_label", "negative_label"],
            "properties": {
                "name": {"enum": sorted(TASK_WORDS)},
                "positive_label": {"type": "string"},
                "negative_label": {"type": "string"},
            },
        },
        "intended_use": {"type": "string", "pattern": "(?i)not for diagnostic use"},
        "input": {
            "type": "object",
            "required": ["name", "shape", "dtype", "preprocessing"],
            "properties": {
                "name": {"type": "string"},
                "shape": {"type": "array", "items": {"type": "integer"}, "minItems": 4, "maxItems": 4},
                "dtype": {"const": "float32"},
                "preprocessing": {
                    "type": "object",
                    "required": ["input_size", "mean", "std", "clip_percentiles", "version"],
                },
            },
        },
        "outputs": {
            "type": "object",
            "required": ["fracture_prob", "body_part_prob", "cam"],
            "additionalProperties": {
                "type": "object",
                "required": ["shape"],
                "properties": {"shape": {"type": "array", "items": {"type": "integer"}}},
            },
        },
        "body_parts": {"type": "array", "items": {"type": "string"}, "minItems": 1},
        "thresholds": {
            "type": "object",
            "required": ["suspicious", "likely"],
            "properties": {
                "suspicious": {"type": "number", "minimum": 0, "maximum": 1},
                "likely": {"type": "number", "minimum": 0, "maximum": 1},
            },
        },
        "metrics": {"type": "object", "additionalProperties": _metric_set},
        "validation": {
            "type": "object",
            "required": ["verdict", "precision"],
            "properties": {
                "verdict": {"enum": ["passed", "failed", "not_validated"]},
                "precision": {"type": "string"},
                "budget": _num,
                "devices": {
                    "type": "object",
                    "additionalProperties": {
                        "type": "object",
                        "required": ["inference_precision"],
                        "properties": {"inference_precision": {"enum": ["f32", "bf16", "f16"]}},
                    },
                },
            },
        },
        "provenance": {
            "type": "object",
            "required": ["training_data", "validation_data"],
        },
        "artifacts": {
            "type": "object",
            "minProperties": 1,
            "additionalProperties": {"type": "string"},
        },
        "primary_artifact": {"type": "string"},
        "calibration": {
            "type": "object",
            "required": ["method", "slope", "intercept"],
            "properties": {"method": {"enum": ["none", "platt"]}, "slope": _num, "intercept": _num},
        },
        "indications": {
            "type": "object",
            "required": ["regions"],
            "properties": {
                "regions": {"type": "array", "items": {"type": "string"}, "minItems": 1},
                "views": {"type": "array", "items": {"type": "string"}},
                "age": {"type": "string"},
                "modalities": {"type": "array", "items": {"type": "string"}, "minItems": 1},
                "min_body_part_confidence": {"type": "number", "minimum": 0, "maximum": 1},
            },
        },
        "reduced_decode": _REDUCED_DECODE,
        "licences": {"type": "object", "additionalProperties": {"type": "string"}},
        "software": {"type": "object"},
        "files": {
            "type": "object",
            "minProperties": 1,
            "additionalProperties": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
        },
    },
}


def validate_card(card: dict, source: str = CARD_FILE) -> None:
    """Raise CardValidationError naming the first offending field."""
    # imported here: jsonschema (with attrs and referencing) costs ~0.15 s, which the viewer's
    # start-up should not pay before its window is shown; cards are validated on a worker
    import jsonschema

    try:
        jsonschema.validate(card, CARD_SCHEMA)
    except jsonschema.ValidationError as e:
        where = "/".join(str(p) for p in e.absolute_path) or "<root>"
        raise CardValidationError(f"{source}: invalid model card at '{where}': {e.message}") from e
    th = card["thresholds"]
    if th["suspicious"] > th["likely"]:
        raise CardValidationError(
            f"{source}: threshold 'suspicious' ({th['suspicious']}) must not exceed 'likely' ({th['likely']})"
        )
    if card["primary_artifact"] not in card["artifacts"]:
        raise CardValidationError(
            f"{source}: primary_artifact {card['primary_artifact']!r} is not one of {sorted(card['artifacts'])}"
        )
    n_bp = len(card["body_parts"])
    bp_shape = card["outputs"]["body_part_prob"]["shape"]
    if bp_shape[-1] != n_bp:
        raise CardValidationError(
            f"{source}: outputs/body_part_prob has {bp_shape[-1]} classes but body_parts lists {n_bp}"
        )


@dataclass
class Bundle:
    """A loaded, checksum-verified bundle."""

    root: Path
    card: dict

    @property
    def preprocess(self) -> PreprocessConfig:
        return PreprocessConfig.from_dict(self.card["input"]["preprocessing"])

    @property
    def body_parts(self) -> list[str]:
        return list(self.card["body_parts"])

    @property
    def task(self) -> str:
        return self.card["task"]["name"]

    @property
    def thresholds(self) -> dict[str, float]:
        return dict(self.card["thresholds"])

    def artifact_path(self, key: str | None = None) -> Path:
        key = key or self.card["primary_artifact"]
        if key not in self.card["artifacts"]:
            raise BundleError(
                f"{self.root}: bundle has no artifact {key!r} (it has {sorted(self.card['artifacts'])})"
            )
        return self.root / self.card["artifacts"][key]

    @property
    def model_id(self) -> str:
        """Name, version and the primary model file's hash: what a result row records."""
        primary = self.card["artifacts"][self.card["primary_artifact"]]
        return f"{self.card['name']}@{self.card['version']}#{self.card['files'][primary][:12]}"


def write_bundle(root: str | Path, card: dict) -> Bundle:
    """Checksum every file the card's artifacts name (and their .bin), validate, write card.json."""
    root = Path(root)
    files: dict[str, str] = {}
    for rel in card["artifacts"].values():
        for f in _artifact_files(root, rel):
            files[f] = sha256_file(root / f)
    card = {**card, "files": files}
    validate_card(card, str(root / CARD_FILE))
    atomic_write_json(root / CARD_FILE, card)
    return Bundle(root=root, card=card)


def _artifact_files(root: Path, rel: str) -> list[str]:
    out = [rel]
    if rel.endswith(".xml"):
        out.append(rel[:-4] + ".bin")
    for f in out:
        if not (root / f).is_file():
            raise BundleError(f"{root / f}: model file named by the card is missing")
    return out


def load_bundle(root: str | Path, *, verify_checksums: bool = True) -> Bundle:
    """Read, validate and checksum-verify a bundle folder."""
    root = Path(root)
    card_path = root / CARD_FILE
    if not root.is_dir():
        raise BundleError(f"{root}: model bundle folder not found")
    if not card_path.is_file():
        raise BundleError(f"{card_path}: bundle has no card.json")
    try:
        card = json.loads(card_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CardValidationError(f"{card_path}: not valid JSON ({e})") from e
    validate_card(card, str(card_path))
    for rel in card["artifacts"].values():
        for f in _artifact_files(root, rel):
            if f not in card["files"]:
                raise ChecksumError(f"{root / f}: file has no checksum in the card")
    if verify_checksums:
        for rel, expected in card["files"].items():
            p = root / rel
            if not p.is_file():
                raise BundleError(f"{p}: file listed in the card is missing")
            actual = sha256_file(p)
            if actual != expected:
                raise ChecksumError(
                    f"{p}: sha256 {actual[:16]}… does not match the card's {expected[:16]}…; "
                    "the file was altered or corrupted"
                )
    return Bundle(root=root, card=card)


# --- building a card ------------------------------------------------------------------------


@dataclass(frozen=True)
class BundleFacts:
    """What compress adds to the trainer's manifest: the bundle's identity, files and data."""

    name: str  # "" = ARCH-TASK
    version: str
    input_name: str
    cam_shape: Sequence[int]  # (h, w) of the exported CAM output
    artifacts: Mapping[str, str]  # key -> file in the bundle folder
    primary_artifact: str
    gate_data: Sequence[str]  # source specs the gate evaluated
    calibration_data: str  # source spec INT8 was calibrated on
    software: Mapping[str, str]  # package -> version
    inference_precision: str  # OpenVINO INFERENCE_PRECISION_HINT of the gate's CPU runs


def card_from_manifest(manifest: Mapping, facts: BundleFacts) -> dict:
    """The card before the gate (verdict "not_validated"): what the engines need to run the files.

    Everything about the model (labels, body parts, preprocessing, calibration, operating points,
    training-time figures, provenance, licences) comes from the run manifest, nothing from code.
    """
    model, task, data = manifest["model"], manifest["model"]["task"], manifest["data"]
    s = int(manifest["preprocessing"]["input_size"])
    return {
        "calibration": dict(manifest["calibration"]),
        "licences": dict(manifest["licences"]),
        "schema_version": CARD_SCHEMA_VERSION,
        "name": facts.name or f"{model['architecture']}-{task['name']}",
        "version": facts.version,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "architecture": model["architecture"],
        "task": {"name": task["name"], "positive_label": task["positive_label"],
                 "negative_label": task["negative_label"], "display_word": TASK_WORDS[task["name"]]},
        "intended_use": INTENDED_USE,
        "input": {"name": facts.input_name, "shape": [-1, 1, s, s], "dtype": "float32",
                  "preprocessing": dict(manifest["preprocessing"])},
        "outputs": {"fracture_prob": {"shape": [-1]}, "body_part_prob": {"shape": [-1, len(model["body_parts"])]},
                    "cam": {"shape": [-1, *facts.cam_shape]}},
        "body_parts": list(model["body_parts"]),
        "thresholds": dict(manifest["thresholds"]),
        "metrics": {name: card_metrics(name, m) for name, m in manifest["metrics"].items()},
        "validation": {"verdict": "not_validated", "precision": "int8",
                       "inference_precision": facts.inference_precision},
        "provenance": {"training_data": data["training"], "validation_data": data["validation"],
                       "test_data": data.get("test"), "gate_data": list(facts.gate_data),
                       "calibration_data": facts.calibration_data,
                       "checkpoint_epoch": int(manifest["checkpoint"]["epoch"]),
                       "initialisation": manifest["initialisation"]},
        "artifacts": dict(facts.artifacts),
        "primary_artifact": facts.primary_artifact,
        "software": dict(facts.software),
        "files": {},
    }


def gated_card(card: Mapping, *, validation: Mapping, gate_results: Sequence[Mapping],
               quantization: Mapping, indications: Mapping,
               reduced_decode: Mapping | None = None) -> dict:
    """The card after the gate: its verdict, its per-set figures, how INT8 was made, the scope,
    and (when measured) whether scoring from a reduced-resolution decode keeps the gate's bar."""
    metrics = {**card["metrics"], **{f"gate:{r['dataset']}": dict(r) for r in gate_results}}
    extra = {} if reduced_decode is None else {"reduced_decode": dict(reduced_decode)}
    return {**card, "validation": dict(validation), "metrics": metrics,
            "quantization": dict(quantization), "indications": dict(indications), **extra}


def card_metrics(name: str, m: Mapping) -> dict:
    """What the card says a model scored on one set at training time (calibrated probabilities)."""
    out = {"dataset": name, "n_images": m["n_images"], "n_studies": m["n_studies"],
           "image_auc": m["image"]["auc"], "study_auc": m["study"]["auc"],
           "study_kappa": m["study"]["kappa"], "study_accuracy": m["study"]["accuracy"],
           "source": "torch FP32, at training time"}
    for key in ("auc_ci95", "ece", "ece_uncalibrated"):
        if key in m["study"]:
            v = m["study"][key]
            out[f"study_{key}"] = list(v) if isinstance(v, tuple) else v  # JSON has no tuples
    if "auc_ci95" in m["image"]:
        out["image_auc_ci95"] = list(m["image"]["auc_ci95"])
    if "operating_points" in m:
        out["operating_points"] = {k: {"threshold": v["threshold"], "sensitivity": v["sensitivity"],
                                       "specificity": v["specificity"]} for k, v in m["operating_points"].items()}
    if "per_body_part" in m:
        out["per_body_part"] = {bp: {"n_studies": v["n_studies"], "auc": v.get("auc"),
                                     "auc_ci95": list(v.get("auc_ci95") or [])}
                                for bp, v in m["per_body_part"].items()}
    return out
