"""What compress takes from the trainer: the run manifest and the checkpoint's weights.

The manifest (``run_manifest.json`` beside the checkpoint, :mod:`models.manifest`) is the whole
contract: compress never reads the trainer's ``meta`` or ``config.json`` itself. A checkpoint
written before manifests existed gets one derived from its meta, by the trainer's own function.
The weights are loaded with ``torch.load(weights_only=True)`` and the network is rebuilt from the
manifest's ``model`` (:mod:`models.nn`), for the ONNX export and the torch reference scores.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from models.manifest import find_manifest, legacy_manifest


@dataclass
class TrainedModel:
    checkpoint: Path
    manifest: dict
    state_dict: dict

    def network(self):
        """The trained network in eval mode, with the manifest's calibration (as the trainer scored it)."""
        from models.nn.checkpoint import build_network

        return build_network(self.manifest["model"], self.state_dict, self.manifest["calibration"])


def load_trained(checkpoint: str | Path) -> TrainedModel:
    """The checkpoint's weights and its manifest (read, or derived for an older checkpoint)."""
    from models.nn.checkpoint import load_checkpoint

    path = Path(checkpoint)
    ck = load_checkpoint(path)
    manifest = find_manifest(path)
    if manifest is None:
        manifest = legacy_manifest(path, ck["meta"], _epoch(ck))
    return TrainedModel(path, manifest, ck["model"])


def run_manifest(checkpoint: str | Path) -> dict:
    """Only the manifest: the weights (and torch) are loaded only for an older checkpoint."""
    path = Path(checkpoint)
    manifest = find_manifest(path)
    if manifest is not None:
        return manifest
    from models.nn.checkpoint import load_checkpoint

    ck = load_checkpoint(path)
    return legacy_manifest(path, ck["meta"], _epoch(ck))


def _epoch(ck: dict) -> int:
    """The 1-based epoch a checkpoint was saved after (0: unknown), as cards have always said."""
    return int(ck.get("epoch", -1)) + 1
