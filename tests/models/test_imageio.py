"""Loading any file by content: sniffing, plain-image conversions, DICOM, and clean failures."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from models import dicom
from models.errors import (
    DicomError,
    ImageDecodeError,
    MissingPixelDataError,
    UnsupportedImageError,
)
from models.imageio import LoadedImage, is_ignored_file, load_image, sniff_kind

REPO = Path(__file__).resolve().parents[2]
SHARED_DATA = REPO.parent / "shared" / "data"
EXTERNAL = SHARED_DATA / "bone-fracture-binary"


def _png_bytes(im: Image.Image, **kw: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG", **kw)
    return buf.getvalue()


def _dicom_file(tmp_path: Path, name: str = "img.dcm", *, meta: bool = True) -> Path:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    arr = np.arange(64, dtype=np.uint16).reshape(8, 8) * 16
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.1"
    ds.SOPInstanceUID = generate_uid()
    ds.Modality = "CR"
    ds.PatientName = "Secret^Patient"
    ds.PhotometricInterpretation = "MONOCHROME1"
    ds.SamplesPerPixel = 1
    ds.Rows, ds.Columns = arr.shape
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 10, 9, 0
    ds.WindowCenter, ds.WindowWidth = "500", "1000"  # LINEAR: maps 0..999 onto 0..1
    ds.PixelSpacing = ["0.2", "0.2"]
    ds.PixelData = arr.tobytes()
    p = tmp_path / name
    if meta:
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.save_as(p, enforce_file_format=True)
    else:
        import pydicom

        pydicom.dcmwrite(p, ds, implicit_vr=True, little_endian=True)
    return p


# ------------------------------------------------------------------------------------------
# Sniffing and ignoring
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("head", "kind"),
    [
        (b"\x89PNG\r\n\x1a\n" + bytes(40), "png"),
        (b"\xff\xd8\xff\xe0" + bytes(40), "jpeg"),
        (b"GIF89a" + bytes(40), "gif"),
        (b"GIF87a" + bytes(40), "gif"),
        (b"BM" + bytes(12) + (40).to_bytes(4, "little") + bytes(40), "bmp"),
        (b"II*\x00" + bytes(40), "tiff"),
        (b"MM\x00*" + bytes(40), "tiff"),
        (b"RIFF\x00\x00\x00\x00WEBPVP8 " + bytes(40), "webp"),
        # a Part 10 preamble may hold a TIFF header: DICM at 128 wins
        (b"II*\x00" + bytes(124) + b"DICM" + bytes(40), "dicom"),
        (b"hello world, a text file that is long enough" * 4, None),
        (b"BM but not a bitmap header at all......." * 2, None),
        (bytes(300), None),
        (b"", None),
    ],
)
def test_sniff_kind_by_content(tmp_path: Path, head: bytes, kind: str | None) -> None:
    p = tmp_path / "file.jpg"  # the extension never matters
    p.write_bytes(head)
    assert sniff_kind(p) == kind


def test_sniff_kind_dicom_with_and_without_preamble(tmp_path: Path) -> None:
    assert sniff_kind(_dicom_file(tmp_path, "a.png")) == "dicom"
    raw = _dicom_file(tmp_path, "acrnema", meta=False)
    assert raw.read_bytes()[128:132] != b"DICM"
    assert sniff_kind(raw) == "dicom"
    assert sniff_kind(tmp_path / "missing") is None
    assert sniff_kind(tmp_path) is None


@pytest.mark.parametrize(
    ("name", "ignored"),
    [
        (".DS_Store", True),
        ("._image.png", True),
        (".hidden.dcm", True),
        ("Thumbs.db", True),
        ("thumbs.db", True),
        ("desktop.ini", True),
        ("Desktop.ini", True),
        ("image.jpg:Zone.Identifier", True),
        ("image.jpg", False),
        ("IM000001", False),
        ("thumbs.db.png", False),
    ],
)
def test_is_ignored_file(name: str, ignored: bool) -> None:
    assert is_ignored_file(Path("/some/folder") / name) is ignored


# ------------------------------------------------------------------------------------------
# Plain images
# ------------------------------------------------------------------------------------------


def _check(img: LoadedImage) -> np.ndarray:
    px = img.pixels
    assert px.dtype == np.float32 and px.ndim == 2 and px.flags.c_contiguous
    assert np.isfinite(px).all() and px.min() >= 0.0 and px.max() <= 1.0
    return px


def test_png_bytes_named_jpg(tmp_path: Path) -> None:
    gray = np.tile(np.arange(0, 256, 16, dtype=np.uint8), (4, 1))
    p = tmp_path / "really_a_png.jpg"
    p.write_bytes(_png_bytes(Image.fromarray(gray, "L")))
    img = load_image(p)
    assert img.kind == "png" and img.info is None and img.modality_pixels is None
    np.testing.assert_allclose(_check(img), gray / 255.0, atol=1e-6)


def test_rgb_becomes_bt601_luminance(tmp_path: Path) -> None:
    rgb = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 255]]], dtype=np.uint8)
    p = tmp_path / "rgb.png"
    Image.fromarray(rgb, "RGB").save(p)
    np.testing.assert_allclose(_check(load_image(p)), [[0.299, 0.587, 0.114, 1.0]], atol=1e-5)


def test_rgba_is_composited_on_black(tmp_path: Path) -> None:
    rgba = np.array([[[255, 255, 255, 255], [255, 255, 255, 0], [200, 200, 200, 128]]], np.uint8)
    p = tmp_path / "rgba.png"
    Image.fromarray(rgba, "RGBA").save(p)
    np.testing.assert_allclose(
        _check(load_image(p)), [[1.0, 0.0, 200 / 255 * 128 / 255]], atol=1e-5
    )


def test_palette_png_and_gif_frames(tmp_path: Path) -> None:
    pal = Image.new("P", (4, 2))
    pal.putpalette([0, 0, 0, 255, 255, 255, 255, 0, 0] + [0] * (256 * 3 - 9))
    pal.putdata([0, 1, 2, 1, 0, 0, 1, 1])
    p = tmp_path / "pal.png"
    pal.save(p)
    np.testing.assert_allclose(_check(load_image(p)), [[0, 1, 0.299, 1], [0, 0, 1, 1]], atol=1e-5)

    frames = [Image.fromarray(np.full((3, 5), v, np.uint8), "L").convert("P") for v in (0, 255)]
    g = tmp_path / "anim.jpg"  # a GIF under a .jpg name, as in the external set
    frames[0].save(g, format="GIF", save_all=True, append_images=frames[1:])
    first, second = load_image(g), load_image(g, frame=1)
    assert first.kind == "gif" and first.frames == 2 and second.frame == 1
    assert _check(first).max() == 0.0 and _check(second).min() == 1.0
    with pytest.raises(IndexError, match="frame 2"):
        load_image(g, frame=2)


def test_16bit_png_scaled_by_its_range(tmp_path: Path) -> None:
    arr = np.array([[1000, 2000], [3000, 5000]], dtype=np.uint16)  # 12-bit-ish content
    p = tmp_path / "deep.png"
    Image.fromarray(arr).save(p)
    assert Image.open(p).mode.startswith("I")
    np.testing.assert_allclose(_check(load_image(p)), [[0, 0.25], [0.5, 1.0]], atol=1e-6)


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    arr = np.zeros((20, 40), dtype=np.uint8)  # landscape, bright left half
    arr[:, :20] = 255
    im = Image.fromarray(arr, "L")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW to display
    p = tmp_path / "rot.jpg"
    im.save(p, exif=exif, quality=95)
    px = _check(load_image(p))
    assert px.shape == (40, 20)
    assert px[:10].mean() > 0.9 and px[-10:].mean() < 0.1  # bright half now on top


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_image_raises_instead_of_returning_a_partial(tmp_path: Path, fmt: str) -> None:
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (64, 64), dtype=np.uint8), "L").save(buf, format=fmt)
    p = tmp_path / f"cut.{fmt.lower()}"
    p.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(ImageDecodeError, match="cut") as err:
        load_image(p)
    assert err.value.__cause__ is not None  # wrapped, never a bare PIL error
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_corrupt_png_body_is_an_image_decode_error(tmp_path: Path) -> None:
    p = tmp_path / "bad.png"
    p.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 20)
    with pytest.raises(ImageDecodeError, match=r"bad\.png"):
        load_image(p)


@pytest.mark.parametrize(
    "content", [b"just some text\n" * 20, b"", bytes(range(256))], ids=["text", "empty", "binary"]
)
def test_non_images_are_unsupported(tmp_path: Path, content: bytes) -> None:
    p = tmp_path / "notes.png"
    p.write_bytes(content)
    with pytest.raises(UnsupportedImageError, match=r"notes\.png"):
        load_image(p)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(ImageDecodeError, match="nothing.png"):
        load_image(tmp_path / "nothing.png")
    with pytest.raises(ImageDecodeError):
        load_image(tmp_path)


def test_plain_display_window_is_on_unit_scale(tmp_path: Path) -> None:
    p = tmp_path / "g.png"
    Image.fromarray(np.array([[0, 64, 128, 255]], np.uint8), "L").save(p)
    img = load_image(p)
    assert img.display() is img.pixels and img.window_presets() == []
    # LINEAR_EXACT on the unit scale: (x - 0.5) / 0.5 + 0.5, clipped
    expected = [[0.0, (64 / 255 - 0.5) / 0.5 + 0.5, (128 / 255 - 0.5) / 0.5 + 0.5, 1.0]]
    np.testing.assert_allclose(img.display((0.5, 0.5)), expected, atol=1e-6)


# ------------------------------------------------------------------------------------------
# DICOM through load_image
# ------------------------------------------------------------------------------------------


def test_dicom_loaded_with_modality_pixels_for_rewindowing(tmp_path: Path) -> None:
    p = _dicom_file(tmp_path, "noext")
    img = load_image(p)
    assert img.kind == "dicom" and img.frames == 1 and img.pixel_spacing == (0.2, 0.2)
    assert img.info is not None and img.info.photometric == "MONOCHROME1"
    assert "Secret" not in repr(img)
    px = _check(img)
    ds = dicom.read_dataset(p)
    np.testing.assert_array_equal(px, dicom.to_display(ds))
    assert img.modality_pixels is not None and img.modality_pixels.dtype == np.float32
    assert img.modality_pixels.shape == px.shape
    # MONOCHROME1: the lowest stored value is the brightest
    assert px.flat[0] == 1.0
    # re-window without decoding gives what the full chain gives
    np.testing.assert_array_equal(
        img.display((300.0, 200.0)), dicom.to_display(ds, window=(300, 200))
    )
    assert [n for n, _, _ in img.window_presets()][:2] == ["File window 1", "Full range"]


def test_acr_nema_file_loads(tmp_path: Path) -> None:
    img = load_image(_dicom_file(tmp_path, "old", meta=False))
    assert img.kind == "dicom" and _check(img).shape == (8, 8)


def test_dicom_errors_keep_their_specific_type(tmp_path: Path) -> None:
    import pydicom

    p = _dicom_file(tmp_path, "hdr.dcm")
    ds = pydicom.dcmread(p)
    del ds.PixelData
    ds.save_as(p)
    with pytest.raises(MissingPixelDataError, match=r"hdr\.dcm"):
        load_image(p)
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(_dicom_file(tmp_path, "full.dcm").read_bytes()[:-50])
    with pytest.raises(DicomError, match=r"cut\.dcm"):
        load_image(cut)


def test_no_torch_or_qt_import() -> None:
    code = (
        "import sys, models.imageio, models.dicom; "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('torch', 'PySide6', 'PyQt5', "
        "'PyQt6', 'torchvision', 'timm')]; print(bad); sys.exit(1 if bad else 0)"
    )
    res = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


# ------------------------------------------------------------------------------------------
# The external set: ../shared/data/bone-fracture-binary
# ------------------------------------------------------------------------------------------


def _need_external() -> Path:
    if not EXTERNAL.is_dir():
        pytest.skip(f"real data not available: {EXTERNAL} is absent (dev machines and CI only)")
    return EXTERNAL


@pytest.mark.shared_data
def test_external_quirks_all_raise_image_decode_error() -> None:
    root = _need_external()
    with (root / "quirks" / "quirks.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert rows, "quirks.csv lists the files that must fail"
    for row in rows:
        path = root / row["path"]
        with pytest.raises(ImageDecodeError) as err:
            load_image(path)
        assert path.name in str(err.value)
        if "truncated" in row["detail"]:
            assert "truncated" in str(err.value)
    on_disk = {p.relative_to(root).as_posix() for p in (root / "quirks").rglob("*.jpg")}
    assert on_disk == {r["path"] for r in rows}


@pytest.mark.shared_data
def test_external_odd_files_and_a_sample_decode() -> None:
    root = _need_external()
    with (root / "manifest.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    ext_format = {"jpg": "JPEG", "jpeg": "JPEG", "png": "PNG"}
    odd = [
        r
        for r in rows
        if r["mode"] not in ("L", "RGB")
        or ext_format.get(r["path"].rsplit(".", 1)[-1].lower()) != r["format"]
    ]
    assert len(odd) >= 10  # RGBA/palette PNGs, PNG and GIF bytes under .jpg names
    sample = odd + rows[:: max(1, len(rows) // 60)]
    for r in sample:
        img = load_image(root / r["path"])
        px = _check(img)
        assert img.kind == r["format"].lower()
        assert px.shape == (int(r["height"]), int(r["width"])), r["path"]
        assert px.std() > 0.01, r["path"]
