"""What a decode worker returns for one file: the model input, and a thumbnail source that is the
picture the model scored (so the report's heatmap is drawn over what was scored)."""

from __future__ import annotations

import numpy as np
from PIL import Image

from desktop.screening.prepare import REPORT_THUMB_SIZE, prepare_image
from desktop.screening.render import to_uint8
from models.preprocess import PreprocessConfig, to_unit


def _radiograph(tmp_path, h: int = 600, w: int = 360) -> str:
    """A gray, non-square image with structure (a bright bar and a gradient)."""
    yy, xx = np.mgrid[0:h, 0:w]
    img = (40 + 120 * yy / h + 60 * ((xx > w // 3) & (xx < w // 2))).astype(np.uint8)
    path = tmp_path / "xray.png"
    Image.fromarray(img).save(path)
    return str(path)


def test_the_thumbnail_is_the_model_input_scaled_down(tmp_path):
    path = _radiograph(tmp_path)
    cfg = PreprocessConfig(input_size=256)
    pr = prepare_image(path, cfg)
    assert pr.error is None and pr.x is not None and pr.thumb is not None and pr.placement is not None
    assert pr.thumb.dtype == np.uint8 and max(pr.thumb.shape) == REPORT_THUMB_SIZE
    assert abs(pr.thumb.shape[1] / pr.thumb.shape[0] - 360 / 600) < 0.02  # the image's aspect
    unit, placement = to_unit(np.asarray(Image.open(path), dtype=np.float32), cfg)
    want = np.asarray(Image.fromarray(to_uint8(unit[placement.content_slice()])).resize(
        pr.thumb.shape[::-1], Image.Resampling.BOX), dtype=np.float32)
    assert np.abs(pr.thumb.astype(np.float32) - want).mean() < 2.0  # same picture, same window


def test_a_model_input_smaller_than_the_thumbnail_keeps_full_size_thumbnails(tmp_path):
    pr = prepare_image(_radiograph(tmp_path), PreprocessConfig(input_size=64))
    assert pr.thumb is not None and max(pr.thumb.shape) == REPORT_THUMB_SIZE
