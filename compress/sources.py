"""Which images calibrate and which validate: never the ones the network was selected on, where avoidable.

For MURA the official train and valid splits are separate folders, so ``load_source(spec, split)``
is enough. The other sources (FracAtlas, folder sets, CSVs) are one pool that the trainer split by
group (``trainer.train.split_data`` with the run's ``val_fraction`` and ``seed``); evaluating the
INT8 model on "the whole pool" would mix training images into the gate. So when a source is the
checkpoint's own training data, the split is rebuilt from the run's ``config.json``: calibration
draws from the train part, the gate evaluates the internal-validation part. Any other source is
external and is used whole, minus the FracAtlas images a FracAtlas-trained model has seen.
"""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path

from models.errors import ConfigError
from trainer.compare import external_records
from trainer.datasets import DatasetSplit, load_source


def _same_source(a: str, b: str) -> bool:
    ka, _, pa = a.partition(":")
    kb, _, pb = b.partition(":")
    return ka == kb and bool(pa) and Path(pa).resolve() == Path(pb).resolve()


def training_config(checkpoint: str | Path, data_source: str):
    """The run's TrainConfig from ``config.json`` beside the checkpoint (where the trainer wrote it)."""
    from trainer.train import TrainConfig

    path = Path(checkpoint).parent / "config.json"
    if not path.is_file():
        raise ConfigError(f"{path}: missing; it holds the run's split (val_fraction, seed), needed to keep "
                          f"the training images of {data_source} out of calibration/validation")
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ConfigError(f"{path}: unreadable run configuration: {e}") from e
    names = {f.name for f in fields(TrainConfig)}
    return TrainConfig(**{k: v for k, v in raw.items() if k in names})


def resolve_split(spec: str, role: str, checkpoint: str | Path, data_source: str) -> DatasetSplit:
    """The records of ``spec`` to use for ``role`` ("calibration" or "validation")."""
    if role not in ("calibration", "validation"):
        raise ConfigError(f"role must be 'calibration' or 'validation', got {role!r}")
    if spec.startswith("mura:"):
        return load_source(spec, "train" if role == "calibration" else "valid")
    if data_source and _same_source(spec, data_source):
        from trainer.train import split_data

        cfg = training_config(checkpoint, data_source)
        cfg.data, cfg.max_train_images = spec, 0
        train, val, _ = split_data(cfg)
        return train if role == "calibration" else val
    full = load_source(spec, "valid")
    if role == "calibration":
        return full
    keep = {r.path for r in external_records(spec, data_source)}
    if len(keep) == len(full.records):
        return full
    return full.subset([r for r in full.records if r.path in keep], f"{full.name} (without FracAtlas images)")
