"""The one door for reading DICOM files (models/dicom/reading.py) and its policy.

``pydicom.dcmread(path, force=True)`` reads any file at all as a "dataset" (a text file becomes
one UN element), so the door forces only a file whose first bytes plausibly start a dataset
(ACR-NEMA, no preamble), types every failure and names the file. The screener's discovery, the
viewer's DICOMDIR/series/tag reads and the decoders all read through it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from models import dicom
from models.errors import DicomError, ImageDecodeError, TruncatedPixelDataError
from tests.models.test_dicom import RAMP, make_ds


def _part10(tmp_path: Path, name: str = "img.dcm") -> Path:
    p = tmp_path / name
    make_ds(RAMP, SeriesNumber="3").save_as(p, enforce_file_format=True)
    return p


def _acr_nema(tmp_path: Path) -> Path:
    """The same image with no preamble, no 'DICM' and no File Meta (implicit VR LE)."""
    ds = make_ds(RAMP)
    del ds.file_meta
    p = tmp_path / "acrnema"
    pydicom.dcmwrite(p, ds, implicit_vr=True, little_endian=True)
    assert p.read_bytes()[128:132] != b"DICM"
    return p


def test_read_header_stops_before_the_pixels(tmp_path: Path) -> None:
    ds = dicom.read_header(_part10(tmp_path))
    assert "PixelData" not in ds
    assert (ds.Rows, ds.Columns, ds.Modality) == (*RAMP.shape, "OT")
    assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian


def test_read_header_of_a_file_whose_pixels_are_cut_off(tmp_path: Path) -> None:
    """An SR about a damaged file, or discovery, still needs its header."""
    p = _part10(tmp_path)
    p.write_bytes(p.read_bytes()[:-100])
    assert dicom.read_header(p).SeriesNumber == 3
    with pytest.raises(TruncatedPixelDataError, match="img.dcm"):
        dicom.decode_pixels(dicom.read_dataset(p), p)


@pytest.mark.parametrize(
    "content",
    [b"hello, this is not DICOM at all\n" * 10, bytes(range(256)) * 4, b""],
    ids=["text", "binary", "empty"],
)
def test_read_header_never_forces_garbage_into_a_dataset(tmp_path: Path, content: bytes) -> None:
    p = tmp_path / "junk.dcm"
    p.write_bytes(content)
    if content:  # what the door is for: a forced read makes a "dataset" of any bytes
        assert len(pydicom.dcmread(p, force=True, stop_before_pixels=True)) > 0
    with pytest.raises(DicomError, match="junk.dcm") as err:
        dicom.read_header(p)
    assert isinstance(err.value, ImageDecodeError) and err.value.path == str(p)


def test_read_header_forces_a_plausible_raw_dataset_and_fills_its_transfer_syntax(
    tmp_path: Path,
) -> None:
    p = _acr_nema(tmp_path)
    with pytest.raises(pydicom.errors.InvalidDicomError):
        pydicom.dcmread(p)  # the plain read refuses it: only the door's forced read gets it
    ds = dicom.read_header(p)
    assert ds.Rows == RAMP.shape[0] and "PixelData" not in ds
    assert ds.file_meta.TransferSyntaxUID == ImplicitVRLittleEndian
    # the tag viewer shows what the file holds: no File Meta element it does not have
    raw = dicom.read_dataset(p, stop_before_pixels=True, as_stored=True)
    assert "TransferSyntaxUID" not in getattr(raw, "file_meta", {})
    np.testing.assert_array_equal(dicom.decode_pixels(dicom.read_dataset(p))[0], RAMP)


def test_read_header_specific_tags_may_come_back_empty(tmp_path: Path) -> None:
    p = _part10(tmp_path)
    ds = dicom.read_header(p, specific_tags=["SeriesNumber", "Modality"])
    assert ds.SeriesNumber == 3 and ds.Modality == "OT" and "PatientName" not in ds
    assert len(dicom.read_header(p, specific_tags=["SeriesDescription"])) == 0  # absent: no error


def test_read_header_truncated_inside_the_header(tmp_path: Path) -> None:
    p = _part10(tmp_path)
    p.write_bytes(p.read_bytes()[:300])  # past the File Meta, inside the dataset
    with pytest.raises(DicomError, match="img.dcm"):
        dicom.read_header(p)


def test_read_dataset_defer_size_leaves_large_values_on_disk(tmp_path: Path) -> None:
    """The tag viewer lists a 2 GB file's elements without loading its pixel data."""
    ds = dicom.read_dataset(_part10(tmp_path), defer_size=64)
    assert ds.get_item(0x7FE00010, keep_deferred=True).value is None  # deferred: read when touched
    np.testing.assert_array_equal(dicom.decode_pixels(ds)[0], RAMP)


def test_a_dataset_pydicom_dropped_is_truncated_unless_read_as_stored(tmp_path: Path) -> None:
    """Encapsulated pixel data cut short: pydicom drops the whole dataset, keeps the File Meta."""
    from pydicom.uid import RLELossless

    ds = make_ds(RAMP)
    ds.compress(RLELossless, generate_instance_uid=False)
    p = tmp_path / "rle.dcm"
    ds.save_as(p, enforce_file_format=True)
    p.write_bytes(p.read_bytes()[:-30])
    with pytest.warns(UserWarning), pytest.raises(TruncatedPixelDataError, match="rle.dcm"):
        dicom.read_dataset(p)
    with pytest.warns(UserWarning):
        raw = dicom.read_dataset(p, as_stored=True)  # the tag viewer: what the file holds
    assert len(raw) == 0 and raw.file_meta.TransferSyntaxUID == RLELossless


def test_read_header_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DicomError, match="gone.dcm"):
        dicom.read_header(tmp_path / "gone.dcm")


def test_product_code_reads_dicom_files_only_through_the_door() -> None:
    """No ``dcmread`` call outside models/dicom/reading.py in what ships or trains: each direct
    call had its own (forced) policy and untyped errors. The benches may read their own files."""
    import ast

    repo = Path(__file__).resolve().parents[2]
    door = repo / "models" / "dicom" / "reading.py"
    offenders = []
    for top in ("models", "desktop", "compress", "trainer", "installers/frozen"):
        for f in sorted((repo / top).rglob("*.py")):
            if f == door:
                continue
            for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Call):
                    fn = node.func
                    name = fn.attr if isinstance(fn, ast.Attribute) else getattr(fn, "id", "")
                    if name == "dcmread":
                        offenders.append(f"{f.relative_to(repo)}:{node.lineno}")
    assert offenders == []
