"""Torch datasets over :class:`Record` lists, through the shared preprocessing contract.

Decode -> ``models.preprocess.to_unit`` -> augmentation (training only) -> ``standardize``: the same
functions the engine calls at inference, so train/serve skew cannot creep in.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from models.datasources import Record
from models.errors import ImageDecodeError
from models.fsutil import atomic_write_bytes
from models.imageio import load_image
from models.preprocess import PreprocessConfig, standardize, to_unit
from trainer.localisation import box_mask, stored_size


class Augment:
    """Radiograph-appropriate augmentation on the [0, 1] letterboxed image.

    Horizontal flip (left/right limbs look alike), small rotation, scale and shift, brightness,
    contrast and gamma. No vertical flip or colour jitter: they produce images no device makes.
    """

    def __init__(self, rotate: float = 10.0, scale: tuple[float, float] = (0.9, 1.1), shift: float = 0.06,
                 brightness: float = 0.1, contrast: float = 0.15, gamma: tuple[float, float] = (0.8, 1.25)):
        self.rotate, self.scale, self.shift = rotate, scale, shift
        self.brightness, self.contrast, self.gamma = brightness, contrast, gamma

    def __call__(self, unit: np.ndarray, rng: np.random.Generator, mask: np.ndarray | None = None):
        """The augmented image; with ``mask`` (fracture boxes), ``(image, mask)`` moved alike."""
        s = unit.shape[0]
        angle = math.radians(rng.uniform(-self.rotate, self.rotate))
        scale = rng.uniform(*self.scale)
        tx, ty = (rng.uniform(-self.shift, self.shift, 2) * s).tolist()
        flip = -1.0 if rng.random() < 0.5 else 1.0
        # PIL wants the inverse map (output -> input) about the image centre.
        c = (s - 1) / 2.0
        cos, sin = math.cos(angle) / scale, math.sin(angle) / scale
        a, b, d, e = flip * cos, sin, -flip * sin, cos
        xo, yo = c + tx, c + ty
        coeffs = (a, b, c - a * xo - b * yo, d, e, c - d * xo - e * yo)
        img = Image.fromarray(unit, mode="F").transform((s, s), Image.AFFINE, coeffs, Image.BILINEAR, fillcolor=0.0)
        x = np.asarray(img)
        if mask is not None:
            mask = np.asarray(Image.fromarray(mask, mode="L").transform((s, s), Image.AFFINE, coeffs, Image.NEAREST))
        g = math.exp(rng.uniform(math.log(self.gamma[0]), math.log(self.gamma[1])))
        x = np.clip(x, 0, 1) ** g
        x = (x - 0.5) * (1 + rng.uniform(-self.contrast, self.contrast)) + 0.5
        x = x + rng.uniform(-self.brightness, self.brightness)
        x = np.clip(x, 0, 1).astype(np.float32)
        return x if mask is None else (x, mask)


class DecodeCache:
    """Decoded, preprocessed ([0, 1] letterboxed) images on disk, keyed by file content and size.

    Radiographs are 2,000-px PNG/DICOM files whose decoding dominates an epoch on a CPU; the
    cache turns every epoch after the first into a memory-mapped read. The key hashes the file's
    bytes with the preprocessing settings, so an edited image or a new input size never hits a
    stale entry. Entries are written atomically, so parallel workers and killed runs are safe.

    Hashing a 2,000-px file costs milliseconds, as much as reading its cache entry, so each
    process remembers the hash per file version (path, size, mtime): later epochs read only the
    entry, and a file rewritten in place gets a new size or mtime and is hashed again.
    """

    def __init__(self, root: str | Path, cfg: PreprocessConfig):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.salt = json.dumps(cfg.to_dict(), sort_keys=True).encode()
        self._keys: dict[tuple[str, int, int], str] = {}

    def key(self, path: str | Path) -> str:
        st = os.stat(path)
        version = (os.fspath(path), st.st_size, st.st_mtime_ns)
        if (k := self._keys.get(version)) is None:
            k = self._keys[version] = self.content_key(path)
        return k

    def content_key(self, path: str | Path) -> str:
        h = hashlib.blake2b(self.salt, digest_size=20)
        with open(path, "rb") as f:
            while block := f.read(1 << 20):
                h.update(block)
        return h.hexdigest()

    def get(self, path: str | Path, cfg: PreprocessConfig) -> np.ndarray:
        entry = self.root / (self.key(path) + ".npy")
        if entry.is_file():
            try:
                return np.load(entry).astype(np.float32)
            except (OSError, ValueError):
                entry.unlink(missing_ok=True)  # a torn or foreign file: rebuild it
        unit, _ = to_unit(load_image(path).pixels, cfg)
        stored = unit.astype(np.float16)
        buf = io.BytesIO()
        np.save(buf, stored)
        atomic_write_bytes(entry, buf.getvalue())
        # what later reads return: a run sees the same input whether the cache was cold or warm
        return stored.astype(np.float32)


class RecordDataset(Dataset):
    """Yields ``(image (1,S,S), label, body_part_index, index)``.

    A file that fails to decode yields ``None``; :func:`collate_skip` drops it so that one bad
    image never stops an epoch (readers already report missing files up front).
    """

    def __init__(self, records: list[Record], cfg: PreprocessConfig, body_parts: list[str],
                 augment: Augment | None = None, seed: int = 0, cache: DecodeCache | None = None,
                 boxes: dict[str, list] | None = None):
        self.records = records
        self.boxes = boxes  # file name -> fracture boxes; given: items carry a box mask (5th)
        self.cache = cache
        self.cfg = cfg
        self.bp_index = {b: i for i, b in enumerate(body_parts)}
        self.augment = augment
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.records)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __getitem__(self, i: int):
        r = self.records[i]
        try:
            if self.cache is not None:
                unit = self.cache.get(r.path, self.cfg)
            else:
                unit, _ = to_unit(load_image(r.path).pixels, self.cfg)
        except (ImageDecodeError, OSError):
            return None
        mask = self._mask(r, unit.shape[0]) if self.boxes is not None else None
        if self.augment is not None:
            # Seeded per (seed, epoch, index): identical across runs and worker counts.
            rng = np.random.default_rng([self.seed, self.epoch, i])
            unit, mask = self.augment(unit, rng, mask) if mask is not None else (self.augment(unit, rng), None)
        x = torch.from_numpy(standardize(unit, self.cfg))
        item = (x, float(r.label), self.bp_index.get(r.body_part, 0), i)
        return item if mask is None else (*item, torch.from_numpy(np.array(mask, dtype=np.uint8)))

    def _mask(self, r: Record, size: int) -> np.ndarray:
        """The record's fracture boxes in input coordinates (all zero where it has none)."""
        boxes = (self.boxes or {}).get(Path(r.path).name) if r.label == 1 else None
        hw = stored_size(r.path) if boxes else None
        return box_mask(boxes, *hw, size) if boxes and hw else np.zeros((size, size), dtype=np.uint8)


LOADER_NICE = 5


def loader_worker_init(worker_id: int) -> None:
    """Run a DataLoader worker at a lower CPU priority (``LOADER_NICE`` more than the trainer).

    Where the step has the CPU to itself (a GPU machine's spare cores) this changes nothing. On a
    few-core CPU the step's threads use every core and wait for each other at every operator;
    a worker that preempts one of them stalls all. At lower priority the worker decodes in the
    gaps of the step instead. ``bench/train_throughput.py --same-priority`` compares; on a 2-core
    VM lower priority won every paired run, by about as much as runs differ from each other.
    """
    if hasattr(os, "nice"):
        try:
            os.nice(LOADER_NICE)
        except OSError:
            pass  # not allowed here: run at the trainer's priority


def collate_skip(batch):
    batch = [b for b in batch if b is not None]
    if not batch:
        return None
    cols = list(zip(*batch, strict=True))
    out = [torch.stack(cols[0]), torch.tensor(cols[1]), torch.tensor(cols[2]), torch.tensor(cols[3])]
    return tuple(out + [torch.stack(cols[4])] if len(cols) > 4 else out)  # box masks, when given
