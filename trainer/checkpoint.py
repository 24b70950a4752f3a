"""Checkpoints: atomically written, loadable with ``torch.load(weights_only=True)``.

A checkpoint holds only tensors and plain containers (no pickled classes), so loading one from an
untrusted source cannot execute code. ``meta`` carries everything needed to rebuild the model and
write its card: architecture, body parts, task, preprocessing, thresholds, metrics, provenance.
"""

from __future__ import annotations

import io
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


def model_from_checkpoint(ckpt: dict):
    """Rebuild the network in eval mode from a loaded checkpoint."""
    from models.networks import create_model

    meta = ckpt["meta"]
    net = create_model(meta["architecture"], num_body_parts=len(meta["body_parts"]),
                       cam_pool=meta.get("cam_pool", "mean"), cam_stride=int(meta.get("cam_stride", 32)))
    net.load_state_dict(ckpt["model"])
    cal = meta.get("calibration") or {}
    net.calibration = (float(cal.get("slope", 1.0)), float(cal.get("intercept", 0.0)))
    return net.eval()
