import numpy as np
import pytest

from models.errors import ConfigError
from models.preprocess import (
    PreprocessConfig,
    preprocess,
    preprocess_batch,
    scale_intensity,
    to_unit,
)


def test_output_shape_dtype_and_letterbox():
    cfg = PreprocessConfig(input_size=64)
    img = np.linspace(0, 1, 200 * 100, dtype=np.float32).reshape(200, 100)  # tall
    unit, pl = to_unit(img, cfg)
    assert unit.shape == (64, 64) and unit.dtype == np.float32
    assert (pl.width, pl.height) == (32, 64) and pl.offset_x == 16 and pl.offset_y == 0
    # padding is black, content spans [0, 1]
    assert unit[:, :16].max() == 0 and unit[:, 48:].max() == 0
    content = unit[pl.content_slice()]
    assert content.min() == 0.0 and content.max() == 1.0
    x = preprocess(img, cfg)
    assert x.shape == (1, 64, 64)
    np.testing.assert_allclose(x[0], (unit - cfg.mean) / cfg.std, rtol=1e-6)


def test_bit_depth_invariance():
    """The same picture stored as 8-bit, 12-bit or float gives the same model input."""
    rng = np.random.default_rng(0)
    base = rng.random((120, 90)).astype(np.float32)
    cfg = PreprocessConfig(input_size=48)
    a = preprocess((base * 255).round().astype(np.uint8), cfg)
    b = preprocess((base * 4095).round().astype(np.uint16), cfg)
    c = preprocess(base * 1000 - 300, cfg)
    assert np.abs(a - b).max() < 0.05 and np.abs(b - c).max() < 0.01


def test_rgb_and_rgba_become_gray():
    cfg = PreprocessConfig(input_size=32)
    gray = np.tile(np.arange(64, dtype=np.uint8)[None], (64, 1)) * 4
    rgb = np.stack([gray] * 3, -1)
    rgba = np.concatenate([rgb, np.full((64, 64, 1), 255, np.uint8)], -1)
    np.testing.assert_allclose(preprocess(rgb, cfg), preprocess(gray, cfg), atol=1e-5)
    np.testing.assert_allclose(preprocess(rgba, cfg), preprocess(gray, cfg), atol=1e-5)


def test_flat_and_nonfinite_images_are_safe():
    cfg = PreprocessConfig(input_size=16)
    assert np.all(to_unit(np.full((10, 10), 7.0), cfg)[0] == 0)
    img = np.ones((10, 10), np.float32)
    img[0, 0] = np.nan
    img[1, 1] = np.inf
    assert np.isfinite(preprocess(img, cfg)).all()


def test_scale_intensity_percentiles():
    img = np.arange(1000, dtype=np.float32)
    out = scale_intensity(img, (10, 90))
    assert out[:100].max() == 0 and out[900:].min() == 1


@pytest.mark.parametrize("bad", [np.zeros((0, 5)), np.zeros((2, 3, 4, 5)), np.zeros(5)])
def test_bad_shapes_raise(bad):
    with pytest.raises(ConfigError):
        preprocess(bad, PreprocessConfig(input_size=16))


def test_config_validation_and_roundtrip():
    with pytest.raises(ConfigError, match="std"):
        PreprocessConfig(std=0)
    with pytest.raises(ConfigError, match="preprocess-v0"):
        PreprocessConfig(version="mura-fracture/preprocess-v0")
    cfg = PreprocessConfig(input_size=96, mean=0.4)
    assert PreprocessConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError):
        preprocess_batch([], cfg)
