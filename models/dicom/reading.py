"""Reading a DICOM file: the one door every header and dataset read goes through.

The read policy (why one door): ``force=True`` turns any garbage into an empty-but-"valid"
Dataset, so it is used only after the plain read failed *and* the first bytes look like a dataset
(ACR-NEMA / no File Meta: :func:`looks_like_dicom`). Every failure comes out typed
(:class:`~models.errors.DicomError`, :class:`~models.errors.TruncatedPixelDataError`) and names
the file, and a missing (0002,0010) Transfer Syntax UID is filled in from the encoding pydicom
detected, so the decoders can run. The screener's discovery, the viewer's DICOMDIR, series and
tag reads and the decoders all read through :func:`read_dataset` / :func:`read_header`.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from pathlib import Path
from typing import TypedDict

import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import (
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from models.errors import DicomError, TruncatedPixelDataError


class _ReadOptions(TypedDict):
    """The keyword arguments :func:`read_dataset` passes on to ``pydicom.dcmread``."""

    stop_before_pixels: bool
    specific_tags: list[str] | None
    defer_size: int | str | None


# VRs an explicit-VR dataset may start with; used to recognise ACR-NEMA/preamble-less files.
_VRS = frozenset(
    b"AE AS AT CS DA DS DT FL FD IS LO LT OB OD OF OL OV OW PN SH SL SQ SS ST SV TM UC UI UL UN "
    b"UR US UT UV".split()
)

# Explicit-VR elements with a 2-byte reserved field and a 4-byte length (PS3.5 7.1.2).
_LONG_VRS = frozenset(b"OB OD OF OL OV OW SQ SV UC UN UR UT UV".split())


def looks_like_dicom(head: bytes) -> bool:
    """Whether ``head`` (the first ≥ 132 bytes of a file) starts a DICOM or ACR-NEMA stream.

    Part 10 files carry ``DICM`` at offset 128. Older ACR-NEMA files and raw datasets start
    straight with an element; we accept them only if the first few elements parse as a plausible
    little-endian stream (groups 0002/0008 first, ascending tags, lengths that fit), so that a
    random binary file is not mistaken for DICOM.
    """
    if len(head) >= 132 and head[128:132] == b"DICM":
        return True
    return _plausible_raw_dataset(head)


def _plausible_raw_dataset(head: bytes) -> bool:
    """Whether ``head`` starts with a few well-formed elements (ACR-NEMA / no File Meta).

    Little endian (implicit or explicit VR) and explicit big endian, as pydicom's
    ``force=True`` reader handles those three.
    """
    return _walk_elements(head, "<") or _walk_elements(head, ">")


def _walk_elements(head: bytes, endian: str) -> bool:
    if len(head) < 16:
        return False
    group, elem = struct.unpack_from(endian + "HH", head, 0)
    if group not in (0x0002, 0x0008) or elem > 0x00FF:
        return False
    pos, last, seen = 0, -1, 0
    while pos + 8 <= len(head) and seen < 4:
        group, elem = struct.unpack_from(endian + "HH", head, pos)
        tag = (group << 16) | elem
        if tag <= last or group > 0x7FE0:
            return False
        last = tag
        vr = head[pos + 4 : pos + 6]
        if vr in _VRS:  # explicit VR
            if vr in _LONG_VRS:
                if pos + 12 > len(head):
                    return seen > 0
                (length,) = struct.unpack_from(endian + "I", head, pos + 8)
                header = 12
            else:
                (length,) = struct.unpack_from(endian + "H", head, pos + 6)
                header = 8
        elif endian == "<":  # implicit VR exists only in little endian
            (length,) = struct.unpack_from("<I", head, pos + 4)
            header = 8
        else:
            return False
        if length == 0xFFFFFFFF:  # undefined-length sequence: plausible, stop here
            return True
        if length > 1 << 24:
            return False
        pos += header + length
        seen += 1
    return seen > 0


def read_dataset(
    path: str | Path,
    *,
    stop_before_pixels: bool = False,
    specific_tags: Sequence[str] | None = None,
    defer_size: int | str | None = None,
    as_stored: bool = False,
) -> Dataset:
    """Read a DICOM file, including ACR-NEMA files that have no preamble or File Meta.

    The one door for every read of a file (the module docstring says why): ``force=True`` is
    used only after the plain read failed *and* the bytes look like a dataset, because forcing
    turns any garbage into an empty-but-"valid" Dataset. Failures are typed and name the file:
    :class:`~models.errors.DicomError` (cannot open, not DICOM, garbled header) or
    :class:`~models.errors.TruncatedPixelDataError` (ends inside an element, nothing readable).

    ``stop_before_pixels``: the header only (what an SR about the file needs), so a file whose
    pixel data is cut off still gives its header. ``specific_tags`` and ``defer_size`` are passed
    to pydicom (a series header read, the tag viewer); with ``specific_tags`` an empty result is
    not an error, since the file may simply lack those tags.

    Reads (0002,0010) Transfer Syntax UID and sets it from the encoding pydicom detected when it
    is missing: without it pydicom cannot decode the pixels of e.g. ``CR-MONO1-10-chest``. A
    dataset pydicom had to drop entirely is a truncated file. ``as_stored`` (the tag viewer, which
    shows what the file holds, damaged or not) does neither: no Transfer Syntax is filled in and
    an empty dataset is returned with whatever File Meta was read.
    """
    p = Path(path)
    try:
        with p.open("rb") as fh:
            head = fh.read(512)
    except OSError as e:
        raise DicomError(p, f"cannot open file ({e.strerror or e})") from e
    tags = None if specific_tags is None else list(specific_tags)
    options: _ReadOptions = {"stop_before_pixels": stop_before_pixels, "specific_tags": tags,
                             "defer_size": defer_size}
    ds = _dcmread(p, head, options)
    if len(ds) == 0 and specific_tags is None and not as_stored:
        # pydicom drops the whole dataset when it runs off the end of an undefined-length item
        # (e.g. encapsulated pixel data cut short): that is a truncated transfer.
        raise TruncatedPixelDataError(p, "no data elements could be read: the file is truncated")
    if not as_stored:
        _ensure_transfer_syntax(ds)
    return ds


def read_header(path: str | Path, *, specific_tags: Sequence[str] | None = None) -> Dataset:
    """The header of a DICOM file, without its pixel data: :func:`read_dataset` with
    ``stop_before_pixels``, so the same force policy and typed errors apply.

    Why a name of its own: discovery, the DICOMDIR check, series grouping and the scope bench
    only need the header, and they used to call ``pydicom.dcmread(..., force=True)`` directly,
    which reads any file at all as an empty dataset instead of saying it is not DICOM.
    """
    return read_dataset(path, stop_before_pixels=True, specific_tags=specific_tags)


def _dcmread(p: Path, head: bytes, options: _ReadOptions) -> Dataset:
    """pydicom's read, forced only for a plausible preamble-less dataset; errors typed."""
    try:
        try:
            return pydicom.dcmread(p, **options)
        except InvalidDicomError:
            if not _plausible_raw_dataset(head):
                raise
            return pydicom.dcmread(p, force=True, **options)
    except InvalidDicomError as e:
        raise DicomError(p, "not a DICOM file (no 'DICM' marker and no dataset start)") from e
    except EOFError as e:
        raise TruncatedPixelDataError(p, f"file ends in the middle of an element ({e})") from e
    except Exception as e:  # pydicom raises many kinds on garbled headers
        raise DicomError(p, f"garbled DICOM header: {type(e).__name__}: {e}") from e


def _ensure_transfer_syntax(ds: Dataset) -> None:
    meta = getattr(ds, "file_meta", None)
    if meta is not None and "TransferSyntaxUID" in meta:
        return
    if meta is None:
        meta = FileMetaDataset()
        ds.file_meta = meta
    implicit, little = ds.original_encoding
    if implicit is None:  # nothing detected: the ACR-NEMA default
        implicit, little = True, True
    if implicit:
        meta.TransferSyntaxUID = ImplicitVRLittleEndian
    elif little:
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
    else:
        meta.TransferSyntaxUID = ExplicitVRBigEndian
