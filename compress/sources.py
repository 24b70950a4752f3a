"""Which images calibrate and which validate: never the ones the network was selected on, where avoidable.

For MURA the official train and valid splits are separate folders, so ``load_source(spec, split)``
is enough. The other sources (FracAtlas, folder sets, CSVs) are one pool that the trainer split by
group (:func:`models.datasources.split_source` with the run's ``val_fraction`` and ``seed``);
evaluating the INT8 model on "the whole pool" would mix training images into the gate. So when a
source is the checkpoint's own training data, the split is rebuilt from the run manifest's
``data``: calibration draws from the train part, the gate evaluates the internal-validation part.
Any other source is external and is used whole, minus the FracAtlas images a FracAtlas-trained
model has seen.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from models.datasources import DatasetSplit, external_records, load_source, split_source
from models.errors import ConfigError


def _same_source(a: str, b: str) -> bool:
    ka, _, pa = a.partition(":")
    kb, _, pb = b.partition(":")
    return ka == kb and bool(pa) and Path(pa).resolve() == Path(pb).resolve()


def resolve_split(spec: str, role: str, data: Mapping) -> DatasetSplit:
    """The records of ``spec`` to use for ``role`` ("calibration" or "validation").

    ``data`` is the run manifest's ``data`` (its ``source`` and ``split``).
    """
    if role not in ("calibration", "validation"):
        raise ConfigError(f"role must be 'calibration' or 'validation', got {role!r}")
    if spec.startswith("mura:"):
        return load_source(spec, "train" if role == "calibration" else "valid")
    source = data.get("source") or ""
    if source and _same_source(spec, source):
        split = data.get("split")
        if not split:
            raise ConfigError(
                f"the run manifest records no split (val_fraction, seed) of {source}: a checkpoint from "
                "before run manifests needs the run's config.json beside it, to keep its training images "
                "out of calibration/validation")
        train, val, _ = split_source(spec, float(split["val_fraction"]), int(split["seed"]))
        return train if role == "calibration" else val
    full = load_source(spec, "valid")
    if role == "calibration":
        return full
    keep = {r.path for r in external_records(spec, source)}
    if len(keep) == len(full.records):
        return full
    return full.subset([r for r in full.records if r.path in keep], f"{full.name} (without FracAtlas images)")
