import os

import numpy as np
import torch

import trainer.data as data
from models.datasources import read_mura
from models.imageio import load_image
from models.preprocess import PreprocessConfig, to_unit
from trainer.data import Augment, DecodeCache, RecordDataset


def test_decode_cache_hits_and_matches(phantom, tmp_path, monkeypatch):
    cfg = PreprocessConfig(input_size=64)
    recs = read_mura(phantom / "mura", "train").records[:5]
    calls = []
    real = data.load_image
    monkeypatch.setattr(data, "load_image", lambda p: calls.append(p) or real(p))
    cache = DecodeCache(tmp_path / "c", cfg)
    first = [cache.get(r.path, cfg) for r in recs]
    again = [cache.get(r.path, cfg) for r in recs]
    assert len(calls) == 5  # second pass decoded nothing
    for r, a, b in zip(recs, first, again, strict=True):
        ref, _ = to_unit(load_image(r.path).pixels, cfg)
        np.testing.assert_allclose(b, ref, atol=1e-3)  # float16 storage
        np.testing.assert_allclose(a, ref, atol=1e-3)
    # another input size is another entry, never a stale hit
    assert DecodeCache(tmp_path / "c", PreprocessConfig(input_size=32)).get(recs[0].path, PreprocessConfig(input_size=32)).shape == (32, 32)
    # a torn entry is rebuilt
    entry = next((tmp_path / "c").glob("*.npy"))
    entry.write_bytes(b"torn")
    assert len(list((tmp_path / "c").glob("*.npy"))) == 6
    assert all(cache.get(r.path, cfg).shape == (64, 64) for r in recs)


def test_dataset_with_cache_equals_without(phantom, tmp_path):
    cfg = PreprocessConfig(input_size=64)
    split = read_mura(phantom / "mura", "train")
    recs = split.records[:4]
    plain = RecordDataset(recs, cfg, split.body_parts, Augment(), seed=3)
    cached = RecordDataset(recs, cfg, split.body_parts, Augment(), seed=3, cache=DecodeCache(tmp_path, cfg))
    for i in range(4):
        a, b = plain[i], cached[i]
        assert a[1:] == b[1:]
        np.testing.assert_allclose(a[0].numpy(), b[0].numpy(), atol=0.02)


def test_augmentation_is_seeded_and_bounded():
    unit = np.random.default_rng(0).random((64, 64)).astype(np.float32)
    aug = Augment()
    a = aug(unit, np.random.default_rng([1, 2, 3]))
    b = aug(unit, np.random.default_rng([1, 2, 3]))
    c = aug(unit, np.random.default_rng([1, 2, 4]))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c) and a.min() >= 0 and a.max() <= 1 and a.shape == unit.shape


def test_training_writes_metrics_csv_config_and_tensorboard(tiny_checkpoint):
    import csv
    import json

    out = tiny_checkpoint.parent
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert rows and {"epoch", "train_loss", "val_image_auc", "val_study_auc", "lr"} <= set(rows[0])
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["arch"] == "custom_cnn" and cfg["input_size"] == 64
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["metrics"]["internal_validation"]["study"]["auc_ci95"]


def test_cache_hashes_each_file_version_once(phantom, tmp_path, monkeypatch):
    """Later epochs skip the content hash; a file rewritten in place is hashed (and decoded) again."""
    import shutil

    cfg = PreprocessConfig(input_size=32)
    src = read_mura(phantom / "mura", "train").records
    img = tmp_path / "img.png"
    shutil.copy(src[0].path, img)
    cache = DecodeCache(tmp_path / "c", cfg)
    hashed = []
    real = cache.content_key
    monkeypatch.setattr(cache, "content_key", lambda p: hashed.append(p) or real(p))
    first = cache.get(img, cfg)
    again = cache.get(img, cfg)
    assert len(hashed) == 1
    np.testing.assert_array_equal(first, again)
    shutil.copy(src[1].path, img)  # another image under the same name: new size/mtime
    os.utime(img, ns=(1, 1))  # even with an mtime that went backwards
    swapped = cache.get(img, cfg)
    assert len(hashed) == 2
    ref, _ = to_unit(load_image(src[1].path).pixels, cfg)
    np.testing.assert_allclose(swapped, ref, atol=1e-3)  # the new picture, not the stale entry


class _Niceness(torch.utils.data.Dataset):
    def __len__(self):
        return 1

    def __getitem__(self, i):
        return os.nice(0)


def test_loader_workers_run_at_lower_priority():
    dl = torch.utils.data.DataLoader(_Niceness(), num_workers=1, worker_init_fn=data.loader_worker_init)
    (inside,) = list(dl)
    assert int(inside) == min(os.nice(0) + data.LOADER_NICE, 19)


def test_the_trainer_starts_its_loader_workers_through_the_priority_hook(phantom, tmp_path, monkeypatch):
    import trainer.train as train_mod

    marker = tmp_path / "hooked"
    monkeypatch.setattr(train_mod, "loader_worker_init", lambda wid: marker.touch())
    train_mod.train(train_mod.TrainConfig(data=f"mura:{phantom / 'mura'}", out=str(tmp_path / "run"),
                                          arch="custom_cnn", input_size=32, epochs=1, batch_size=16,
                                          augment=False, workers=1, max_train_images=32))
    assert marker.exists()
