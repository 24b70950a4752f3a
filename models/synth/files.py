"""File-writing helpers shared by the layout writers: atomic writes, ownership markers, workers.

Kept apart from the layouts so the MURA/external and DICOM writers claim folders, validate
arguments and parallelise the same way (and stay deterministic whatever ``jobs`` is).
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from models.errors import ConfigError
from models.synth.anatomy import _TALL_PARTS

# --------------------------------------------------------------------------------------------
# Writing files
# --------------------------------------------------------------------------------------------


def _atomic_write(path: Path, data: bytes) -> None:
    """Readers (a trainer started in parallel, a crashed run) never see a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _to_u8(img: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)


def _png_bytes(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(_to_u8(img)).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def _check_range(name: str, pair: Sequence[int], lo: int) -> tuple[int, int]:
    try:
        a, b = (int(x) for x in pair)
    except (TypeError, ValueError):
        a, b = -1, -2
    if not lo <= a <= b:
        raise ConfigError(f"{name} {tuple(pair)!r} must be (min, max) with {lo} <= min <= max")
    return a, b


def _check_count(name: str, value: int, lo: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < lo:
        raise ConfigError(f"{name} must be an integer >= {lo}, got {value!r}")
    return int(value)


def _shape_for(rng: np.random.Generator, part: str, size_range: tuple[int, int]) -> tuple[int, int]:
    """Image size in the range; long bones get portrait frames as on a real plate."""
    a, b = (int(x) for x in rng.integers(size_range[0], size_range[1] + 1, size=2))
    if part in _TALL_PARTS:
        a, b = max(a, b), min(a, b)
    return a, b


_MARKER = ".mura-synth-{kind}.json"


def _claim(root: Path, kind: str, entries: Sequence[str], meta: dict) -> None:
    """Remove what an earlier run of this writer left, and refuse to clobber foreign files.

    Without this, regenerating with fewer patients would leave orphan images that folder-walking
    loaders pick up, breaking determinism.
    """
    root.mkdir(parents=True, exist_ok=True)
    marker = root / _MARKER.format(kind=kind)
    if marker.exists():
        try:
            old = json.loads(marker.read_text()).get("entries", [])
        except (ValueError, AttributeError):
            old = []
        for name in old:
            target = root / Path(str(name)).name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
    clash = [name for name in entries if (root / name).exists()]
    if clash:
        raise ConfigError(
            f"{root / clash[0]} already exists and was not written by mura-synth; "
            "choose an empty output folder"
        )
    _atomic_write(marker, json.dumps({**meta, "kind": kind, "entries": list(entries)}).encode())


def _check_jobs(jobs: int | None) -> int:
    return min(os.cpu_count() or 1, 8) if jobs is None else _check_count("jobs", jobs, 1)


def _parallel_map(fn: Callable[[tuple], object], tasks: Sequence[tuple], jobs: int) -> list:
    """Map in worker processes when it pays off; results keep task order (determinism).

    Workers are spawned, not forked: a caller that already imported torch (the end-to-end
    tests, the trainer) must not fork its OpenMP thread pools.
    """
    if jobs == 1 or len(tasks) < 4 * jobs:
        return [fn(t) for t in tasks]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
        return list(pool.map(fn, tasks, chunksize=max(1, len(tasks) // (jobs * 8))))


def _csv_bytes(rows: Sequence[Sequence[object]], header: Sequence[str] | None = None) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    if header is not None:
        writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue().encode()
