"""Where the installed app finds its model and writes its per-user files (stdlib only, no Qt).

A clinic install lives in a folder users cannot write (``C:\\Program Files\\mura-fracture``,
``/opt/mura-fracture``), so nothing the app writes may go there: settings, caches (OpenVINO's
compiled-model cache) and logs go to the per-user locations each OS expects. The frozen app
ships a model bundle in ``<install>/model`` next to the executables, found relative to the
executable rather than the working directory, so launching from a shortcut, a file association
or another folder finds the same bundle.

Overrides, for portable installs and tests: ``MURA_MODEL`` names another bundle folder;
``MURA_USER_DIR`` puts settings, cache and logs under one folder. The model lookup itself lives
in :mod:`models.reference` (stdlib only too), which the screener and viewer use for their
default model, so the installed app and the programs agree on which bundle that is.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from models.reference import INSTALL_MODEL_DIR, INSTALL_MODEL_ENV, installed_bundle_dir

APP_NAME = "mura-fracture"
MODEL_DIR_NAME = INSTALL_MODEL_DIR
MODEL_ENV = INSTALL_MODEL_ENV
USER_DIR_ENV = "MURA_USER_DIR"


def is_frozen() -> bool:
    """True inside a PyInstaller build (``sys.frozen`` is set by its bootloader)."""
    return bool(getattr(sys, "frozen", False))


def install_dir() -> Path | None:
    """The folder holding the frozen executables, or None when running from source.

    ``sys.executable`` is the bootloader itself in a frozen build; resolving it follows the
    ``/usr/bin`` launcher symlinks a package may add, back to the real install folder.
    """
    if not is_frozen():
        return None
    return Path(sys.executable).resolve().parent


def default_model_dir() -> Path | None:
    """The bundle to use when the user names none: ``$MURA_MODEL``, else ``<install>/model``.

    Returns None when neither exists (running from source, or an install without a bundle);
    the caller then asks for ``--model``. A set but missing ``MURA_MODEL`` is returned as is, so
    loading it fails with a message naming that path instead of silently using another model.
    """
    return installed_bundle_dir()


def _base_dirs() -> dict[str, Path]:
    """The OS's per-user roots for settings, cache and logs (not created here)."""
    override = os.environ.get(USER_DIR_ENV, "").strip()
    if override:
        root = Path(override).expanduser()
        return {"settings": root / "settings", "cache": root / "cache", "logs": root / "logs"}
    home = Path.home()
    if sys.platform == "win32":
        roaming = Path(os.environ.get("APPDATA") or home / "AppData" / "Roaming")
        local = Path(os.environ.get("LOCALAPPDATA") or home / "AppData" / "Local")
        return {"settings": roaming / APP_NAME, "cache": local / APP_NAME / "cache",
                "logs": local / APP_NAME / "logs"}
    if sys.platform == "darwin":
        lib = home / "Library"
        return {"settings": lib / "Application Support" / APP_NAME,
                "cache": lib / "Caches" / APP_NAME, "logs": lib / "Logs" / APP_NAME}

    def xdg(var: str, default: Path) -> Path:
        value = os.environ.get(var, "").strip()
        # The XDG spec says relative values are invalid and must be ignored.
        return Path(value) if value and Path(value).is_absolute() else default

    return {"settings": xdg("XDG_CONFIG_HOME", home / ".config") / APP_NAME,
            "cache": xdg("XDG_CACHE_HOME", home / ".cache") / APP_NAME,
            "logs": xdg("XDG_STATE_HOME", home / ".local" / "state") / APP_NAME / "logs"}


def _inside(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
    except ValueError:
        return False
    return True


def user_dir(kind: str) -> Path:
    """A writable per-user folder for ``kind`` ("settings", "cache" or "logs"), created.

    Falls back to a per-user folder under the system temp directory when the home location
    cannot be created (locked-down profiles, read-only homes) or would lie inside the install
    folder, so the app still starts and never writes into its own installation.
    """
    bases = _base_dirs()
    if kind not in bases:
        raise ValueError(f"unknown per-user folder kind {kind!r}; choose one of {sorted(bases)}")
    path = bases[kind]
    inst = install_dir()
    if inst is None or not _inside(path, inst):
        try:
            path.mkdir(parents=True, exist_ok=True)
            if os.access(path, os.W_OK):
                return path
        except OSError:
            pass
    uid = str(os.getuid()) if hasattr(os, "getuid") else "user"
    user = os.environ.get("USERNAME") or os.environ.get("USER") or uid
    fallback = Path(tempfile.gettempdir()) / f"{APP_NAME}-{user}" / kind
    fallback.mkdir(parents=True, exist_ok=True)
    return fallback


def settings_dir() -> Path:
    return user_dir("settings")


def cache_dir() -> Path:
    """Per-user cache; ``cache_dir() / "openvino"`` suits ``Engine(cache_dir=...)`` (GPU compiles)."""
    return user_dir("cache")


def log_dir() -> Path:
    return user_dir("logs")
