"""The fast decode path gives the model and the viewer the same numbers as the element-wise one.

Issue #6 made the screener's file -> model-input path faster: the Modality LUT -> VOI ->
presentation chain runs on a table of stored values (:func:`models.dicom.render_frame`), the
screener skips the viewer's modality image (:func:`models.imageio.load_pixels`) and JPEG-LS goes
through CharLS first (:data:`models.dicom.PREFERRED_PLUGINS`). None of that may change a pixel:
here the element-wise chain of the public ``apply_*`` functions, fed by pydicom's default plugin
order, is the reference, for every transfer syntax the bench uses and for MONOCHROME1, VOI LUT,
Modality LUT and rescale files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset

from desktop.screening.prepare import prepare_image
from models import dicom
from models.imageio import load_image, load_pixels
from models.preprocess import PreprocessConfig, standardize, to_unit
from tests.models.test_dicom import lut_item, make_ds

CFG = PreprocessConfig(input_size=64)
SYNTAXES = {
    "explicit LE": ("1.2.840.10008.1.2.1", None),
    "implicit LE": ("1.2.840.10008.1.2", None),
    "deflate": ("1.2.840.10008.1.2.1.99", None),
    "RLE": ("1.2.840.10008.1.2.5", "pydicom"),
    "JPEG-LS lossless": ("1.2.840.10008.1.2.4.80", "pyjpegls"),
    "JPEG-LS near-lossless": ("1.2.840.10008.1.2.4.81", "pyjpegls"),
    "JPEG 2000 lossless": ("1.2.840.10008.1.2.4.90", "pylibjpeg"),
    "JPEG 2000": ("1.2.840.10008.1.2.4.91", "pylibjpeg"),
}


def _chain(stored: np.ndarray, fds: Dataset, voi_index: int = 0, window=None):
    modality = dicom.apply_modality_lut(stored, fds)
    voi = dicom.apply_voi_lut(modality, fds, voi_index, window=window)
    return modality, dicom.apply_presentation(voi, fds)


def _image(rng: np.random.Generator, shape=(90, 70), lo: int = 0, hi: int = 4095,
           dtype=np.uint16) -> np.ndarray:
    """A smooth ramp plus noise spanning [lo, hi]: every table path sees many distinct values."""
    y, x = np.mgrid[: shape[0], : shape[1]]
    ramp = (y / shape[0] + x / shape[1]) / 2
    v = lo + (hi - lo) * np.clip(ramp + rng.normal(0, 0.05, shape), 0, 1)
    return np.rint(v).astype(dtype)


def _cases() -> list[tuple[str, np.ndarray, Dataset]]:
    rng = np.random.default_rng(7)
    u12 = _image(rng)
    i16 = _image(rng, lo=-1024, hi=3000, dtype=np.int16)
    u16 = _image(rng, shape=(260, 200), lo=20000, hi=65535)  # more pixels than values
    u8 = _image(rng, hi=255, dtype=np.uint8)
    w = {"WindowCenter": "1800", "WindowWidth": "2500"}
    nonmono = lut_item(0, 12, [int(v) for v in (np.sin(np.arange(4096) / 300) + 1) * 2000])
    return [
        ("mono2 window", u12, make_ds(u12, bits_stored=12, **w)),
        ("mono1 window", u12, make_ds(u12, "MONOCHROME1", bits_stored=12, **w)),
        ("mono1 full range", u12, make_ds(u12, "MONOCHROME1", bits_stored=12)),
        ("rescale window", u12, make_ds(u12, bits_stored=12, RescaleSlope="0.5",
                                         RescaleIntercept="-100", **w)),
        ("negative slope full range", u12, make_ds(u12, bits_stored=12, RescaleSlope="-2",
                                                   RescaleIntercept="7")),
        ("signed CT", i16, make_ds(i16, RescaleSlope="1", RescaleIntercept="-1024",
                                   WindowCenter="40", WindowWidth="400", Modality="CT")),
        ("signed full range", i16, make_ds(i16)),
        ("16-bit high values", u16, make_ds(u16, WindowCenter="40000", WindowWidth="30000")),
        ("8-bit", u8, make_ds(u8, WindowCenter="100", WindowWidth="150")),
        ("linear exact", u12, make_ds(u12, bits_stored=12, VOILUTFunction="LINEAR_EXACT", **w)),
        ("sigmoid", u12, make_ds(u12, bits_stored=12, VOILUTFunction="SIGMOID", **w)),
        ("inverse shape", u12, make_ds(u12, bits_stored=12, PresentationLUTShape="INVERSE", **w)),
        ("voi lut sequence", u12, make_ds(u12, bits_stored=12, VOILUTSequence=[
            lut_item(0, 16, [int(v) for v in np.linspace(0, 65535, 4096) ** 1.0])])),
        ("modality lut monotonic", u12, make_ds(u12, bits_stored=12, ModalityLUTSequence=[
            lut_item(100, 12, list(range(0, 4000, 2)))])),
        ("modality lut non-monotonic full range", u12, make_ds(
            u12, bits_stored=12, ModalityLUTSequence=[nonmono])),
        ("tiny image", u12[:4, :4], make_ds(u12[:4, :4].copy(), bits_stored=12, **w)),
    ]


@pytest.mark.parametrize(("name", "stored", "ds"), _cases(), ids=[c[0] for c in _cases()])
def test_render_frame_equals_the_element_wise_chain(name: str, stored: np.ndarray,
                                                    ds: Dataset, monkeypatch) -> None:
    fds = dicom.frame_dataset(ds, 0)
    ref_mod, ref_px = _chain(stored, fds)
    sizes: list[int] = []
    real = dicom.apply_modality_lut
    monkeypatch.setattr(dicom.lut, "apply_modality_lut", lambda a, d: sizes.append(a.size) or real(a, d))
    mod, px = dicom.render_frame(stored, fds)
    monkeypatch.undo()
    # every case but the tiny image runs the chain on a table, not on the image
    assert (sizes == [stored.size]) == (name == "tiny image"), sizes
    assert mod is not None and mod.dtype == np.float32 and px.dtype == np.float32
    np.testing.assert_array_equal(mod, ref_mod)
    np.testing.assert_array_equal(px, ref_px)
    _, px2 = dicom.render_frame(stored, fds, need_modality=False)
    np.testing.assert_array_equal(px2, ref_px)
    # a window override and every VOI index go through the same table
    for idx in range(dicom.voi_count(fds)):
        np.testing.assert_array_equal(dicom.render_frame(stored, fds, idx)[1], _chain(stored, fds, idx)[1])
    np.testing.assert_array_equal(dicom.render_frame(stored, fds, window=(900.0, 700.0))[1],
                                  _chain(stored, fds, window=(900.0, 700.0))[1])


def _write(tmp: Path, name: str, stored: np.ndarray, ds: Dataset, syntax: str) -> Path | None:
    uid, plugin = SYNTAXES[syntax]
    for kw in ("VOILUTSequence", "ModalityLUTSequence"):  # OW in a file: raw little-endian words
        for item in ds.get(kw) or []:
            item.LUTData = np.asarray(list(item.LUTData), dtype="<u2").tobytes()
    try:
        if plugin is None:
            ds.file_meta.TransferSyntaxUID = uid
        else:
            kw = {"j2k_cr": [20]} if syntax == "JPEG 2000" else {}
            if syntax == "JPEG-LS near-lossless":
                kw = {"jls_error": 3}
            ds.compress(uid, stored, encoding_plugin=plugin, generate_instance_uid=False, **kw)
    except Exception as e:  # noqa: BLE001 - an encoder this env lacks narrows the test, says so
        pytest.skip(f"cannot encode {syntax} here: {type(e).__name__}: {e}")
    p = tmp / f"{name.replace(' ', '_')}_{syntax.replace(' ', '_')}.dcm"
    ds.save_as(p, enforce_file_format=True)
    return p


def _reference_input(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(display pixels, (1, S, S) model input) the way the screener made them before issue #6."""
    ds = dicom.read_dataset(path)
    stored = ds.pixel_array  # pydicom's default plugin order
    fds = dicom.frame_dataset(ds, 0)
    _, px = _chain(stored, fds)
    unit, _ = to_unit(np.ascontiguousarray(px, dtype=np.float32), CFG)
    return px, standardize(unit, CFG)


FILE_CASES = ["mono2 window", "mono1 full range", "rescale window", "signed CT",
              "voi lut sequence", "modality lut monotonic", "16-bit high values"]


# Every case in every syntax, except signed data in the JPEG family: the bench's encoders write
# unsigned data only (signed data is covered by the uncompressed, deflate and RLE syntaxes).
SYNTAX_CASES = [(syntax, case) for case in FILE_CASES for syntax in SYNTAXES
                if not (syntax.startswith("JPEG") and case == "signed CT")]


@pytest.mark.parametrize(("syntax", "case"), SYNTAX_CASES)
def test_model_input_and_display_unchanged_for_every_transfer_syntax(
        tmp_path: Path, syntax: str, case: str) -> None:
    name, stored, ds = next(c for c in _cases() if c[0] == case)
    assert not (syntax.startswith("JPEG") and stored.dtype.kind == "i"), "excluded above"
    if syntax.startswith("JPEG") and int(ds.BitsStored) > 12 and "2000" not in syntax:
        ds.BitsStored, ds.HighBit = 16, 15
    path = _write(tmp_path, name, stored, ds, syntax)
    ref_px, ref_x = _reference_input(path)
    img = load_image(path)
    np.testing.assert_array_equal(img.pixels, ref_px)  # the viewer shows the same image
    np.testing.assert_array_equal(img.display(), ref_px)
    np.testing.assert_array_equal(load_pixels(path), ref_px)
    # re-windowing (a window/level drag) goes through the stored-value table, pixel for pixel
    # what the element-wise chain on the modality image gives
    assert img.stored is not None
    fds = dicom.frame_dataset(img.dataset, 0)
    for window in ((900.0, 700.0), (2000.5, 1.0), *[(c, w) for _n, c, w in img.window_presets()]):
        ref = dicom.apply_presentation(
            dicom.apply_voi_lut(img.modality_pixels, fds, window=window), fds)
        np.testing.assert_array_equal(img.display(window), ref)
    pr = prepare_image(str(path), CFG)
    assert pr.error is None and pr.x is not None
    assert pr.x.shape == ref_x.shape and pr.x.dtype == np.float32
    assert float(np.abs(pr.x - ref_x).max()) <= 1e-5


def test_jpeg_ls_prefers_charls_and_its_pixels_equal_libjpeg(tmp_path: Path) -> None:
    from pydicom.pixels import get_decoder

    ts = SYNTAXES["JPEG-LS lossless"][0]
    available = get_decoder(ts).available_plugins
    if not {"pyjpegls", "pylibjpeg"} <= set(available):
        pytest.skip(f"needs both JPEG-LS plugins, this env has {available}")
    assert dicom.PREFERRED_PLUGINS[ts] == "pyjpegls"
    for syntax in ("JPEG-LS lossless", "JPEG-LS near-lossless"):
        name, stored, ds = _cases()[0]
        path = _write(tmp_path, name, stored, ds, syntax)
        out = {}
        for plugin in ("pyjpegls", "pylibjpeg"):
            d = pydicom.dcmread(path)
            d.pixel_array_options(decoding_plugin=plugin)
            out[plugin] = d.pixel_array
        np.testing.assert_array_equal(out["pyjpegls"], out["pylibjpeg"])
        np.testing.assert_array_equal(dicom.decode_pixels(dicom.read_dataset(path))[0],
                                      out["pylibjpeg"])


def test_preferred_plugin_failure_falls_back_to_pydicoms_order(tmp_path: Path, monkeypatch) -> None:
    name, stored, ds = _cases()[0]
    path = _write(tmp_path, name, stored, ds, "JPEG-LS lossless")
    monkeypatch.setitem(dicom.PREFERRED_PLUGINS, SYNTAXES["JPEG-LS lossless"][0], "pylibjpeg-nope")
    np.testing.assert_array_equal(dicom.decode_pixels(dicom.read_dataset(path))[0], stored)
    # a plugin that is installed but raises on this file: pydicom's order still decodes it
    from pydicom.pixels import get_decoder

    ts = SYNTAXES["JPEG-LS lossless"][0]
    decoder = get_decoder(ts)
    if "pyjpegls" not in decoder.available_plugins:
        pytest.skip("pyjpegls is not installed here")
    monkeypatch.setitem(dicom.PREFERRED_PLUGINS, ts, "pyjpegls")
    calls = []

    def broken(src, runner):
        calls.append(1)
        raise RuntimeError("simulated CharLS failure")

    monkeypatch.setitem(decoder._available, "pyjpegls", broken)
    np.testing.assert_array_equal(dicom.decode_pixels(dicom.read_dataset(path))[0], stored)
    assert calls, "the preferred plugin was not tried first"


# ------------------------------------------------------------------------------------------
# --fast-decode: reduced-resolution JPEG 2000 / baseline JPEG (opt-in, screener only)
# ------------------------------------------------------------------------------------------

#: Agreed tolerances of the model input (standardised units: 1.0 = one std = 0.25 of the [0, 1]
#: range) between a reduced and an exact decode of phantom radiographs, input 128 px, decoded
#: long side >= 256 px. JPEG 2000's lower resolution level is the wavelet low-pass, sharper than
#: the contract's antialiased resize, so its differences sit on edges and noise texture
#: (measured: mean 0.004-0.015, 99th percentile 0.07-0.22, max 0.22-0.39); libjpeg-turbo's
#: DCT scaling stays much closer (mean <= 0.002, max <= 0.035). What these differences do to
#: the probabilities is measured on the bench folder by bench/screen.py (|Δp| and agreement).
FAST_TOL = {"j2k": (0.025, 0.3, 0.5), "jpeg": (0.005, 0.02, 0.06)}  # mean, p99, max


@pytest.fixture(scope="module")
def radiographs(tmp_path_factory) -> dict[str, Path]:
    """Two phantom radiographs as JPEG 2000 (lossless, lossy), 8-bit baseline JPEG in DICOM,
    and plain .jpg, plus an explicit-LE copy (which fast decode must leave exact)."""
    import io

    from PIL import Image
    from pydicom.encaps import encapsulate

    from models.synth import render_radiograph

    root = tmp_path_factory.mktemp("fast")
    rng = np.random.default_rng(11)
    out: dict[str, Path] = {}
    for k, (part, shape) in enumerate([("wrist", (1200, 900)), ("hand", (950, 1300))]):
        img = render_radiograph(rng, part, bool(k), shape)
        u12 = np.rint(img * 4095).astype(np.uint16)
        for syntax in ("JPEG 2000 lossless", "JPEG 2000", "explicit LE"):
            ds = make_ds(u12, bits_stored=12, WindowCenter="2048", WindowWidth="4096")
            out[f"{part} {syntax}"] = _write(root, part, u12, ds, syntax)
        u8 = np.rint(img * 255).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(u8).save(buf, format="JPEG", quality=90)
        ds = make_ds(u8, "MONOCHROME1" if k else "MONOCHROME2")
        ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.50"
        ds.PixelData = encapsulate([buf.getvalue()])
        ds["PixelData"].VR = "OB"
        p = root / f"{part}_jpeg.dcm"
        ds.save_as(p, enforce_file_format=True)
        out[f"{part} JPEG baseline"] = p
        jpg = root / f"{part}.jpg"
        jpg.write_bytes(buf.getvalue())
        out[f"{part} plain jpg"] = jpg
    return out


@pytest.mark.parametrize("case", ["wrist JPEG 2000 lossless", "wrist JPEG 2000", "wrist JPEG baseline",
                                  "wrist plain jpg", "hand JPEG 2000 lossless", "hand JPEG baseline",
                                  "hand plain jpg"])
def test_reduced_decode_agrees_with_exact_within_tolerance(radiographs, case: str) -> None:
    path = radiographs[case]
    cfg = PreprocessConfig(input_size=128)
    exact = load_pixels(path)
    fast = load_pixels(path, min_side=2 * cfg.input_size)
    # really reduced, and never below twice the model input on the long side
    assert 2 * cfg.input_size <= max(fast.shape) < max(exact.shape), (fast.shape, exact.shape)
    assert abs(fast.shape[0] / fast.shape[1] - exact.shape[0] / exact.shape[1]) < 0.01
    assert fast.dtype == np.float32 and 0.0 <= fast.min() and fast.max() <= 1.0
    from desktop.screening.prepare import prepare_image

    pe, pf = prepare_image(str(path), cfg), prepare_image(str(path), cfg, fast_decode=True)
    assert pe.error is None and pf.error is None
    np.testing.assert_array_equal(pe.x, standardize(to_unit(exact, cfg)[0], cfg))
    d = np.abs(pf.x - pe.x)
    mean, p99, worst = FAST_TOL["j2k" if "2000" in case else "jpeg"]
    assert float(d.mean()) <= mean and float(np.percentile(d, 99)) <= p99 and float(d.max()) <= worst, (
        float(d.mean()), float(np.percentile(d, 99)), float(d.max()))
    assert pf.placement == pe.placement or abs(pf.placement.width - pe.placement.width) <= 1


def test_fast_decode_leaves_other_files_and_small_images_exact(radiographs) -> None:
    for case in ("wrist explicit LE", "hand explicit LE"):
        path = radiographs[case]
        np.testing.assert_array_equal(load_pixels(path, min_side=256), load_pixels(path))
    # no reduction keeps the long side >= min_side: the exact decode, bit for bit
    path = radiographs["wrist JPEG 2000 lossless"]
    np.testing.assert_array_equal(load_pixels(path, min_side=700), load_pixels(path))
    np.testing.assert_array_equal(load_pixels(radiographs["wrist plain jpg"], min_side=700),
                                  load_pixels(radiographs["wrist plain jpg"]))


def test_only_the_codecs_given_are_decoded_reduced(radiographs) -> None:
    """A card that validated one codec (models.reduction) reduces that one; the other decodes
    exactly, bit for bit, in the screener's decode and in the viewer's."""
    cfg = PreprocessConfig(input_size=128)
    j2k, dcm_jpeg, jpg = (radiographs[c] for c in ("wrist JPEG 2000 lossless", "wrist JPEG baseline",
                                                     "wrist plain jpg"))
    for codecs, reduced in (({"jpeg2000"}, {j2k}), ({"jpeg"}, {dcm_jpeg, jpg}), (set(), set())):
        for path in (j2k, dcm_jpeg, jpg):
            exact = load_pixels(path)
            got = load_pixels(path, min_side=256, codecs=codecs)
            assert (got.shape != exact.shape) == (path in reduced), (codecs, path.name)
            if path not in reduced:
                np.testing.assert_array_equal(got, exact)
            assert load_image(path, min_side=256, codecs=codecs).reduced == (path in reduced)
    only_j2k = frozenset({"jpeg2000"})
    np.testing.assert_array_equal(prepare_image(str(jpg), cfg, fast_decode=only_j2k).x,
                                  prepare_image(str(jpg), cfg).x)
    reduced = prepare_image(str(j2k), cfg, fast_decode=only_j2k).x
    np.testing.assert_array_equal(reduced, prepare_image(str(j2k), cfg, fast_decode=True).x)
    assert not np.array_equal(reduced, prepare_image(str(j2k), cfg).x)


def test_reduced_decode_falls_back_to_exact_when_the_codestream_refuses(radiographs, monkeypatch) -> None:
    path = radiographs["wrist JPEG 2000 lossless"]
    monkeypatch.setattr(dicom.codecs, "_j2k_header", lambda code: (12, False, 9))  # claims 9 levels
    from PIL import Jpeg2KImagePlugin

    def broken(self):
        raise OSError("broken data stream when reading image file")

    monkeypatch.setattr(Jpeg2KImagePlugin.Jpeg2KImageFile, "load", broken)
    np.testing.assert_array_equal(load_pixels(path, min_side=256), load_pixels(path))


def test_j2k_sides_pillow_cannot_reduce_fall_back_to_the_next_level(tmp_path: Path) -> None:
    """1001 rows at 1/4 leave a remainder of 1: Pillow 13 fails that decode, so 1/2 is used."""
    from models.synth import render_radiograph

    img = render_radiograph(np.random.default_rng(2), "hand", False, (1001, 902))
    u12 = np.rint(img * 4095).astype(np.uint16)
    ds = make_ds(u12, bits_stored=12, WindowCenter="2048", WindowWidth="4096")
    path = _write(tmp_path, "odd", u12, ds, "JPEG 2000 lossless")
    calls = []
    real = dicom._j2k_reduced
    dicom_ds = dicom.read_dataset(path)

    def spy(*a):
        out = real(*a)
        calls.append(None if out is None else out.shape)
        return out

    import unittest.mock

    with unittest.mock.patch.object(dicom.codecs, "_j2k_reduced", spy):
        stored = dicom.decode_reduced(dicom_ds, 200)
    assert calls == [(501, 451)] and stored is not None and stored.shape == (501, 451)
    fast = load_pixels(path, min_side=200)
    assert fast.shape == (501, 451)
