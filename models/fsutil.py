"""Small file-system helpers: atomic writes and checksums.

Every output that a later step or a resumed run trusts is written to a temporary file in the same
folder and renamed into place, so a crash leaves either the old file or the new one, never half.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, overload


def _default_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


_MODE = _default_mode()  # what open() would give: mkstemp's 0600 would lock out other users


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _MODE)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: object) -> Path:
    """Strict JSON: an undefined figure (NaN, e.g. the AUC of a one-class subset) becomes null,
    because cards and metrics are read by browsers and other tools that reject ``NaN``."""
    return atomic_write_text(path, json.dumps(_finite(obj), indent=2, sort_keys=False, allow_nan=False) + "\n")


@overload
def json_value(obj: Mapping[Any, Any]) -> dict[str, Any]: ...
@overload
def json_value(obj: object) -> object: ...
def json_value(obj: object) -> object:
    """``obj`` exactly as :func:`atomic_write_json` would write and ``json.load`` read it back
    (tuples as lists, NaN as None): what a schema is checked against before the file is written."""
    return json.loads(json.dumps(_finite(obj), allow_nan=False))


def _finite(obj: object) -> object:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
