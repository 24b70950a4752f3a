"""Which model bundle to use when the user names none, and where the sample radiographs are.

A newcomer's first ``mura-screen FOLDER`` or ``mura-viewer`` should score something real without
first learning to train and compress a model, so the repository ships one reference bundle,
``models/reference/fracatlas-lite0`` (EfficientNet-Lite0 fine-tuned on FracAtlas; research use
only), and a handful of FracAtlas radiographs in ``samples/``. The frozen clinic app ships its
bundle elsewhere (``<install>/model``, next to the executables, where IT can replace it), so the
lookup knows both places. Whichever is chosen, the programs say so in one line: a default that
silently scores a clinic's images with an unexpected model would be worse than an error.

Order (the first that applies wins):

1. ``MURA_DEFAULT_MODEL``: a bundle folder, for any run (source or installed). Returned even if
   it does not exist, so loading fails naming it instead of quietly using another model.
2. ``MURA_MODEL`` or, in a frozen (PyInstaller) app, ``<install>/model``: the bundle the
   installed app has always used (:mod:`desktop.screening.paths` re-exports this lookup).
3. ``models/reference/fracatlas-lite0`` when it holds a ``card.json``.

Stdlib only: the frozen runtime, the screener and the viewer all import this (no torch, no Qt).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import models
from models.errors import NoModelError

__all__ = [
    "DEFAULT_MODEL_ENV",
    "INSTALL_MODEL_DIR",
    "INSTALL_MODEL_ENV",
    "REFERENCE_NAME",
    "DefaultBundle",
    "default_bundle_path",
    "find_default_bundle",
    "installed_bundle_dir",
    "reference_dir",
    "require_default_bundle",
    "samples_dir",
]

REFERENCE_NAME = "fracatlas-lite0"
#: Names the default bundle for any run; beats everything except an explicit ``--model``.
DEFAULT_MODEL_ENV = "MURA_DEFAULT_MODEL"
#: The installed app's override (installers/README.md "Replace the model bundle").
INSTALL_MODEL_ENV = "MURA_MODEL"
#: The frozen app's bundle folder, next to its executables.
INSTALL_MODEL_DIR = "model"
_CARD = "card.json"  # models.card.CARD_FILE; not imported: that module pulls in jsonschema


@dataclass(frozen=True)
class DefaultBundle:
    """The bundle chosen without ``--model`` and, in words, why (for the one-line notice)."""

    path: Path
    origin: str

    def notice(self, prog: str) -> str:
        """The line a program prints when it uses this bundle: which model, and that it is a
        research model, so nobody mistakes the default for a validated clinical one."""
        return (f"{prog}: no --model given: using {self.origin} {_display_path(self.path)} "
                "(research use only)")


def _env_path(name: str) -> Path | None:
    value = os.environ.get(name, "").strip()
    return Path(value).expanduser() if value else None


def reference_dir() -> Path:
    """Where the repository's reference bundle lives (it may not exist yet)."""
    return Path(models.__file__).resolve().parent / "reference" / REFERENCE_NAME


def installed_bundle_dir() -> Path | None:
    """``$MURA_MODEL``, else a frozen app's ``<install>/model``; None when neither applies.

    ``sys.executable`` is the bootloader in a frozen build; resolving it follows the
    ``/usr/bin`` launcher symlinks a package adds back to the real install folder, so a shortcut,
    a file association or another working directory all find the same bundle.
    """
    env = _env_path(INSTALL_MODEL_ENV)
    if env is not None:
        return env
    if getattr(sys, "frozen", False):
        folder = Path(sys.executable).resolve().parent / INSTALL_MODEL_DIR
        if (folder / _CARD).is_file():
            return folder
    return None


def find_default_bundle() -> DefaultBundle | None:
    """The bundle to use without ``--model`` and where it came from; None when there is none."""
    env = _env_path(DEFAULT_MODEL_ENV)
    if env is not None:
        return DefaultBundle(env, f"the bundle named by {DEFAULT_MODEL_ENV}:")
    installed = installed_bundle_dir()
    if installed is not None:
        origin = (f"the bundle named by {INSTALL_MODEL_ENV}:" if _env_path(INSTALL_MODEL_ENV)
                  else "the installed model")
        return DefaultBundle(installed, origin)
    ref = reference_dir()
    if (ref / _CARD).is_file():
        return DefaultBundle(ref, "the shipped reference model")
    return None


def default_bundle_path() -> Path | None:
    """The bundle folder to use when no ``--model`` is given, or None (see the module doc)."""
    found = find_default_bundle()
    return found.path if found is not None else None


def require_default_bundle() -> DefaultBundle:
    """:func:`find_default_bundle`, or :class:`~models.errors.NoModelError` saying what to do.

    For programs that cannot run without a model (``mura-screen``): the message names
    ``--model`` and every place that was looked at, so the user can act on it alone.
    """
    found = find_default_bundle()
    if found is None:
        raise NoModelError(
            f"no model bundle: pass --model BUNDLE (a folder with card.json), or set "
            f"{DEFAULT_MODEL_ENV}=BUNDLE; the shipped reference model {_display_path(reference_dir())} "
            "is not in this checkout (`make reference-model` builds it)")
    return found


def samples_dir() -> Path | None:
    """The repository's ``samples/`` folder of sample radiographs, or None when absent (an
    installed app, or a checkout without it): the viewer offers it only when it is there."""
    folder = Path(models.__file__).resolve().parent.parent / "samples"
    return folder if folder.is_dir() else None


def _display_path(path: Path) -> Path:
    """``path`` relative to the working directory when it is below it (shorter notices: the
    README's ``models/reference/fracatlas-lite0``), else as is. For display only: the path
    that is loaded, and may be saved in the viewer's settings, stays absolute."""
    try:
        return path.resolve().relative_to(Path.cwd().resolve())
    except (ValueError, OSError):
        return path
