"""Checkpoints: atomically written, loadable with ``torch.load(weights_only=True)``.

A checkpoint holds only tensors and plain containers (no pickled classes), so loading one from an
untrusted source cannot execute code. ``meta`` carries what the trainer needs to rebuild and resume
the model (architecture, body parts, task, preprocessing, thresholds, metrics, provenance); what
the next stage may rely on is the run manifest beside it (:mod:`models.manifest`). The trainer
writes checkpoints, compress and ``mura-evaluate`` read them: this module is shared, not the
trainer's.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path

import torch

from models.errors import ConfigError
from models.fsutil import atomic_write_bytes

CHECKPOINT_FORMAT = "mura-fracture/checkpoint-v1"


def save_checkpoint(path: str | Path, payload: dict) -> Path:
    buf = io.BytesIO()
    torch.save({"format": CHECKPOINT_FORMAT, **payload}, buf)
    return atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: str | Path) -> dict:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"checkpoint not found: {p}")
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - corrupt or unsafe pickle
        raise ConfigError(f"{p}: not a loadable mura-fracture checkpoint ({e})") from e
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise ConfigError(f"{p}: not a {CHECKPOINT_FORMAT} checkpoint")
    return ckpt


def build_network(spec: Mapping, state_dict: Mapping, calibration: Mapping | None = None) -> torch.nn.Module:
    """The network in eval mode from its ``spec`` (architecture, body_parts, cam_pool, cam_stride:
    a checkpoint's meta or a run manifest's ``model``) and its weights.

    ``calibration`` (Platt slope and intercept) is what ``trainer.train.predict`` applies; the
    exported graph ends at the raw probability (the card carries the calibration).
    """
    from models.nn.networks import create_model

    net = create_model(spec["architecture"], num_body_parts=len(spec["body_parts"]),
                       cam_pool=spec.get("cam_pool", "mean"), cam_stride=int(spec.get("cam_stride", 32)))
    net.load_state_dict(state_dict)
    cal = calibration or {}
    net.calibration = (float(cal.get("slope", 1.0)), float(cal.get("intercept", 0.0)))
    return net.eval()


def model_from_checkpoint(ckpt: dict) -> torch.nn.Module:
    """Rebuild the network in eval mode from a loaded checkpoint (its meta)."""
    meta = ckpt["meta"]
    return build_network(meta, ckpt["model"], meta.get("calibration"))
