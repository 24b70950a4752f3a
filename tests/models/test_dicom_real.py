"""The DICOM display chain on real files: ``../shared/data/dicom`` (every transfer syntax a clinic
sends, the known-bad files and the specific error each must raise, MONOCHROME1/2 bone bright) and
pydicom's bundled test files (only those installed; never downloads). The LUT formulas on synthetic
datasets are in test_dicom.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest

from models import dicom
from models.errors import (
    DicomError,
    MissingPixelDataError,
    TruncatedPixelDataError,
)

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
SHARED_DICOM = SHARED_DATA / "dicom"



# ------------------------------------------------------------------------------------------
# Real files: ../shared/data/dicom
# ------------------------------------------------------------------------------------------

#: file -> the error it must raise (None: must decode)
EXPECTED_ERRORS: dict[str, type[DicomError]] = {
    "RG2_JPLY.dcm": DicomError,  # known-bad JPEG Extended encoding
    "Issue56-NoPixelData.dcm": MissingPixelDataError,
    "CR000000.dcm": MissingPixelDataError,
    "MR_truncated.dcm": TruncatedPixelDataError,
    "emri_small_jpeg_2k_lossless_too_short.dcm": TruncatedPixelDataError,
}


def _shared_dicom_files() -> list[str]:
    if not SHARED_DICOM.is_dir():
        return ["<absent>"]
    return sorted(p.name for p in SHARED_DICOM.iterdir() if p.is_file())


def _need_shared() -> Path:
    if not SHARED_DICOM.is_dir():
        pytest.skip(f"real data not available: {SHARED_DICOM} is absent (dev machines and CI only)")
    return SHARED_DICOM


@pytest.mark.shared_data
@pytest.mark.parametrize("name", _shared_dicom_files())
def test_shared_dicom_decodes_or_raises_the_specific_error(name: str) -> None:
    path = _need_shared() / name
    expected = EXPECTED_ERRORS.get(name)
    if expected is not None:
        with pytest.raises(expected) as err:
            dicom.to_display(dicom.read_dataset(path))
        assert name in str(err.value)
        return
    ds = dicom.read_dataset(path)
    out = dicom.to_display(ds)
    assert out.dtype == np.float32 and out.ndim == 2 and out.size > 0
    assert np.isfinite(out).all() and out.min() >= 0.0 and out.max() <= 1.0
    assert out.std() > 0.01, "a blank image means a LUT or VOI went wrong"
    info = dicom.dicom_info(ds)
    assert out.shape == (info.rows, info.columns)


@pytest.mark.shared_data
def test_shared_acr_nema_chest_decodes_bone_bright() -> None:
    ds = dicom.read_dataset(_need_shared() / "CR-MONO1-10-chest")
    assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ImplicitVRLittleEndian
    out = dicom.to_display(ds)
    assert out.shape == (440, 440)
    h, w = out.shape
    spine = out[h // 5 : h // 2, int(w * 0.45) : int(w * 0.55)].mean()
    lungs = out[h // 5 : h // 2, int(w * 0.2) : int(w * 0.35)].mean()
    assert spine > lungs + 0.1


def _grid(img: np.ndarray) -> np.ndarray:
    """10x10 grid of block means, so ROIs are stated in tenths of the image."""
    h, w = (img.shape[0] // 10) * 10, (img.shape[1] // 10) * 10
    return img[:h, :w].reshape(10, h // 10, 10, w // 10).mean(axis=(1, 3))


@pytest.mark.shared_data
@pytest.mark.parametrize(
    ("name", "bone", "air", "margin"),
    [
        # RG3, MONOCHROME1 tibia: the leg (column 4) vs the direct-exposure gap left of it
        ("RG3_J2KR.dcm", (slice(0, 6), slice(4, 5)), (slice(2, 7), slice(3, 4)), 0.3),
        # RG2, MONOCHROME2 hip: pelvis (top left) vs the air between the thighs (bottom)
        ("RG2_JPLL.dcm", (slice(0, 3), slice(1, 4)), (slice(7, 10), slice(2, 6)), 0.5),
        # RG1, MONOCHROME1 chest: spine/mediastinum vs lung fields
        ("RG1_J2KI.dcm", (slice(1, 5), slice(4, 6)), (slice(1, 4), slice(2, 4)), 0.15),
    ],
)
def test_shared_nema_radiographs_are_bone_bright(name, bone, air, margin) -> None:
    grid = _grid(dicom.to_display(dicom.read_dataset(_need_shared() / name)))
    assert grid[bone].mean() > grid[air].mean() + margin, np.round(grid, 2)


@pytest.mark.shared_data
@pytest.mark.parametrize(
    ("reference", "variant", "tolerance"),
    [
        ("RG2_JPLL.dcm", "RG2_JLSL.dcm", 0.0),  # both lossless: identical
        ("RG2_JPLL.dcm", "RG2_JLSN.dcm", 0.01),  # JPEG-LS near-lossless
        ("RG2_JPLL.dcm", "RG2_JPLY_fixed.dcm", 0.02),  # lossy JPEG Extended
        ("RG3_J2KR.dcm", "RG3_J2KI.dcm", 0.01),  # JPEG 2000 lossless vs lossy
        ("RG1_J2KI.dcm", "RG1_JLSN.dcm", 0.01),
    ],
)
def test_shared_transfer_syntax_variants_agree(reference, variant, tolerance) -> None:
    root = _need_shared()
    a = dicom.to_display(dicom.read_dataset(root / reference))
    b = dicom.to_display(dicom.read_dataset(root / variant))
    assert a.shape == b.shape
    assert float(np.abs(a - b).mean()) <= tolerance


@pytest.mark.shared_data
def test_shared_dx_monochrome1_with_inverse_shape_is_inverted_once() -> None:
    """dx_image.dcm is MONOCHROME1 *and* INVERSE, as DX requires: XOR would show it negative."""
    ds = dicom.read_dataset(_need_shared() / "dx_image.dcm")
    assert ds.PhotometricInterpretation == "MONOCHROME1" and ds.PresentationLUTShape == "INVERSE"
    raw = dicom.decode_pixels(ds)[0].astype(np.float32)
    out = dicom.to_display(ds)
    # inverted: the raw data's darkest pixels (MONOCHROME1: most attenuating) are the brightest
    assert np.corrcoef(raw.ravel(), out.ravel())[0, 1] < -0.9


@pytest.mark.shared_data
def test_shared_lut_files() -> None:
    root = _need_shared()
    ds = dicom.read_dataset(root / "CR-ModalitySequenceLUT.dcm")
    stored = dicom.decode_pixels(ds)[0]
    modality = dicom.apply_modality_lut(stored, ds)
    # OW-encoded LUT Data: agree with pydicom's independent implementation, and not be identity
    from pydicom.pixels import apply_modality_lut as pydicom_modality_lut

    np.testing.assert_array_equal(modality, pydicom_modality_lut(stored, ds))
    assert not np.array_equal(modality, stored)
    ds = dicom.read_dataset(root / "vlut_04.dcm")
    assert dicom.voi_count(ds) == 1
    out = dicom.to_display(ds)
    assert out.min() == 0.0 and out.max() == 1.0
    ds = dicom.read_dataset(root / "OBXXXX1A_rle_2frame.dcm")  # RLE, palette, 2 frames
    assert dicom.decode_pixels(ds).shape[0] == 2
    assert dicom.pixel_spacing(dicom.read_dataset(root / "RG1_J2KI.dcm")) is None  # "0\\0"


# ------------------------------------------------------------------------------------------
# pydicom's bundled test files (only those present locally; never downloads)
# ------------------------------------------------------------------------------------------


def _testdata(name: str) -> str:
    from pydicom.data import get_testdata_file

    path = get_testdata_file(name, download=False)
    if path is None:
        pytest.skip(f"pydicom test file {name} is not bundled in this install")
    return str(path)


@pytest.mark.parametrize(
    "name",
    [
        "CT_small.dcm",
        "MR_small.dcm",
        "JPEG2000.dcm",
        "SC_rgb.dcm",
        "SC_rgb_small_odd.dcm",
        "SC_rgb_rle_2frame.dcm",
        "SC_ybr_full_422_uncompressed.dcm",
        "SC_rgb_jpeg_dcmtk.dcm",
        "examples_palette.dcm",
        "MR-SIEMENS-DICOM-WithOverlays.dcm",
        "MR_small_bigendian.dcm",
        "JPEGLSNearLossless_16.dcm",
        "liver_1frame.dcm",
    ],
)
def test_pydicom_testdata_decodes(name: str) -> None:
    ds = dicom.read_dataset(_testdata(name))
    out = dicom.to_display(ds)
    assert out.dtype == np.float32 and out.ndim == 2
    assert np.isfinite(out).all() and 0.0 <= out.min() and out.max() <= 1.0


def test_pydicom_ct_small_hounsfield_chain() -> None:
    ds = dicom.read_dataset(_testdata("CT_small.dcm"))
    stored = dicom.decode_pixels(ds)[0]
    hu = dicom.apply_modality_lut(stored, ds)
    slope, intercept = float(ds.RescaleSlope), float(ds.RescaleIntercept)
    np.testing.assert_allclose(hu, stored * slope + intercept)
    presets = {n: (c, w) for n, c, w in dicom.window_presets(ds)}
    assert presets["Bone"] == (480.0, 2500.0)
    bone = dicom.to_display(ds, window=presets["Bone"])
    expected = np.clip((hu - 479.5) / 2499 + 0.5, 0, 1)
    np.testing.assert_allclose(bone, expected, atol=1e-5)
