"""Hostile and damaged input (issue 16): memory bounded before decoding, every error typed, damage
not mistaken for a header-only object, one validation for exact and reduced decoding."""

from __future__ import annotations

import resource

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import ExplicitVRLittleEndian, RLELossless, generate_uid

from models import dicom
from models.errors import ImageDecodeError, ImageTooLargeError
from models.imageio import load_image, load_pixels


def _dataset(rows: int, cols: int, frames: int = 1, syntax=ExplicitVRLittleEndian) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = syntax
    ds.SOPClassUID, ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.Modality = generate_uid(), "OT"
    ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.PhotometricInterpretation = rows, cols, 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    if frames > 1:
        ds.NumberOfFrames = frames
    return ds


def test_a_header_claiming_a_huge_image_is_refused_before_decoding(tmp_path):
    """A 486 KB RLE file claiming 65535 x 60000 reached 7.5 GB of RSS before failing."""
    ds = _dataset(60000, 65535, syntax=RLELossless)
    ds.PixelData = encapsulate([b"\x00" * 64])  # a few bytes of 'compressed' data
    path = tmp_path / "bomb.dcm"
    ds.save_as(path, enforce_file_format=True)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(ImageTooLargeError) as e:
        load_image(path)
    assert "65535 x 60000" in str(e.value) and str(path) in str(e.value)
    with pytest.raises(ImageDecodeError):
        load_pixels(path)  # the screener's door too
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mb < 200


def test_the_limit_allows_the_largest_real_radiographs():
    ds = _dataset(4320, 4320)
    dicom.check_pixel_budget(ds, "big-detector.dcm")  # 37 MB: fine
    with pytest.raises(ImageTooLargeError):
        dicom.check_pixel_budget(_dataset(12000, 12000), "x.dcm")


def test_only_the_used_frame_is_decoded(tmp_path, monkeypatch):
    frames = np.stack([np.full((8, 6), 1000 * (k + 1), np.uint16) for k in range(3)])
    frames[:, 0, 0] = 0
    ds = _dataset(8, 6, frames=3)
    ds.PixelData = frames.tobytes()
    path = tmp_path / "loop.dcm"
    ds.save_as(path, enforce_file_format=True)
    seen: list = []
    real = dicom._pixel_array

    def spy(d, index=None):
        out = real(d, index)
        seen.append(out.shape)
        return out

    monkeypatch.setattr(dicom.codecs, "_pixel_array", spy)
    im = load_image(path, frame=2)
    assert im.frames == 3 and im.frame == 2 and seen == [(8, 6)]  # one frame, not (3, 8, 6)
    np.testing.assert_array_equal(im.stored, frames[2])
    with pytest.raises(IndexError):
        load_image(path, frame=3)
    full = pydicom.dcmread(path).pixel_array
    np.testing.assert_array_equal(dicom.decode_pixels(pydicom.dcmread(path), path, index=1)[0], full[1])


def _png_header_only(w: int, h: int) -> bytes:
    """A PNG whose header says w x h RGB over a few bytes of data."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 100)) + chunk(b"IEND", b""))


def test_a_plain_image_claiming_a_huge_size_is_refused_before_decoding(tmp_path):
    """30000 x 30000 RGB would be 2.7 GB decoded: Pillow's own bomb check, typed as ours."""
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_header_only(30000, 30000))
    with pytest.raises(ImageTooLargeError) as e:
        load_pixels(path)
    assert "too large" in str(e.value) and str(path) in str(e.value)
    # below Pillow's limit, the project's budget decides, from the header, before load()
    small = tmp_path / "big.png"
    small.write_bytes(_png_header_only(12000, 12000))
    with pytest.raises(ImageTooLargeError) as e:
        load_pixels(small)
    assert "12000 x 12000" in str(e.value)


def test_a_sub_unit_linear_window_is_not_a_hard_threshold(tmp_path):
    """Issue 16 §5: VOI LUT Function LINEAR with Window Width 0.21 over modality values of
    slope 5.6e-6 (a real file) rendered one uniform white image, which was then scored."""
    ramp = np.tile(np.linspace(0, 50000, 64, dtype=np.uint16), (64, 1))
    ds = _dataset(64, 64)
    ds.Modality = "CR"
    ds.RescaleSlope, ds.RescaleIntercept = "5.6e-6", "0"
    ds.WindowCenter, ds.WindowWidth, ds.VOILUTFunction = "0.14", "0.21", "LINEAR"
    ds.PixelData = ramp.tobytes()
    path = tmp_path / "tiny_units.dcm"
    ds.save_as(path, enforce_file_format=True)
    px = load_image(path).pixels
    assert px.std() > 0.2 and px.min() == 0.0 and px.max() == 1.0  # a ramp, not a constant
    assert len(np.unique(px)) > 20
    # width exactly 1 stays the standard's threshold
    np.testing.assert_array_equal(dicom._window(np.array([9.0, 10.0]), 10.0, 1.0, "LINEAR"), [0.0, 1.0])


def _saved(tmp_path, ds: Dataset, name: str) -> bytes:
    import io

    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def _small(tmp_path) -> bytes:
    ds = _dataset(4, 4)
    ds.PixelData = np.arange(16, dtype=np.uint16).tobytes()
    return _saved(tmp_path, ds, "ok.dcm")


def test_a_bad_value_representation_is_a_typed_error_wherever_it_is_touched(tmp_path):
    """pydicom converts values lazily: an unknown VR raised NotImplementedError in photometric(),
    outside the guarded read and decode."""
    path = tmp_path / "bad_vr.dcm"
    path.write_bytes(_small(tmp_path).replace(b"\x28\x00\x04\x00CS", b"\x28\x00\x04\x00ZZ"))
    for load in (load_image, load_pixels):
        with pytest.raises(ImageDecodeError) as e:
            load(path)
        assert str(path) in str(e.value) and "ZZ" in str(e.value)


def test_empty_pixel_data_is_named_not_a_none_has_no_len(tmp_path):
    ds = _dataset(4, 4)
    ds.PixelData = b""
    path = tmp_path / "empty.dcm"
    path.write_bytes(_saved(tmp_path, ds, "empty.dcm"))
    with pytest.raises(ImageDecodeError, match="PixelData is empty"):
        load_image(path)


def test_a_parse_stopped_by_damage_is_not_a_header_only_object(tmp_path):
    """866 fuzzed files whose seeds have pixels were reported as 'no Pixel Data: header-only'."""
    from models.errors import MissingPixelDataError

    data = _small(tmp_path)
    i = data.index(b"\x28\x00\x04\x00CS")
    path = tmp_path / "damaged.dcm"
    path.write_bytes(data[: i + 6] + b"\xff\x7f" + data[i + 8:])  # a corrupted element length
    with pytest.raises(ImageDecodeError) as e:
        load_image(path)
    assert not isinstance(e.value, MissingPixelDataError) and "damaged" in str(e.value)
    sr = _dataset(4, 4)
    path2 = tmp_path / "sr.dcm"
    path2.write_bytes(_saved(tmp_path, sr, "sr.dcm"))  # really no pixel data
    with pytest.raises(MissingPixelDataError):
        load_image(path2)


def test_fast_decode_makes_the_exact_decodes_header_checks(tmp_path):
    """--fast-decode accepted files the exact decode refused (Bits Allocated 256, Samples per
    Pixel 0, no Pixel Representation): one validation for both."""
    import io

    from PIL import Image
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEGBaseline8Bit

    buf = io.BytesIO()
    Image.fromarray(np.tile(np.arange(0, 256, 1, dtype=np.uint8), (600, 3))[:, :700]).save(buf, "JPEG")
    ds = _dataset(600, 700, syntax=JPEGBaseline8Bit)
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
    ds.PixelData = encapsulate([buf.getvalue()])
    ok = tmp_path / "ok.dcm"
    ok.write_bytes(_saved(tmp_path, ds, "ok.dcm"))
    assert load_pixels(ok, min_side=256).shape[0] < 600  # the reduced decode is used
    for name, change in (("bits256", {"BitsAllocated": 256}), ("samples0", {"SamplesPerPixel": 0})):
        bad = _dataset(600, 700, syntax=JPEGBaseline8Bit)
        bad.BitsAllocated, bad.BitsStored, bad.HighBit = 8, 8, 7
        bad.PixelData = encapsulate([buf.getvalue()])
        for k, v in change.items():
            setattr(bad, k, v)
        path = tmp_path / f"{name}.dcm"
        path.write_bytes(_saved(tmp_path, bad, name))
        with pytest.raises(ImageDecodeError) as exact:
            load_pixels(path)
        with pytest.raises(ImageDecodeError) as fast:
            load_pixels(path, min_side=256)
        assert type(fast.value) is type(exact.value), name


@pytest.mark.parametrize("name,keep", [("RG2_JPLL.dcm", 0.17), ("RG2_JLSL.dcm", 0.55), ("RG3_J2KR.dcm", 0.6)])
def test_truncated_compressed_data_is_reported_not_scored(tmp_path, name, keep):
    """Issue 16 §2: a JPEG Lossless file cut to 17 % decoded with garbage rows from row 196 and
    got a score; a JPEG-LS one cut to 55 % took 13 s and got one too."""
    from pydicom.encaps import encapsulate, generate_frames

    from models.errors import TruncatedPixelDataError
    from tests.conftest import shared_data

    src = shared_data("dicom") / name
    data = src.read_bytes()
    cut_file = tmp_path / f"cut_{name}"
    cut_file.write_bytes(data[: int(len(data) * keep)])  # the transfer stopped mid-file
    ds = pydicom.dcmread(src)
    frame = next(generate_frames(ds.PixelData, number_of_frames=1))
    ds.PixelData = encapsulate([frame[: int(len(frame) * keep)]])  # well-framed, short codestream
    cut_stream = tmp_path / f"short_{name}"
    ds.save_as(cut_stream)
    for path in (cut_file, cut_stream):
        for fast in (None, 256):
            with pytest.raises(TruncatedPixelDataError, match="truncated"):
                load_pixels(path, min_side=fast)
    assert load_pixels(src).size > 0  # the complete file still decodes
