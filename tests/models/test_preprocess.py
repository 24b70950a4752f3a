import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from models.card import Bundle
from models.errors import ConfigError
from models.preprocess import (
    PreprocessConfig,
    clahe,
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


# --- CLAHE (optional step 3b) ----------------------------------------------------------------


def _low_contrast(h: int = 160, w: int = 128, seed: int = 0) -> np.ndarray:
    """A smooth [0, 1] image whose detail lives in a narrow band per region (like bone on soft tissue)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    img = 0.45 + 0.04 * np.sin(xx / 5.0) * np.cos(yy / 7.0) + 0.4 * (xx / w) + 0.01 * rng.standard_normal((h, w))
    img = (img - img.min()) / (img.max() - img.min())
    return img.astype(np.float32)


def test_clahe_off_by_default_and_serialises_as_before():
    cfg = PreprocessConfig(input_size=64)
    assert cfg.clahe is False
    # a default config serialises with exactly the pre-CLAHE keys: old cards, checkpoints and
    # decode-cache keys (a hash of this dict) stay valid
    assert set(cfg.to_dict()) == {"input_size", "mean", "std", "clip_percentiles", "version"}
    img = _low_contrast()
    unit, pl = to_unit(img, cfg)
    resized = np.asarray(Image.fromarray(img, mode="F").resize((pl.width, pl.height), Image.BILINEAR))
    np.testing.assert_array_equal(unit[pl.content_slice()], scale_intensity(resized, cfg.clip_percentiles))


def test_clahe_config_roundtrip_and_old_cards():
    on = PreprocessConfig(input_size=64, clahe=True, clahe_clip_limit=0.02, clahe_tiles=4)
    d = on.to_dict()
    assert d["clahe"] is True and d["clahe_clip_limit"] == 0.02 and d["clahe_tiles"] == 4
    assert PreprocessConfig.from_dict(json.loads(json.dumps(d))) == on
    # the card stores the checkpoint's dict verbatim under input.preprocessing; the runtime reads it back
    card = json.loads(json.dumps({"input": {"preprocessing": d}}))
    assert Bundle(Path("."), card).preprocess == on
    old_card = {"input_size": 64, "mean": 0.5, "std": 0.25, "clip_percentiles": [0.5, 99.5],
                "version": "mura-fracture/preprocess-v1"}
    assert PreprocessConfig.from_dict(old_card).clahe is False
    with pytest.raises(ConfigError, match="sharpen"):
        PreprocessConfig.from_dict({**old_card, "sharpen": True})
    with pytest.raises(ConfigError, match="clahe_clip_limit"):
        PreprocessConfig(clahe=True, clahe_clip_limit=0)
    with pytest.raises(ConfigError, match="clahe_tiles"):
        PreprocessConfig(clahe=True, clahe_tiles=0)


def test_clahe_is_applied_in_to_unit_before_the_letterbox():
    img = np.concatenate([_low_contrast(), _low_contrast(seed=1)], axis=1)  # wide: letterboxed
    off, pl = to_unit(img, PreprocessConfig(input_size=64))
    on, pl2 = to_unit(img, PreprocessConfig(input_size=64, clahe=True))
    assert pl == pl2 and on.dtype == np.float32
    content = on[pl.content_slice()]
    np.testing.assert_allclose(content, clahe(off[pl.content_slice()], 0.01, 8), atol=1e-6)
    # the padding stays black and outside every tile's histogram
    assert on[: pl.offset_y].max() == 0 and on[pl.offset_y + pl.height :].max() == 0
    assert content.min() == 0.0 and content.max() == 1.0


def test_clahe_output_range_and_flat_input():
    out = clahe(_low_contrast())
    assert out.dtype == np.float32 and out.min() == 0.0 and out.max() == 1.0
    assert np.all(clahe(np.full((20, 30), 0.7, np.float32)) == 0)
    tiny = clahe(np.array([[0.0, 1.0], [0.5, 0.25]], np.float32), tiles=8)  # fewer pixels than tiles
    assert tiny.shape == (2, 2) and np.isfinite(tiny).all()
    with pytest.raises(ConfigError):
        clahe(np.zeros((2, 3, 4)))


def test_clahe_is_monotone_within_a_tile():
    """One grey level never overtakes a darker one inside a region: the mapping is a CDF."""
    img = _low_contrast()
    out = clahe(img, 0.01, tiles=1)  # a single tile: one mapping for the whole image
    order = np.argsort(img.ravel(), kind="stable")
    assert np.all(np.diff(out.ravel()[order]) >= -1e-6)
    # with many tiles, still monotone for pixels sharing one tile centre (top-left corner block)
    out8 = clahe(img, 0.01, tiles=8)
    block = (slice(0, 10), slice(0, 8))  # nearer the first centre than any other: one mapping
    o = np.argsort(img[block].ravel(), kind="stable")
    assert np.all(np.diff(out8[block].ravel()[o]) >= -1e-6)


def test_clahe_raises_local_contrast_and_the_clip_limit_bounds_it():
    img = _low_contrast()

    def local_std(a: np.ndarray) -> float:  # mean standard deviation over 16x16 windows
        h, w = a.shape
        return float(np.mean([a[y : y + 16, x : x + 16].std() for y in range(0, h - 15, 16)
                              for x in range(0, w - 15, 16)]))

    gentle, strong = clahe(img, 0.005), clahe(img, 0.05)
    assert local_std(img) < local_std(gentle) < local_std(strong)


def test_clahe_matches_scikit_image():
    """Against skimage.exposure.equalize_adapthist with the same tiles, clip limit and bins.

    Without clipping (plain AHE) the two agree closely: same regions, same bilinear interpolation
    of the region mappings (skimage places region centres half a pixel off and uses 253 of its
    256 bins, hence not exactly). With clipping skimage hands the excess out bin by bin from the dark end
    (an integer scheme) where this spreads it evenly, so agreement is looser there.
    """
    exposure = pytest.importorskip("skimage.exposure", reason="scikit-image is a dev-only reference")
    for h, w in [(224, 224), (160, 128)]:
        img = _low_contrast(h, w)
        kernel = (-(-h // 8), -(-w // 8))
        ref_ahe = exposure.equalize_adapthist(img, kernel_size=kernel, clip_limit=0, nbins=256)
        ours_ahe = clahe(img, clip_limit=1.0, tiles=8)
        assert np.abs(ours_ahe - ref_ahe).mean() < 0.02 and np.abs(ours_ahe - ref_ahe).max() < 0.08
        assert np.corrcoef(ours_ahe.ravel(), ref_ahe.ravel())[0, 1] > 0.995
        ref = exposure.equalize_adapthist(img, kernel_size=kernel, clip_limit=0.01, nbins=256)
        ours = clahe(img, clip_limit=0.01, tiles=8)
        assert np.abs(ours - ref).mean() < 0.06  # measured 0.02 (224 px) and 0.05 (160x128)
        assert np.corrcoef(ours.ravel(), ref.ravel())[0, 1] > 0.99
