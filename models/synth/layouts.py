"""The folder layouts the trainer reads: the MURA-v1.1 tree and the external fracture set.

Both are written exactly as the real data sets lay them out, so the loaders for the real sets run
unchanged on phantoms.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from PIL import Image

from models.labels import MURA_BODY_PARTS
from models.synth.anatomy import _anatomy
from models.synth.files import (
    _atomic_write,
    _check_count,
    _check_jobs,
    _check_range,
    _claim,
    _csv_bytes,
    _parallel_map,
    _png_bytes,
    _shape_for,
    _to_u8,
)
from models.synth.render import _EXTERNAL_STYLE, _MURA_STYLE, _render

# ---- MURA ----------------------------------------------------------------------------------

_MURA_DIR = "MURA-v1.1"
_POSITIVE_RATE = 0.4


def _mura_plan(seed: int, n_patients: int) -> list[tuple[str, int, str, int, bool, int]]:
    """Decide every study up front: (split, patient, part, study number, positive, n_images).

    Patients are numbered train first, then valid, as in MURA-v1.1; the split is by patient so
    that no patient leaks between training and validation.
    """
    rng = np.random.default_rng([seed, 1, 0])
    n_valid = max(1, round(0.2 * n_patients))
    plan = []
    for pid in range(1, n_patients + 1):
        split = "train" if pid <= n_patients - n_valid else "valid"
        per_part: dict[str, int] = {}
        for _ in range(int(rng.integers(1, 3))):
            part = MURA_BODY_PARTS[int(rng.integers(len(MURA_BODY_PARTS)))]
            per_part[part] = per_part.get(part, 0) + 1
            positive = bool(rng.random() < _POSITIVE_RATE)
            plan.append((split, pid, part, per_part[part], positive, int(rng.integers(1, 5))))
    return plan


def _write_mura_study(task: tuple) -> tuple[str, list[str]]:
    """Render and write one study; a pure function of its task so workers can run it."""
    root, seed, idx, (split, pid, part, number, positive, n_img), size_range = task
    label = "positive" if positive else "negative"
    rel = f"{_MURA_DIR}/{split}/XR_{part.upper()}/patient{pid:05d}/study{number}_{label}/"
    anatomy = _anatomy(np.random.default_rng([seed, 1, 1, idx]), part, positive)
    paths = []
    for k in range(1, n_img + 1):
        vrng = np.random.default_rng([seed, 1, 2, idx, k])
        img = _render(vrng, anatomy, _shape_for(vrng, part, size_range), _MURA_STYLE)
        _atomic_write(Path(root) / f"{rel}image{k}.png", _png_bytes(img))
        paths.append(f"{rel}image{k}.png")
    return rel, paths


def write_mura(
    root: str | os.PathLike[str],
    *,
    seed: int,
    n_patients: int,
    size_range: tuple[int, int] = (256, 384),
    jobs: int | None = None,
) -> dict[str, dict[str, int]]:
    """Write a phantom MURA-v1.1 under ``root`` so loaders for the real set run unchanged.

    A study's images are views of one anatomy (one fracture, if positive) seen under different
    poses and exposures, like the views of a real study. Returns per-split counts of
    ``images``, ``studies``, ``positive_studies`` and ``patients``. ``jobs`` worker processes
    (default: CPU count) render in parallel; the output does not depend on it.
    """
    n_patients = _check_count("n_patients", n_patients, 2)
    size_range = _check_range("size_range", size_range, 32)
    seed, jobs = _check_count("seed", seed, 0), _check_jobs(jobs)
    root = Path(root)
    _claim(root, "mura", [_MURA_DIR], {"seed": int(seed), "n_patients": n_patients})
    images: dict[str, list[list[str]]] = {"train": [], "valid": []}
    studies: dict[str, list[list[str | int]]] = {"train": [], "valid": []}
    patients: dict[str, set[int]] = {"train": set(), "valid": set()}
    plan = _mura_plan(seed, n_patients)
    tasks = [(str(root), seed, idx, study, size_range) for idx, study in enumerate(plan)]
    written = _parallel_map(_write_mura_study, tasks, jobs)
    for (split, pid, _, _, positive, _), (rel, paths) in zip(plan, written, strict=True):
        images[split].extend([p] for p in paths)
        studies[split].append([rel, int(positive)])
        patients[split].add(pid)
    for split in ("train", "valid"):
        _atomic_write(root / _MURA_DIR / f"{split}_image_paths.csv", _csv_bytes(images[split]))
        _atomic_write(root / _MURA_DIR / f"{split}_labeled_studies.csv", _csv_bytes(studies[split]))
    return {
        split: {
            "images": len(images[split]),
            "studies": len(studies[split]),
            "positive_studies": sum(int(row[1]) for row in studies[split]),
            "patients": len(patients[split]),
        }
        for split in ("train", "valid")
    }


# ---- external set --------------------------------------------------------------------------

_EXTERNAL_CLASSES = ("fractured", "not fractured")


def _write_external_image(task: tuple) -> tuple[str, str]:
    root, seed, i, fractured, split, size_range = task
    irng = np.random.default_rng([seed, 2, 1, i])
    part = MURA_BODY_PARTS[int(irng.integers(len(MURA_BODY_PARTS)))]
    shape = _shape_for(irng, part, size_range)
    img = _render(irng, _anatomy(irng, part, fractured), shape, _EXTERNAL_STYLE)
    cls = _EXTERNAL_CLASSES[0] if fractured else _EXTERNAL_CLASSES[1]
    pil = Image.fromarray(_to_u8(img))
    if irng.random() < 0.5:
        pil = pil.convert("RGB")
    buf = io.BytesIO()
    pil.save(buf, format="JPEG", quality=int(irng.integers(75, 96)))
    _atomic_write(Path(root) / split / cls / f"{i:05d}-{part}.jpg", buf.getvalue())
    return split, cls


def write_external(
    root: str | os.PathLike[str],
    *,
    seed: int,
    n_images: int,
    size_range: tuple[int, int] = (224, 320),
    jobs: int | None = None,
) -> dict[str, dict[str, int]]:
    """Write a phantom of the external fracture set: another site, other exposure and noise.

    It exists to measure domain shift, so it uses its own acquisition style, JPEG compression
    and a mix of grayscale and RGB files. Returns per-split counts per class.
    """
    n_images = _check_count("n_images", n_images, 4)
    size_range = _check_range("size_range", size_range, 32)
    seed, jobs = _check_count("seed", seed, 0), _check_jobs(jobs)
    root = Path(root)
    _claim(root, "external", ["train", "test"], {"seed": int(seed), "n_images": n_images})
    rng = np.random.default_rng([seed, 2, 0])
    labels = np.arange(n_images) % 2 == 0
    rng.shuffle(labels)
    n_test = max(2, round(0.2 * n_images))
    counts = {s: {c: 0 for c in _EXTERNAL_CLASSES} for s in ("train", "test")}
    tasks = [
        (str(root), seed, i, bool(fr), "test" if i >= n_images - n_test else "train", size_range)
        for i, fr in enumerate(labels.tolist())
    ]
    for split, cls in _parallel_map(_write_external_image, tasks, jobs):
        counts[split][cls] += 1
    return counts
