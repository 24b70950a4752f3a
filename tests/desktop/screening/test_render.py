"""desktop.screening.render's pixel functions keep their exact definitions while running faster.

The viewer's tests compare the shown picture with these functions, so a change here would go
unnoticed there: each fast version is checked against its plain definition.
"""

from __future__ import annotations

import numpy as np
import pytest

from desktop.screening.render import gray_to_rgb, thumbnail_u8, to_uint8


def _reference_u8(x: np.ndarray, invert: bool) -> np.ndarray:
    u8 = np.rint(np.clip(np.asarray(x, dtype=np.float32), 0.0, 1.0) * 255.0).astype(np.uint8)
    return (255 - u8) if invert else u8


@pytest.mark.parametrize("invert", [False, True])
def test_to_uint8_is_rint_of_clipped_times_255(invert: bool) -> None:
    rng = np.random.default_rng(3)
    steps = np.arange(256, dtype=np.float32) / np.float32(255)
    halves = (np.arange(256, dtype=np.float32) + np.float32(0.5)) / np.float32(255)
    edges = np.concatenate([steps, halves, np.nextafter(halves, np.float32(1)),
                            np.nextafter(halves, np.float32(0)),
                            np.array([-1e30, -0.5, -0.0, 1.0000001, 2.0, 1e30], np.float32)])
    # random float32 bit patterns of [0, 1]: every exponent, not only a uniform grid
    bits = rng.integers(0, 0x3F800001, 2_000_000, dtype=np.uint32)
    x = np.concatenate([edges, bits.view(np.float32), rng.random(10_000) * 1.6 - 0.3])
    got = to_uint8(x, invert=invert)
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got, _reference_u8(x, invert))
    np.testing.assert_array_equal(to_uint8(x.astype(np.float64), invert=invert),
                                  _reference_u8(x, invert))


def test_thumbnail_is_the_block_average() -> None:
    rng = np.random.default_rng(4)
    img = rng.random((2000, 1501), dtype=np.float32)
    th = thumbnail_u8(img, 96)
    f = int(np.ceil(2000 / 96))
    h, w = (2000 // f) * f, (1501 // f) * f
    want = img[:h, :w].astype(np.float64).reshape(h // f, f, w // f, f).mean(axis=(1, 3))
    assert th.shape == (2000 // f, 1501 // f) and max(th.shape) <= 96
    # float32 sums vs float64 mean: at most one grey level apart, on a rounding edge
    diff = np.abs(th.astype(int) - _reference_u8(want, False).astype(int))
    assert diff.max() <= 1 and (diff == 0).mean() > 0.99
    small = rng.random((40, 30), dtype=np.float32)
    np.testing.assert_array_equal(thumbnail_u8(small, 96), _reference_u8(small, False))


def test_gray_to_rgb_repeats_the_gray_in_every_channel() -> None:
    g = np.random.default_rng(5).integers(0, 256, (31, 17), dtype=np.uint8)
    rgb = gray_to_rgb(g)
    assert rgb.shape == (31, 17, 3) and rgb.dtype == np.uint8 and rgb.flags.c_contiguous
    np.testing.assert_array_equal(rgb, np.repeat(g[:, :, None], 3, axis=2))
    np.testing.assert_array_equal(gray_to_rgb(g[:, ::2]), np.repeat(g[:, ::2, None], 3, axis=2))


def test_the_model_card_dialog_says_what_the_model_is_for_and_how_good_it_is():
    """Issue 15 §1-2: the card's indications and validated performance, in the card dialog too."""
    import json

    from desktop.screening.render import card_html
    from models.reference import reference_dir

    text = card_html(json.loads((reference_dir() / "card.json").read_text()))
    assert "<h3>Indications</h3>" in text and "below 0.68 are refused" in text
    assert "AUC 0.88 (95 % CI 0.84–0.93)" in text and "NOT A CLINICALLY" not in text


def test_report_thumbnails_are_jpeg_and_old_png_ones_still_show():
    """Issue 18 §1: PNG with optimize=True took 47 % of a screening run's time."""
    import base64
    import io

    import numpy as np
    from PIL import Image

    from desktop.screening.prepare import gray_thumbnail
    from desktop.screening.report import data_uri

    thumb = np.tile(np.arange(0, 160, dtype=np.uint8), (120, 1))
    jpeg = gray_thumbnail(thumb)
    assert jpeg[:3] == b"\xff\xd8\xff" and data_uri(jpeg).startswith("data:image/jpeg;base64,")
    buf = io.BytesIO()
    Image.fromarray(thumb).save(buf, format="PNG")
    assert data_uri(buf.getvalue()).startswith("data:image/png;base64,")
    back = np.asarray(Image.open(io.BytesIO(base64.b64decode(data_uri(jpeg).split(",", 1)[1]))))
    assert back.shape == thumb.shape and np.abs(back.astype(int) - thumb).mean() < 3


def test_the_rgbx_blend_has_the_same_colours_and_its_jpeg_the_same_pixels():
    """The report thumbnails' faster path (one 4-byte gather per pixel) paints what the viewer's
    blend paints, and its JPEG decodes to the same pixels as the RGB one."""
    import io

    from PIL import Image

    from desktop.screening.prepare import _jpeg
    from desktop.screening.render import blend_heatmap, blend_heatmap_rgbx

    rng = np.random.default_rng(3)
    gray = rng.integers(0, 256, (97, 64), dtype=np.uint8)
    heat = rng.random((97, 64), dtype=np.float32) * 1.2 - 0.1  # out of range on purpose: clipped
    rgb, rgbx = blend_heatmap(gray, heat, opacity=0.45), blend_heatmap_rgbx(gray, heat, opacity=0.45)
    assert rgbx.shape == (97, 64, 4) and np.array_equal(rgbx[..., :3], rgb)

    def decoded(pixels: np.ndarray) -> np.ndarray:
        return np.asarray(Image.open(io.BytesIO(_jpeg(pixels))))

    assert np.array_equal(decoded(rgbx), decoded(rgb))
    with pytest.raises(ValueError, match="differs"):
        blend_heatmap_rgbx(gray, heat[1:])
