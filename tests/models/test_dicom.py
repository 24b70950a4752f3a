"""The DICOM display chain: exact LUT math on synthetic datasets.

Synthetic datasets pin the formulas of PS3.3 C.11 to hand-computed numbers (modality LUT, VOI
windows and LUTs, presentation), plus decoding, frames, colour and file reading. The real files
(``../shared/data/dicom``, pydicom's bundled ones) are in test_dicom_real.py.
"""

from __future__ import annotations

import math
import struct
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from models import dicom
from models.errors import (
    DicomError,
    ImageDecodeError,
    MissingPixelDataError,
    TruncatedPixelDataError,
    UnsupportedPhotometricError,
)

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
SHARED_DICOM = SHARED_DATA / "dicom"


# ------------------------------------------------------------------------------------------
# Synthetic datasets
# ------------------------------------------------------------------------------------------


def make_ds(
    arr: np.ndarray,
    photometric: str = "MONOCHROME2",
    *,
    bits_stored: int | None = None,
    **attrs: object,
) -> Dataset:
    """A minimal, valid, uncompressed image dataset holding ``arr`` ((frames,) rows, cols)."""
    arr = np.asarray(arr)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "OT"
    ds.PatientName = "Secret^Patient"
    ds.PatientID = "ID-12345"
    ds.PhotometricInterpretation = photometric
    color = arr.ndim >= 3 and arr.shape[-1] == 3
    ds.SamplesPerPixel = 3 if color else 1
    if color:
        ds.PlanarConfiguration = 0
    frames = arr.shape[0] if arr.ndim == (4 if color else 3) else 1
    if frames > 1:
        ds.NumberOfFrames = frames
    ds.Rows, ds.Columns = arr.shape[-3:-1] if color else arr.shape[-2:]
    ds.BitsAllocated = arr.dtype.itemsize * 8
    ds.BitsStored = bits_stored or ds.BitsAllocated
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 1 if arr.dtype.kind == "i" else 0
    ds.PixelData = arr.astype(arr.dtype.newbyteorder("<")).tobytes()
    for key, value in attrs.items():
        setattr(ds, key, value)
    return ds


def lut_item(first: int, bits: int, data: list[int]) -> Dataset:
    item = Dataset()
    item.LUTDescriptor = [len(data), first, bits]
    item.LUTData = data
    return item


RAMP = np.arange(0, 1024, 4, dtype=np.uint16).reshape(16, 16)  # 0..1020


# ------------------------------------------------------------------------------------------
# Modality LUT
# ------------------------------------------------------------------------------------------


def test_rescale_slope_intercept() -> None:
    ds = make_ds(RAMP, RescaleSlope="2", RescaleIntercept="-1024")
    out = dicom.apply_modality_lut(np.array([0, 100, 1000]), ds)
    np.testing.assert_array_equal(out, [-1024.0, -824.0, 976.0])
    assert out.dtype == np.float32


def test_rescale_absent_or_invalid_is_identity() -> None:
    assert np.array_equal(dicom.apply_modality_lut(np.array([3, 7]), make_ds(RAMP)), [3, 7])
    ds = make_ds(RAMP, RescaleSlope="0", RescaleIntercept="5")  # slope 0 would blank the image
    np.testing.assert_array_equal(dicom.apply_modality_lut(np.array([3, 7]), ds), [8, 12])


def test_modality_lut_sequence_clamps_below_and_above() -> None:
    ds = make_ds(RAMP)
    ds.ModalityLUTSequence = Sequence([lut_item(10, 16, [100, 200, 300, 400])])
    out = dicom.apply_modality_lut(np.array([5, 10, 11, 13, 20]), ds)
    np.testing.assert_array_equal(out, [100, 100, 200, 400, 400])


def test_modality_lut_sequence_as_ow_bytes_and_negative_first() -> None:
    ds = make_ds(RAMP.astype(np.int16))
    item = Dataset()
    item.LUTDescriptor = [4, -2, 16]
    item.add_new(0x00283006, "OW", struct.pack("<4H", 7, 8, 9, 65535))
    ds.ModalityLUTSequence = Sequence([item])
    out = dicom.apply_modality_lut(np.array([-5, -2, -1, 0, 1, 9]), ds)
    np.testing.assert_array_equal(out, [7, 7, 8, 9, 65535, 65535])


# ------------------------------------------------------------------------------------------
# VOI LUT: window formulas (PS3.3 C.11.2.1.2), with the standard's own worked examples
# ------------------------------------------------------------------------------------------


def voi(x: list[float], **attrs: object) -> np.ndarray:
    return dicom.apply_voi_lut(np.array(x, dtype=np.float64), make_ds(RAMP, **attrs))


def test_linear_window_matches_standard_examples() -> None:
    # C.11.2.1.2.1 example: c=2048, w=4096 -> x<=0: 0, x>4095: max, else (x-2047.5)/4095 + 0.5
    out = voi([-1, 0, 1, 2047.5, 4095, 4096], WindowCenter="2048", WindowWidth="4096")
    expected = [0, 0, (1 - 2047.5) / 4095 + 0.5, 0.5, 1.0, 1.0]
    np.testing.assert_allclose(out, expected, atol=1e-7)
    # c=0, w=100 -> x<=-50: 0, x>49: max, else (x+0.5)/99 + 0.5
    out = voi([-51, -50, -49, 0, 49, 50], WindowCenter="0", WindowWidth="100")
    expected = [0, 0, (-49 + 0.5) / 99 + 0.5, 0.5 / 99 + 0.5, 1.0, 1.0]
    np.testing.assert_allclose(out, expected, atol=1e-7)
    assert out.dtype == np.float32


def test_linear_window_width_one_is_a_threshold() -> None:
    # c=2048, w=1 -> x<=2047.5: 0, else max
    out = voi([2047, 2047.5, 2048, 2049], WindowCenter="2048", WindowWidth="1")
    np.testing.assert_array_equal(out, [0, 0, 1, 1])


def test_linear_exact_window() -> None:
    # C.11.2.1.3.2: x <= c - w/2: 0; x > c + w/2: max; else (x - c)/w + 0.5
    out = voi(
        [-51, -50, -25, 0, 25, 50, 51],
        WindowCenter="0",
        WindowWidth="100",
        VOILUTFunction="LINEAR_EXACT",
    )
    np.testing.assert_allclose(out, [0, 0, 0.25, 0.5, 0.75, 1.0, 1.0], atol=1e-7)


def test_sigmoid_window() -> None:
    # C.11.2.1.3.1: y = 1 / (1 + exp(-4 (x - c) / w))
    out = voi([40, 140, -60, 1e6], WindowCenter="40", WindowWidth="400", VOILUTFunction="SIGMOID")
    expected = [0.5, 1 / (1 + math.exp(-1)), 1 / (1 + math.exp(1)), 1.0]
    np.testing.assert_allclose(out, expected, atol=1e-6)


def test_multiple_windows_index_selects_and_override_wins() -> None:
    ds = make_ds(
        RAMP,
        WindowCenter=["100", "500"],
        WindowWidth=["101", "201"],
        WindowCenterWidthExplanation=["NARROW", "WIDE"],
    )
    x = np.array([50.0, 100.0, 500.0])
    # first window by default: c=100 w=101 -> (x - 99.5)/100 + 0.5
    np.testing.assert_allclose(dicom.apply_voi_lut(x, ds), [0.005, 0.505, 1.0], atol=1e-6)
    np.testing.assert_allclose(dicom.apply_voi_lut(x, ds, 1), [0.0, 0.0, 0.5025], atol=1e-6)
    over = dicom.apply_voi_lut(x, ds, 1, window=(50.0, 101.0))
    np.testing.assert_allclose(over, [0.505, 1.0, 1.0], atol=1e-6)
    with pytest.raises(IndexError, match="VOI index 2"):
        dicom.apply_voi_lut(x, ds, 2)
    with pytest.raises(ValueError, match="width"):
        dicom.apply_voi_lut(x, ds, window=(0.0, 0.0))


def test_voi_lut_sequence_normalised_by_descriptor_bits() -> None:
    ds = make_ds(RAMP)
    ds.VOILUTSequence = Sequence([lut_item(100, 8, [0, 128, 255])])
    out = dicom.apply_voi_lut(np.array([99, 100, 101, 102, 103]), ds)
    np.testing.assert_allclose(out, [0, 0, 128 / 255, 1, 1], atol=1e-7)


def test_voi_lut_sequence_comes_after_windows_in_the_index() -> None:
    ds = make_ds(RAMP, WindowCenter="0", WindowWidth="100", VOILUTFunction="LINEAR_EXACT")
    ds.VOILUTSequence = Sequence([lut_item(0, 16, [0, 65535])])
    assert dicom.voi_count(ds) == 2
    np.testing.assert_allclose(dicom.apply_voi_lut(np.array([0, 1]), ds), [0.5, 0.51], atol=1e-7)
    np.testing.assert_allclose(dicom.apply_voi_lut(np.array([0, 1]), ds, 1), [0.0, 1.0])


def test_no_voi_uses_the_data_full_range_and_invalid_windows_are_skipped() -> None:
    x = np.array([200.0, 300.0, 600.0])
    np.testing.assert_allclose(dicom.apply_voi_lut(x, make_ds(RAMP)), [0, 0.25, 1])
    broken = make_ds(RAMP, WindowCenter="100", WindowWidth="0")
    np.testing.assert_allclose(dicom.apply_voi_lut(x, broken), [0, 0.25, 1])
    flat = dicom.apply_voi_lut(np.full(4, 7.0), make_ds(RAMP))
    assert np.array_equal(flat, np.zeros(4)) and np.isfinite(flat).all()


# ------------------------------------------------------------------------------------------
# Presentation: MONOCHROME1 and Presentation LUT Shape
# ------------------------------------------------------------------------------------------


def phantom(mono1: bool) -> tuple[np.ndarray, Dataset]:
    """A 10-bit 'radiograph': air 100, soft tissue 400, a bone bar 900 (MONOCHROME2 values).

    As MONOCHROME1 the detector stores 1023 - value, so bone is *dark* in the raw data, and the
    file's window is mirrored accordingly.
    """
    img = np.full((32, 32), 100, dtype=np.uint16)
    img[4:28, 8:24] = 400
    img[4:28, 14:18] = 900
    if mono1:
        return 1023 - img, make_ds(
            1023 - img, "MONOCHROME1", bits_stored=10, WindowCenter="423", WindowWidth="701"
        )
    return img, make_ds(img, "MONOCHROME2", bits_stored=10, WindowCenter="600", WindowWidth="701")


@pytest.mark.parametrize("mono1", [False, True], ids=["MONOCHROME2", "MONOCHROME1"])
def test_bone_bright_for_both_photometrics(mono1: bool) -> None:
    _, ds = phantom(mono1)
    out = dicom.to_display(ds)
    assert out.dtype == np.float32 and out.shape == (32, 32)
    bone, soft, air = out[10, 15], out[10, 10], out[0, 0]
    assert bone > soft > air
    assert air == 0.0 and bone > 0.9


def test_monochrome1_inverts_after_voi_not_before() -> None:
    arr = np.array([[0, 300, 600, 1023]], dtype=np.uint16)
    ds = make_ds(arr, "MONOCHROME1", bits_stored=10, WindowCenter="300", WindowWidth="201")
    out = dicom.to_display(ds)
    # VOI on the stored value, then 1 - y:  y(300) = (300 - 299.5)/200 + 0.5 = 0.5025
    np.testing.assert_allclose(out[0], [1.0, 1 - 0.5025, 0.0, 0.0], atol=1e-6)
    # inverting first (1023 - x) and then windowing would give [0, 0, 0, 0] with this window
    assert out.max() == 1.0


def test_presentation_lut_shape() -> None:
    y = np.array([0.0, 0.25, 1.0], dtype=np.float32)
    mono2 = make_ds(RAMP)
    assert np.array_equal(dicom.apply_presentation(y, mono2), y)
    mono2.PresentationLUTShape = "IDENTITY"
    assert np.array_equal(dicom.apply_presentation(y, mono2), y)
    mono2.PresentationLUTShape = "INVERSE"
    np.testing.assert_array_equal(dicom.apply_presentation(y, mono2), 1 - y)
    # DX/MG require INVERSE *because* the image is MONOCHROME1: one inversion, not two.
    mono1 = make_ds(RAMP, "MONOCHROME1")
    np.testing.assert_array_equal(dicom.apply_presentation(y, mono1), 1 - y)
    mono1.PresentationLUTShape = "INVERSE"
    np.testing.assert_array_equal(dicom.apply_presentation(y, mono1), 1 - y)
    mono1.PresentationLUTShape = "IDENTITY"  # never undoes MONOCHROME1: bone stays bright
    np.testing.assert_array_equal(dicom.apply_presentation(y, mono1), 1 - y)


# ------------------------------------------------------------------------------------------
# Decoding, frames, colour
# ------------------------------------------------------------------------------------------


def test_multiframe_decodes_all_frames_and_selects_one() -> None:
    frames = np.stack([np.full((4, 5), v, dtype=np.uint16) for v in (10, 20, 30)])
    frames[:, 0, 0] = 0
    frames[:, 3, 4] = 100
    ds = make_ds(frames)
    decoded = dicom.decode_pixels(ds)
    assert decoded.shape == (3, 4, 5)
    np.testing.assert_array_equal(decoded, frames)
    np.testing.assert_allclose(dicom.to_display(ds, 2)[1, 1], 0.30, atol=1e-6)
    np.testing.assert_allclose(dicom.to_display(ds, 0)[1, 1], 0.10, atol=1e-6)
    with pytest.raises(IndexError, match="frame 3"):
        dicom.to_display(ds, 3)
    single = dicom.decode_pixels(make_ds(RAMP))
    assert single.shape == (1, 16, 16)


def test_enhanced_functional_groups_give_per_frame_rescale_and_window() -> None:
    frames = np.full((2, 2, 2), 10, dtype=np.uint16)
    ds = make_ds(frames)
    shared = Dataset()
    voi_item = Dataset()
    voi_item.WindowCenter = "15"
    voi_item.WindowWidth = "10"
    voi_item.VOILUTFunction = "LINEAR_EXACT"
    shared.FrameVOILUTSequence = Sequence([voi_item])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    per_frame = []
    for slope in (1, 2):
        group = Dataset()
        pvt = Dataset()
        pvt.RescaleSlope = str(slope)
        pvt.RescaleIntercept = "0"
        group.PixelValueTransformationSequence = Sequence([pvt])
        per_frame.append(group)
    ds.PerFrameFunctionalGroupsSequence = Sequence(per_frame)
    # frame 0: 10 -> (10-15)/10 + .5 = 0; frame 1: 20 -> 1
    assert dicom.to_display(ds, 0).max() == 0.0
    assert dicom.to_display(ds, 1).min() == 1.0


def test_rgb_and_palette_become_bt601_luminance() -> None:
    rgb = np.zeros((2, 2, 3), dtype=np.uint8)
    rgb[0, 0] = (255, 0, 0)
    rgb[0, 1] = (0, 255, 0)
    rgb[1, 0] = (0, 0, 255)
    rgb[1, 1] = (255, 255, 255)
    out = dicom.to_display(make_ds(rgb, "RGB"))
    np.testing.assert_allclose(out, [[0.299, 0.587], [0.114, 1.0]], atol=1e-5)

    idx = np.array([[0, 255]], dtype=np.uint8)
    pal = make_ds(idx, "PALETTE COLOR")
    ramp16 = [v * 257 for v in range(256)]
    for colour, data in (("Red", ramp16), ("Green", [0] * 256), ("Blue", [0] * 256)):
        setattr(pal, f"{colour}PaletteColorLookupTableDescriptor", [256, 0, 16])
        setattr(pal, f"{colour}PaletteColorLookupTableData", struct.pack("<256H", *data))
    np.testing.assert_allclose(dicom.to_display(pal)[0], [0.0, 0.299], atol=1e-5)


def test_luminance_is_bit_identical_whatever_blas_numpy_was_built_with() -> None:
    """The frozen app's numpy has no BLAS; a matmul there rounds differently from OpenBLAS (CI
    saw a palette-colour file decode to different float32 pixels). Luma must be plain per-element
    IEEE arithmetic, which every numpy build rounds the same way."""
    rgb = np.random.default_rng(0).integers(0, 65536, (50, 70, 3)).astype(np.float32)
    from models.preprocess import LUMA as w

    expected = rgb[..., 0] * w[0] + rgb[..., 1] * w[1] + rgb[..., 2] * w[2]
    got = dicom._luminance(rgb, 0)
    assert got.dtype == np.float32
    assert np.array_equal(got, expected)


def test_unknown_photometric_and_missing_pixels_raise_specific_errors() -> None:
    with pytest.raises(UnsupportedPhotometricError, match="HSV"):
        dicom.decode_pixels(make_ds(RAMP, "HSV"), "x.dcm")
    ds = make_ds(RAMP)
    del ds.PixelData
    with pytest.raises(MissingPixelDataError, match=r"x\.dcm.*7FE0,0010"):
        dicom.decode_pixels(ds, "x.dcm")


# ------------------------------------------------------------------------------------------
# Files: reading, ACR-NEMA, garbage, truncation
# ------------------------------------------------------------------------------------------


def test_read_dataset_round_trip(tmp_path: Path) -> None:
    p = tmp_path / "img.dcm"
    make_ds(RAMP, RescaleSlope="1", RescaleIntercept="0").save_as(p, enforce_file_format=True)
    ds = dicom.read_dataset(p)
    np.testing.assert_array_equal(dicom.decode_pixels(ds)[0], RAMP)


def test_read_dataset_acr_nema_without_preamble_or_meta(tmp_path: Path) -> None:
    ds = make_ds(RAMP)
    del ds.file_meta
    p = tmp_path / "acrnema"
    pydicom.dcmwrite(p, ds, implicit_vr=True, little_endian=True)
    assert p.read_bytes()[128:132] != b"DICM"
    got = dicom.read_dataset(p)
    assert got.file_meta.TransferSyntaxUID == pydicom.uid.ImplicitVRLittleEndian
    np.testing.assert_array_equal(dicom.decode_pixels(got)[0], RAMP)


@pytest.mark.parametrize(
    "content",
    [b"hello, this is not DICOM at all\n" * 10, bytes(range(256)) * 4, b""],
    ids=["text", "binary", "empty"],
)
def test_read_dataset_rejects_non_dicom_naming_the_file(tmp_path: Path, content: bytes) -> None:
    p = tmp_path / "junk.dcm"
    p.write_bytes(content)
    with pytest.raises(DicomError, match="junk.dcm") as err:
        dicom.read_dataset(p)
    assert isinstance(err.value, ImageDecodeError) and err.value.path == str(p)
    assert err.value.__cause__ is not None or not content


def test_read_dataset_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DicomError, match="nope.dcm"):
        dicom.read_dataset(tmp_path / "nope.dcm")


def test_truncated_native_pixel_data(tmp_path: Path) -> None:
    p = tmp_path / "cut.dcm"
    make_ds(RAMP).save_as(p, enforce_file_format=True)
    p.write_bytes(p.read_bytes()[:-100])
    with pytest.raises(TruncatedPixelDataError, match="cut.dcm"):
        dicom.decode_pixels(dicom.read_dataset(p), p)


# ------------------------------------------------------------------------------------------
# Presets, spacing, header summary
# ------------------------------------------------------------------------------------------


def test_window_presets_ct_uses_hounsfield_presets() -> None:
    ds = make_ds(
        RAMP,
        Modality="CT",
        RescaleSlope="1",
        RescaleIntercept="-1024",
        WindowCenter=["40", "300"],
        WindowWidth=["400", "1500"],
        WindowCenterWidthExplanation=["ABDOMEN", ""],
    )
    names = dicom.window_presets(ds)
    assert names[0] == ("ABDOMEN", 40.0, 400.0)
    assert names[1] == ("File window 2", 300.0, 1500.0)
    assert ("Bone", 480.0, 2500.0) in names and ("Soft tissue", 40.0, 400.0) in names
    # without pixels, "Full range" is the nominal 16-bit stored range through the rescale
    full = {n: (c, w) for n, c, w in names}["Full range"]
    assert full == (-1024 + 0.5 + 65535 / 2, 65536.0)
    # with the pixels it is their min..max, and as a LINEAR window maps them exactly onto 0..1
    modality = dicom.apply_modality_lut(RAMP, ds)
    full = {n: (c, w) for n, c, w in dicom.window_presets(ds, modality)}["Full range"]
    y = dicom.apply_voi_lut(modality, ds, window=full)
    assert y.min() == 0.0 and y.max() == 1.0


def test_window_presets_radiograph_are_relative_and_follow_polarity() -> None:
    for pi in ("MONOCHROME2", "MONOCHROME1"):
        ds = make_ds(RAMP, pi, bits_stored=10)
        presets = {n: (c, w) for n, c, w in dicom.window_presets(ds, RAMP.astype(np.float32))}
        bone_c, bone_w = presets["Bone"]
        assert bone_w == pytest.approx(0.6 * 1020)
        # bone is high attenuation: high values in MONOCHROME2, low values in MONOCHROME1
        assert (bone_c > 510) == (pi == "MONOCHROME2")
        bone = dicom.apply_presentation(dicom.apply_voi_lut(RAMP, ds, window=(bone_c, bone_w)), ds)
        most_attenuating = RAMP == (RAMP.max() if pi == "MONOCHROME2" else RAMP.min())
        assert bone[most_attenuating].min() == 1.0 and bone.min() == 0.0


def test_pixel_spacing() -> None:
    assert dicom.pixel_spacing(make_ds(RAMP, PixelSpacing=["0.2", "0.25"])) == (0.2, 0.25)
    assert dicom.pixel_spacing(make_ds(RAMP, ImagerPixelSpacing=["0.1", "0.1"])) == (0.1, 0.1)
    assert dicom.pixel_spacing(make_ds(RAMP, PixelSpacing=["0.000", "0.000"])) is None
    assert dicom.pixel_spacing(make_ds(RAMP)) is None


def test_dicom_info_keeps_patient_fields_out_of_repr() -> None:
    ds = make_ds(RAMP, BodyPartExamined="WRIST", StudyDate="20240102")
    info = dicom.dicom_info(ds)
    assert info.patient_name == "Secret^Patient" and info.patient_id == "ID-12345"
    assert info.body_part_examined == "WRIST" and (info.rows, info.columns) == (16, 16)
    assert info.sop_instance_uid == ds.SOPInstanceUID and info.number_of_frames == 1
    assert "Secret" not in repr(info) and "ID-12345" not in repr(info)

