"""Fracture boxes as a CAM training signal: masks in input coordinates, augmentation, the loss."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from models.errors import ConfigError
from models.preprocess import PreprocessConfig, to_unit
from trainer.data import Augment, RecordDataset, collate_skip
from trainer.localisation import box_loss, box_mask


def test_box_mask_lands_where_the_letterboxed_image_shows_the_box():
    img = np.zeros((100, 200), dtype=np.float32)
    img[40:60, 150:180] = 1.0  # a bright patch exactly where the box is
    unit, _ = to_unit(img, PreprocessConfig(input_size=64, clip_percentiles=(0.0, 100.0)))
    mask = box_mask([(150, 40, 30, 20)], 100, 200, 64)
    bright = unit > 0.5
    assert mask.dtype == np.uint8 and mask.shape == (64, 64)
    assert bright.sum() > 0 and np.all(mask[bright] == 1)  # the box covers the patch ...
    assert mask.sum() <= bright.sum() * 2  # ... and not much else


def test_augmentation_moves_the_mask_with_the_image():
    unit = np.zeros((64, 64), dtype=np.float32)
    unit[10:20, 40:50] = 1.0
    mask = (unit > 0).astype(np.uint8)
    aug = Augment(brightness=0.0, contrast=0.0, gamma=(1.0, 1.0))
    moved = 0
    for seed in range(6):
        x, m = aug(unit, np.random.default_rng(seed), mask)
        plain = aug(unit, np.random.default_rng(seed))
        np.testing.assert_array_equal(x, plain)  # the mask changes nothing of the image or its draws
        assert m.shape == (64, 64) and m.max() == 1
        assert (x[m == 1] > 0.5).mean() > 0.8  # the mask still sits on the patch
        moved += not np.array_equal(m, mask)
    assert moved >= 5


def test_box_loss_prefers_a_cam_inside_the_box_and_ignores_images_without_one():
    mask = torch.zeros(2, 8, 8, dtype=torch.uint8)
    mask[0, :4, :4] = 1  # image 0: box in the top-left cell of a 2x2 CAM; image 1: no box
    inside = torch.tensor([[[5.0, 0.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 9.0]]])
    outside = torch.tensor([[[0.0, 0.0], [0.0, 5.0]], [[0.0, 0.0], [0.0, 9.0]]])
    assert box_loss(inside, mask) < 0.1 < box_loss(outside, mask)
    only_unboxed = torch.tensor([[[0.0, 0.0], [0.0, 5.0]]], requires_grad=True)
    loss = box_loss(only_unboxed, mask[1:])
    loss.backward()
    assert loss.item() == 0.0 and only_unboxed.grad is not None


def _fracatlas(root, n=24, size=(72, 96)):
    """A FracAtlas layout whose fractured images carry a bright patch inside their box."""
    (root / "images" / "Fractured").mkdir(parents=True)
    (root / "images" / "Non_fractured").mkdir(parents=True)
    rows, boxes = ["image_id,hand,leg,hip,shoulder,mixed,hardware,fractured"], ["image_id,x,y,width,height"]
    rng = np.random.default_rng(0)
    for i in range(n):
        frac = i % 2
        img = (rng.random(size) * 60).astype(np.uint8)
        name = f"IMG{i:07d}.jpg"
        if frac:
            y, x = int(rng.integers(0, size[0] - 20)), int(rng.integers(0, size[1] - 20))
            img[y : y + 20, x : x + 20] = 250
            boxes.append(f"{name},{x},{y},20,20")
        Image.fromarray(img).save(root / "images" / ("Fractured" if frac else "Non_fractured") / name)
        rows.append(f"{name},{1 - i // 12},{i // 12},0,0,0,0,{frac}")
    (root / "dataset.csv").write_text("\n".join(rows) + "\n")
    (root / "boxes.csv").write_text("\n".join(boxes) + "\n")


def test_dataset_yields_box_masks_for_fractured_images_only(tmp_path):
    _fracatlas(tmp_path)
    from models.datasources import read_fracatlas, read_fracatlas_boxes

    split = read_fracatlas(tmp_path)
    ds = RecordDataset(split.records, PreprocessConfig(input_size=32), split.body_parts,
                       Augment(), boxes=read_fracatlas_boxes(tmp_path))
    batch = collate_skip([ds[i] for i in range(4)])
    assert len(batch) == 5 and batch[4].shape == (4, 32, 32)
    for label, m in zip(batch[1].tolist(), batch[4], strict=True):
        assert (m.sum() > 0) == (label == 1)
    plain = RecordDataset(split.records, PreprocessConfig(input_size=32), split.body_parts)
    assert len(collate_skip([plain[0], plain[1]])) == 4  # no boxes asked: items as before


def test_training_with_box_loss_and_fine_tuning_from_a_checkpoint(tmp_path):
    from trainer.train import TrainConfig, train

    _fracatlas(tmp_path / "fa")
    base = dict(data=f"fracatlas:{tmp_path / 'fa'}", arch="custom_cnn", input_size=64, batch_size=8,
                epochs=1, val_fraction=0.25, calibrate=False)
    train(TrainConfig(out=str(tmp_path / "a"), box_loss=1.0, **base))
    meta = torch.load(tmp_path / "a" / "checkpoint_best.pt", weights_only=True)["meta"]
    assert "fracture boxes" in meta["provenance"]["localisation"]
    train(TrainConfig(out=str(tmp_path / "b"), init_from=str(tmp_path / "a" / "checkpoint_best.pt"), **base))
    meta_b = torch.load(tmp_path / "b" / "checkpoint_best.pt", weights_only=True)["meta"]
    assert meta_b["provenance"]["initialisation"].startswith("checkpoint ")
    assert json.loads((tmp_path / "b" / "config.json").read_text())["init_from"].endswith("checkpoint_best.pt")
    with pytest.raises(ConfigError, match="efficientnet_lite0 checkpoint|custom_cnn checkpoint"):
        train(TrainConfig(out=str(tmp_path / "c"), **{**base, "arch": "efficientnet_lite0"},
                          init_from=str(tmp_path / "a" / "checkpoint_best.pt")))
    import shutil

    for cls, sub in (("fractured", "Fractured"), ("not fractured", "Non_fractured")):
        shutil.copytree(tmp_path / "fa" / "images" / sub, tmp_path / "ext" / "train" / cls)
    with pytest.raises(ConfigError, match="boxes"):
        train(TrainConfig(out=str(tmp_path / "d"), box_loss=1.0, **{**base, "data": f"folder:{tmp_path / 'ext'}"}))
