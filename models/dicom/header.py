"""What the header says about the image: photometric, size and budget, per-frame attributes,
spacing and the summary the viewer and the screener show.

These read tags only, never pixels: :func:`validate_pixel_header` and
:func:`check_pixel_budget` refuse a file before any decoder runs, and :func:`frame_dataset`
gives the LUT chain (:mod:`models.dicom.lut`) the attributes in effect for one frame.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset

from models.errors import (
    DicomError,
    ImageTooLargeError,
    MissingPixelDataError,
    UnsupportedPhotometricError,
)

#: (center, width) of a VOI window, in modality units (output of the Modality LUT).
Window = tuple[float, float]

#: The most memory one decoded frame may take, as its header describes it (rows x columns x
#: samples x bytes per sample), checked before any decoder runs. The largest real radiographs
#: (43 x 43 cm detectors at 0.1 mm, 4300 x 4300 x 16 bit) take 37 MB; the rendering chain then
#: holds a few float32 copies. A 486 KB RLE file claiming 65535 x 60000 reached 7.5 GB of RSS.
MAX_FRAME_BYTES = 256 * 2**20

MONOCHROME = ("MONOCHROME1", "MONOCHROME2")
#: Colour spaces we turn into luminance. pydicom converts YBR_* to RGB while decoding.
COLOUR = (
    "RGB",
    "PALETTE COLOR",
    "YBR_FULL",
    "YBR_FULL_422",
    "YBR_PARTIAL_420",
    "YBR_PARTIAL_422",
    "YBR_ICT",
    "YBR_RCT",
)


_PIXEL_TAGS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")


def _source(ds: Dataset, path: str | Path | None) -> str:
    if path is not None:
        return str(path)
    return str(getattr(ds, "filename", None) or "<in-memory dataset>")


def photometric(ds: Dataset) -> str:
    """(0028,0004) Photometric Interpretation, upper-cased; MONOCHROME2 when absent.

    ACR-NEMA 1.0 files may lack it; PS3.5 history makes MONOCHROME2 the only sane default.
    """
    value = ds.get("PhotometricInterpretation")
    return str(value).strip().upper() if value else "MONOCHROME2"


def is_monochrome(ds: Dataset) -> bool:
    """Whether (0028,0004) is MONOCHROME1/2: only those carry modality values and VOI."""
    return photometric(ds) in MONOCHROME


#: Pixel Data (7FE0,0010) as its tag appears in a little-endian file.
_PIXEL_DATA_TAG_BYTES = b"\xe0\x7f\x10\x00"


def validate_pixel_header(ds: Dataset, path: str | Path | None = None) -> None:
    """Every check of the image pixel module a decode needs, one door for the exact and the
    reduced (``--fast-decode``) decoding alike: the latter accepted 22 of 830 odd files the
    former refused. Raises a :class:`~models.errors.DicomError` subclass naming the file.

    A file with no (7FE0,0010) whose bytes nevertheless hold that tag did not lose its pixels:
    pydicom stopped parsing quietly at a corrupted element before them. That is a data error
    (re-send the file), not a header-only object such as an SR.
    """
    src = _source(ds, path)
    try:
        present = [t for t in _PIXEL_TAGS if t in ds]
        if not present:
            if _file_holds(path, _PIXEL_DATA_TAG_BYTES):
                raise DicomError(src, "the header could not be read to its end (a corrupted element "
                                      "before Pixel Data); the file is damaged: re-send it")
            raise MissingPixelDataError(src, "no Pixel Data (7FE0,0010): header-only/non-image object")
        if not ds[present[0]].value:
            raise DicomError(src, f"{present[0]} is empty: the file carries no pixels")
        pi = photometric(ds)
        if pi not in MONOCHROME and pi not in COLOUR:
            raise UnsupportedPhotometricError(src, f"Photometric Interpretation {pi!r} not supported")
        for tag in ("Rows", "Columns", "BitsAllocated"):
            if not ds.get(tag):
                raise DicomError(src, f"missing or zero {tag}: cannot size the pixel data")
        bits, samples = int(ds.BitsAllocated), int(ds.get("SamplesPerPixel", 1) or 0)
        if bits not in (1, 8, 16, 32, 64):
            raise DicomError(src, f"Bits Allocated {bits} is not 1, 8, 16, 32 or 64")
        if samples not in (1, 3):
            raise DicomError(src, f"Samples per Pixel {samples} is not 1 or 3")
        if "PixelRepresentation" not in ds and present[0] == "PixelData":
            raise DicomError(src, "no Pixel Representation (0028,0103): signedness of the pixels unknown")
    except DicomError:
        raise
    except Exception as e:  # noqa: BLE001 - pydicom converts values lazily: a bad VR raises here
        raise DicomError(src, f"unreadable image header ({type(e).__name__}: {e})") from e
    check_pixel_budget(ds, src)


def _file_holds(path: str | Path | None, needle: bytes) -> bool:
    """Whether the file at ``path`` contains ``needle`` (False when there is no readable file)."""
    if path is None:
        return False
    try:
        return needle in Path(path).read_bytes()
    except OSError:
        return False


def check_pixel_budget(ds: Dataset, src: object) -> None:
    """Refuse, before decoding, a frame whose (0028,0010) Rows x (0028,0011) Columns x
    (0028,0002) Samples per Pixel x (0028,0100) Bits Allocated exceeds :data:`MAX_FRAME_BYTES`."""
    try:
        rows, cols = int(ds.get("Rows") or 0), int(ds.get("Columns") or 0)
        samples = max(1, int(ds.get("SamplesPerPixel", 1) or 1))
        bits = int(ds.get("BitsAllocated") or 0)
    except (TypeError, ValueError) as e:
        raise DicomError(src, f"unreadable image size in the header ({e})") from e
    size = rows * cols * samples * max(1, -(-bits // 8))
    if size > MAX_FRAME_BYTES:
        raise ImageTooLargeError(
            src, f"image too large to decode safely: the header claims {cols} x {rows} pixels x "
                 f"{samples} sample(s) x {bits} bits = {size / 2**20:,.0f} MB per frame (limit "
                 f"{MAX_FRAME_BYTES // 2**20} MB)")


def number_of_frames(ds: Dataset) -> int:
    """(0028,0008) Number of Frames, 1 when absent or unreadable."""
    return _number_of_frames(ds)


def _number_of_frames(ds: Dataset) -> int:
    try:
        return max(1, int(ds.get("NumberOfFrames", 1) or 1))
    except (TypeError, ValueError):
        return 1


_FRAME_TAGS = (
    "PhotometricInterpretation",
    "BitsStored",
    "BitsAllocated",
    "PixelRepresentation",
    "Modality",
    "RescaleSlope",
    "RescaleIntercept",
    "RescaleType",
    "ModalityLUTSequence",
    "WindowCenter",
    "WindowWidth",
    "WindowCenterWidthExplanation",
    "VOILUTFunction",
    "VOILUTSequence",
    "PresentationLUTShape",
    "PixelSpacing",
    "ImagerPixelSpacing",
    "SmallestImagePixelValue",
    "LargestImagePixelValue",
)


def frame_dataset(ds: Dataset, frame: int = 0) -> Dataset:
    """The display-relevant attributes in effect for one frame.

    Enhanced multi-frame objects put rescale and window in (5200,9229) Shared and (5200,9230)
    Per-Frame Functional Groups — Pixel Value Transformation (0028,9145), Frame VOI LUT
    (0028,9132), Pixel Measures (0028,9110) — instead of the top level, and the apply_* functions
    only read the top level. Precedence: per-frame over shared over top-level.
    For a classic single-frame file this is a plain copy of the tags above.
    """
    out = Dataset()
    for kw in _FRAME_TAGS:
        if kw in ds:
            out[kw] = ds[kw]
    if hasattr(ds, "file_meta"):
        out.file_meta = ds.file_meta
    implicit, little = ds.original_encoding
    out.set_original_encoding(implicit, little)  # OW LUT Data needs the source byte order
    groups: list[Any] = []
    shared = ds.get("SharedFunctionalGroupsSequence")
    if shared:
        groups.append(shared[0])
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if per_frame and 0 <= frame < len(per_frame):
        groups.append(per_frame[frame])
    for group in groups:
        for seq_kw in (
            "PixelValueTransformationSequence",
            "FrameVOILUTSequence",
            "PixelMeasuresSequence",
        ):
            seq = group.get(seq_kw)
            if seq:
                for elem in seq[0]:
                    if elem.keyword in _FRAME_TAGS:
                        out[elem.keyword] = elem
    return out


def _float_or(value: Any, default: float) -> float:
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        value = value[0] if len(value) else None
    try:
        f = float(value)
    except (TypeError, ValueError):
        return default
    return f if math.isfinite(f) else default


def _floats(value: Any) -> list[float]:
    if value is None or value == "":
        return []
    seq = value if isinstance(value, Sequence) and not isinstance(value, str | bytes) else [value]
    out: list[float] = []
    for v in seq:
        try:
            out.append(float(v))
        except (TypeError, ValueError):
            out.append(float("nan"))
    return out


def pixel_spacing(ds: Dataset) -> tuple[float, float] | None:
    """(row, column) spacing in mm, or None when unknown.

    Reads (0028,0030) Pixel Spacing, else (0018,1164) Imager Pixel Spacing (detector plane, so
    it over-states anatomy size by the magnification factor; good enough for a ruler hint), else
    Pixel Measures in the functional groups. Zero, negative or non-numeric values count as
    absent: the NEMA RG1 files carry "0.000\\0.000".
    """
    frame = frame_dataset(ds, 0)
    for kw in ("PixelSpacing", "ImagerPixelSpacing"):
        values = _floats(frame.get(kw))
        if len(values) >= 2 and all(math.isfinite(v) and v > 0 for v in values[:2]):
            return values[0], values[1]
    return None


@dataclass(frozen=True)
class DicomInfo:
    """What the viewer's overlay and the screener's report need from the header.

    ``patient_name`` and ``patient_id`` are identifying data, kept for the viewer's on-screen
    overlay only: they must never be logged, written to reports or sent anywhere. They are left
    out of ``repr()`` so an accidental ``log.info(info)`` does not leak them.
    """

    study_instance_uid: str = ""
    series_instance_uid: str = ""
    sop_instance_uid: str = ""
    sop_class_uid: str = ""
    modality: str = ""
    body_part_examined: str = ""
    photometric: str = ""
    bits_stored: int = 0
    rows: int = 0
    columns: int = 0
    number_of_frames: int = 1
    study_date: str = ""
    study_description: str = ""
    transfer_syntax: str = ""
    pixel_spacing: tuple[float, float] | None = None
    patient_name: str = field(default="", repr=False)
    patient_id: str = field(default="", repr=False)


def _text(ds: Dataset, keyword: str) -> str:
    try:
        value = ds.get(keyword)
    except Exception:  # an invalid value in a non-essential tag must not fail the image
        return ""
    return "" if value is None else str(value).strip()


def _int(ds: Dataset, keyword: str, default: int = 0) -> int:
    try:
        return int(ds.get(keyword, default) or default)
    except (TypeError, ValueError):
        return default


def dicom_info(ds: Dataset) -> DicomInfo:
    """Summarise the header; never raises on odd values (they become empty strings / 0)."""
    meta = getattr(ds, "file_meta", None)
    ts = meta.get("TransferSyntaxUID") if meta is not None else None
    return DicomInfo(
        study_instance_uid=_text(ds, "StudyInstanceUID"),
        series_instance_uid=_text(ds, "SeriesInstanceUID"),
        sop_instance_uid=_text(ds, "SOPInstanceUID"),
        sop_class_uid=_text(ds, "SOPClassUID"),
        modality=_text(ds, "Modality"),
        body_part_examined=_text(ds, "BodyPartExamined"),
        photometric=photometric(ds),
        bits_stored=_int(ds, "BitsStored"),
        rows=_int(ds, "Rows"),
        columns=_int(ds, "Columns"),
        number_of_frames=_number_of_frames(ds),
        study_date=_text(ds, "StudyDate"),
        study_description=_text(ds, "StudyDescription"),
        transfer_syntax=str(ts) if ts else "",
        pixel_spacing=pixel_spacing(ds),
        patient_name=_text(ds, "PatientName"),
        patient_id=_text(ds, "PatientID"),
    )
