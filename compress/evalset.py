"""Decode and preprocess an evaluation or calibration set once, then reuse it for every engine."""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from models.datasources import DatasetSplit, Record
from models.errors import ImageDecodeError
from models.imageio import load_image
from models.preprocess import PreprocessConfig, preprocess


@dataclass
class EvalSet:
    name: str
    task: str
    records: list[Record]
    inputs: np.ndarray  # (N, 1, S, S) float32, through the shared preprocessing
    failed: list[str] = field(default_factory=list)
    summary: dict = field(default_factory=dict)

    @property
    def labels(self) -> np.ndarray:
        return np.array([r.label for r in self.records])

    @property
    def study_ids(self) -> list[str]:
        return [r.study_id for r in self.records]


def stratified_sample(records: list[Record], n: int, seed: int) -> list[Record]:
    """Up to ``n`` records drawn evenly across (body part, label) strata."""
    strata: dict[tuple[str, int], list[Record]] = defaultdict(list)
    for r in records:
        strata[(r.body_part, r.label)].append(r)
    rng = random.Random(seed)
    for v in strata.values():
        rng.shuffle(v)
    out: list[Record] = []
    keys = sorted(strata)
    while len(out) < min(n, len(records)):
        for k in keys:
            if strata[k] and len(out) < n:
                out.append(strata[k].pop())
    return out


def build_evalset(split: DatasetSplit, cfg: PreprocessConfig, *, limit: int = 0, seed: int = 0) -> EvalSet:
    """Decode every (or ``limit`` stratified) record; undecodable files are listed, not fatal."""
    records = split.records
    if limit:
        records = stratified_sample(records, limit, seed)
    kept, arrays, failed = [], [], []
    for r in records:
        try:
            arrays.append(preprocess(load_image(r.path).pixels, cfg))
            kept.append(r)
        except ImageDecodeError as e:
            failed.append(str(e))
    s = int(cfg.input_size)
    inputs = np.stack(arrays) if arrays else np.zeros((0, 1, s, s), np.float32)
    return EvalSet(split.name, split.task, kept, inputs, failed, split.subset(kept, split.name).summary())

