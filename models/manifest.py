"""The run manifest: what ``mura-train`` hands to ``mura-compress``, as a schema-checked contract.

A checkpoint's ``meta`` is the trainer's own business (it resumes and fine-tunes from it); the next
stage reads ``run_manifest.json``, written beside the best checkpoint when training ends. It says
which checkpoint it describes (file name, sha256, epoch), how to rebuild the network (architecture,
task and its labels, body parts, CAM pooling and stride), the preprocessing, the data source and
how it was split (so compress keeps training images out of calibration and the gate), where the
weights came from and the licences that follows from it, the calibration, the operating points
and the figures measured at training time. Written and read through one JSON schema: a wrong or
missing field is a :class:`ManifestError` naming the file and the field, never a ``KeyError``
minutes into an export.

Checkpoints written before manifests existed have none: :func:`legacy_manifest` derives it from
their meta and the run's ``config.json`` with the very function the trainer uses
(:func:`manifest_from_meta`), so both paths give the same manifest. Torch-free.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from models.errors import ConfigError, ManifestError
from models.fsutil import atomic_write_json, json_value, sha256_file
from models.labels import TASK_LABELS, TASK_WORDS

MANIFEST_FILE = "run_manifest.json"
MANIFEST_SCHEMA_VERSION = "1.0"
#: What a run without calibration or operating points (it stopped before its last step) implies.
IDENTITY_CALIBRATION = {"method": "none", "slope": 1.0, "intercept": 0.0}
DEFAULT_THRESHOLDS = {"suspicious": 0.3, "likely": 0.5}

_str = {"type": "string", "minLength": 1}
_prob = {"type": "number", "minimum": 0, "maximum": 1}
_summary = {"type": "object", "required": ["dataset"],
            "properties": {"dataset": {"type": "string"}, "n_images": {"type": "integer", "minimum": 0}}}
_auc = {"type": ["number", "null"]}
_level = {"type": "object", "required": ["auc"], "properties": {"auc": _auc}}
_metric_set = {
    "type": "object",
    "required": ["n_images", "n_studies", "image", "study"],
    "properties": {
        "n_images": {"type": "integer", "minimum": 0},
        "n_studies": {"type": "integer", "minimum": 0},
        "image": _level,
        "study": {**_level, "required": ["auc", "kappa", "accuracy"]},
    },
}

MANIFEST_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "mura-fracture run manifest",
    "type": "object",
    "required": ["schema_version", "checkpoint", "model", "preprocessing", "data", "initialisation",
                 "licences", "calibration", "thresholds", "metrics"],
    "properties": {
        "schema_version": {"const": MANIFEST_SCHEMA_VERSION},
        "checkpoint": {
            "type": "object",
            "required": ["file", "sha256", "epoch"],
            "properties": {"file": _str, "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                           "epoch": {"type": "integer", "minimum": 0}},
        },
        "model": {
            "type": "object",
            "required": ["architecture", "task", "body_parts", "cam_pool", "cam_stride"],
            "properties": {
                "architecture": _str,
                "task": {"type": "object", "required": ["name", "positive_label", "negative_label"],
                         "properties": {"name": {"enum": sorted(TASK_WORDS)}, "positive_label": _str,
                                        "negative_label": _str}},
                "body_parts": {"type": "array", "items": _str, "minItems": 1},
                "cam_pool": {"enum": ["mean", "max", "lse"]},
                "cam_stride": {"enum": [8, 16, 32]},
            },
        },
        "preprocessing": {
            "type": "object",
            "required": ["input_size", "mean", "std", "clip_percentiles", "version"],
            "properties": {"input_size": {"type": "integer", "minimum": 8}, "mean": {"type": "number"},
                           "std": {"type": "number", "exclusiveMinimum": 0}},
        },
        "data": {
            "type": "object",
            "required": ["source", "split", "training", "validation"],
            "properties": {
                "source": {"type": "string"},
                "split": {"oneOf": [{"type": "null"}, {
                    "type": "object", "required": ["method", "val_fraction", "seed"],
                    "properties": {"method": {"const": "group_by_patient"},
                                   "val_fraction": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
                                   "seed": {"type": "integer"}}}]},
                "training": _summary,
                "validation": _summary,
                "test": {"oneOf": [{"type": "null"}, _summary]},
            },
        },
        "initialisation": {"type": "string"},
        "localisation": {"type": "string"},
        "licences": {"type": "object", "required": ["weights", "training_data"],
                     "additionalProperties": {"type": "string"}},
        "calibration": {"type": "object", "required": ["method", "slope", "intercept"],
                        "properties": {"method": {"enum": ["none", "platt"]}, "slope": {"type": "number"},
                                       "intercept": {"type": "number"}}},
        "thresholds": {"type": "object", "required": ["suspicious", "likely"],
                       "properties": {"suspicious": _prob, "likely": _prob}},
        "metrics": {"type": "object", "additionalProperties": _metric_set},
    },
}


def validate_manifest(manifest: Any, source: str | Path) -> None:
    """Raise :class:`ManifestError` naming ``source`` and the first offending field (in the
    schema's order: an unknown task is reported as the task, not as the labels it left empty)."""
    import jsonschema  # ~0.15 s; only the stages that hand models over pay it

    error = next(jsonschema.Draft202012Validator(MANIFEST_SCHEMA).iter_errors(manifest), None)
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "<root>"
        raise ManifestError(source, where, error.message)
    th = manifest["thresholds"]
    if th["suspicious"] > th["likely"]:
        raise ManifestError(source, "thresholds/suspicious",
                            f"{th['suspicious']} exceeds the 'likely' threshold {th['likely']}")


def write_manifest(path: str | Path, manifest: Mapping) -> Path:
    """Validate, then write atomically: a manifest on disk is always a valid one."""
    value = json_value(manifest)
    validate_manifest(value, path)
    return atomic_write_json(path, value)


def read_manifest(path: str | Path) -> dict:
    """Parse and validate ``path``; every problem is a :class:`ManifestError` naming it."""
    p = Path(path)
    try:
        manifest = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise ManifestError(p, "<root>", "file not found") from e
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ManifestError(p, "<root>", f"not readable JSON ({e})") from e
    validate_manifest(manifest, p)
    return manifest


def find_manifest(checkpoint: str | Path) -> dict | None:
    """The manifest beside ``checkpoint`` when it describes that very file, else None.

    A manifest that names the file but not its content (the checkpoint was rewritten after it,
    e.g. by a resumed run that has not finished) is an error, not a silent fallback.
    """
    ck = Path(checkpoint)
    path = ck.parent / MANIFEST_FILE
    if not path.is_file():
        return None
    manifest = read_manifest(path)
    if manifest["checkpoint"]["file"] != ck.name:
        return None
    if sha256_file(ck) != manifest["checkpoint"]["sha256"]:
        raise ManifestError(path, "checkpoint/sha256",
                            f"describes another version of {ck.name} (rewritten after the manifest: "
                            "a resumed run that has not finished?); finish or rerun the training")
    return manifest


def legacy_manifest(checkpoint: str | Path, meta: Mapping, epoch: int) -> dict:
    """The manifest of a checkpoint written before manifests existed: from its meta and the run's
    ``config.json`` beside it (the split is unknown without it), validated like a written one."""
    ck = Path(checkpoint)
    manifest = json_value(manifest_from_meta(meta, checkpoint=ck, epoch=epoch,
                                             config=_read_config(ck.parent / "config.json")))
    validate_manifest(manifest, f"{ck} (its meta; no {MANIFEST_FILE} describes it)")
    return manifest


def _read_config(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ConfigError(f"{path}: unreadable run configuration: {e}") from e
    return raw if isinstance(raw, dict) else None


def manifest_from_meta(meta: Mapping, *, checkpoint: Path, epoch: int, config: Mapping | None) -> dict:
    """The manifest of ``checkpoint`` (1-based ``epoch``) from its meta and the run's config.

    Missing values stay missing (None), so that the schema names them; defaults are only those
    compress has always assumed for older checkpoints (mean CAM pooling, stride 32, no
    calibration, operating points 0.3/0.5, initialisation unknown).
    """
    prov = meta.get("provenance") or {}
    task = meta.get("task")
    positive, negative = TASK_LABELS.get(str(task), (None, None))
    manifest = {
        "schema_version": MANIFEST_SCHEMA_VERSION,
        "checkpoint": {"file": checkpoint.name, "sha256": sha256_file(checkpoint), "epoch": epoch},
        "model": {"architecture": meta.get("architecture"),
                  "task": {"name": task, "positive_label": positive, "negative_label": negative},
                  "body_parts": meta.get("body_parts"), "cam_pool": meta.get("cam_pool", "mean"),
                  "cam_stride": meta.get("cam_stride", 32)},
        "preprocessing": meta.get("preprocess"),
        "data": {"source": prov.get("data_source", ""), "split": _split(config),
                 "training": prov.get("training_data"), "validation": prov.get("validation_data"),
                 "test": prov.get("test_data")},
        "initialisation": prov.get("initialisation", "unknown"),
        "licences": licences(meta),
        "calibration": meta.get("calibration", IDENTITY_CALIBRATION),
        "thresholds": meta.get("thresholds", DEFAULT_THRESHOLDS),
        "metrics": meta.get("metrics", {}),
    }
    if "localisation" in prov:
        manifest["localisation"] = prov["localisation"]
    return manifest


def _split(config: Mapping | None) -> dict | None:
    """How the trainer split its pool (:func:`models.datasources.split_source`); None: unknown."""
    if not config or "val_fraction" not in config or "seed" not in config:
        return None
    return {"method": "group_by_patient", "val_fraction": config["val_fraction"], "seed": config["seed"],
            "max_train_images": config.get("max_train_images", 0)}


DATA_LICENCES = {
    "fracatlas": "FracAtlas (Abedeen et al., Scientific Data 2023), CC BY 4.0",
    "mura": "MURA v1.1 (Stanford AIMI), research use agreement: no clinical or commercial use",
}


def licences(meta: Mapping) -> dict:
    """The licences a model inherits: of its initial weights and of its training data."""
    prov = meta.get("provenance") or {}
    init = str(prov.get("initialisation", "random"))
    arch = meta.get("architecture", "")
    if "imagenet" in init.lower():
        # torch-side module (its weights' packages); only a run with ImageNet weights reaches it
        from models.nn.pretrained import IMAGENET_PACKAGES, weights_licence

        weights = (weights_licence(arch) if arch in IMAGENET_PACKAGES
                   else f"ImageNet weights ({init}): see their source's licence")
    else:
        weights = "none: trained from random initialisation by this project"
    kind = str(prov.get("data_source", "")).partition(":")[0]
    data = DATA_LICENCES.get(kind, "see the training data's own terms")
    if "phantom" in str(prov.get("training_data", "")).lower():
        data = "phantom images made by mura-synth (no real data)"
    return {"weights": weights, "training_data": data}
