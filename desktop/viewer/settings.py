"""The viewer's persistent settings (QSettings): inference device, model bundle, default window.

Stored per user in an INI file (``~/.config/mura-fracture/mura-viewer.ini`` on Linux) rather
than the platform's native store, so a site can inspect, copy or pre-seed it, and tests can
redirect it with ``QSettings.setPath``. Nothing here touches the network.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from PySide6.QtCore import QSettings

__all__ = [
    "APP",
    "DEVICES",
    "ORG",
    "WL_PRESETS",
    "ViewerSettings",
    "device_choices",
    "preset_index",
    "settings_store",
]

ORG = "mura-fracture"
APP = "mura-viewer"
#: What the device box always offers; OpenVINO's own device names are added to it.
DEVICES = ("AUTO", "CPU", "GPU")
#: Default window for newly shown DICOM images: key -> (label, prefix of the preset's name in
#: :func:`models.dicom.window_presets`; None: the file's own VOI).
WL_PRESETS: dict[str, tuple[str, str | None]] = {
    "file": ("File default (the image's own window)", None),
    "full": ("Full range", "Full range"),
    "bone": ("Bone", "Bone"),
    "soft": ("Soft tissue", "Soft tissue"),
}


def settings_store() -> QSettings:
    """The viewer's QSettings, always INI format in the user scope."""
    return QSettings(QSettings.Format.IniFormat, QSettings.Scope.UserScope, ORG, APP)


def device_choices(available: Sequence[str]) -> list[str]:
    """AUTO, CPU and GPU, then any more specific device OpenVINO reports (``GPU.0``, ``NPU``).

    GPU is offered even when none is reported: a bundle path and a device are set up once per
    site, possibly before the GPU driver is installed; loading then fails with a clear message.
    """
    out = list(DEVICES)
    for d in available:
        if d not in out:
            out.append(str(d))
    return out


@dataclass
class ViewerSettings:
    """What the Settings dialog edits. ``model_path`` empty: no model unless ``--model``."""

    device: str = "CPU"
    model_path: str = ""
    wl_preset: str = "file"
    #: the mura-node whose received studies File → Received shows (its node.toml or data
    #: folder); set when the reader first picks it, not in the Settings dialog
    node_location: str = ""

    @classmethod
    def load(cls, store: QSettings | None = None) -> ViewerSettings:
        """Read the settings; unknown or missing values fall back to the defaults."""
        s = store or settings_store()
        d = cls()
        device = str(s.value("inference/device", d.device) or d.device)
        preset = str(s.value("display/default_window", d.wl_preset) or d.wl_preset)
        return cls(device=device.strip() or d.device,
                   model_path=str(s.value("model/bundle_path", "") or ""),
                   wl_preset=preset if preset in WL_PRESETS else d.wl_preset,
                   node_location=str(s.value("node/location", "") or ""))

    def save(self, store: QSettings | None = None) -> None:
        s = store or settings_store()
        s.setValue("inference/device", self.device)
        s.setValue("model/bundle_path", self.model_path)
        s.setValue("display/default_window", self.wl_preset)
        s.setValue("node/location", self.node_location)
        s.sync()

    def save_node_location(self, location: str, store: QSettings | None = None) -> None:
        """Remember the node alone: the other values as applied may differ from those chosen
        (a ``--model`` or ``--device`` of this session), and are not the reader's to save here."""
        self.node_location = location
        s = store or settings_store()
        s.setValue("node/location", location)
        s.sync()


def preset_index(names: Sequence[str], wl_preset: str) -> int | None:
    """Index in ``names`` (an image's window presets) of the default ``wl_preset``; None when
    the file's own window is wanted or the image has no such preset (plain PNG/JPEG)."""
    prefix = WL_PRESETS.get(wl_preset, (None, None))[1]
    if prefix is None:
        return None
    return next((i for i, n in enumerate(names) if n.startswith(prefix)), None)
