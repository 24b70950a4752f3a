"""DICOM decoding and the grayscale display pipeline, free of Qt and torch.

The trainer, the batch screener and the viewer must see the *same* gray image for a file, so the
whole chain lives here as small pure functions applied in the order of PS3.3 C.11 / PS3.4 N.2:

    stored values --decode_pixels--> apply_modality_lut --> apply_voi_lut --> apply_presentation

Each step reads only the tags its docstring names. The end result (:func:`to_display`) is float32
in [0, 1] with *high attenuation bright* (bone white, air black) whatever the Photometric
Interpretation, because the models are trained on radiographs that look that way.

Colour input (RGB, YBR_*, PALETTE COLOR) is converted to luminance instead of being refused: a
clinic occasionally sends a secondary capture or an ultrasound with a palette, and a gray
rendering of it is more useful to the screener than an error. Only photometric interpretations we
cannot interpret at all raise :class:`UnsupportedPhotometricError`.

Nothing here logs. :class:`DicomInfo` carries patient identifiers for the viewer's overlay only.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import (
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from models.errors import (
    DicomError,
    ImageTooLargeError,
    MissingPixelDataError,
    TruncatedPixelDataError,
    UnsupportedPhotometricError,
)
from models.preprocess import luma

__all__ = [
    "DicomInfo",
    "Window",
    "apply_modality_lut",
    "apply_presentation",
    "apply_voi_lut",
    "decode_pixels",
    "decode_reduced",
    "dicom_info",
    "frame_dataset",
    "is_monochrome",
    "looks_like_dicom",
    "needs_inversion",
    "photometric",
    "pixel_spacing",
    "read_dataset",
    "check_frame_complete",
    "check_pixel_budget",
    "validate_pixel_header",
    "number_of_frames",
    "render_frame",
    "to_display",
    "voi_count",
    "window_presets",
]

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

#: CT presets in Hounsfield units. Only meaningful when modality values are HU (see
#: :func:`window_presets`).
BONE_WINDOW_HU: Window = (480.0, 2500.0)
SOFT_TISSUE_WINDOW_HU: Window = (40.0, 400.0)

_PIXEL_TAGS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
# VRs an explicit-VR dataset may start with; used to recognise ACR-NEMA/preamble-less files.
_VRS = frozenset(
    b"AE AS AT CS DA DS DT FL FD IS LO LT OB OD OF OL OV OW PN SH SL SQ SS ST SV TM UC UI UL UN "
    b"UR US UT UV".split()
)

# Explicit-VR elements with a 2-byte reserved field and a 4-byte length (PS3.5 7.1.2).
_LONG_VRS = frozenset(b"OB OD OF OL OV OW SQ SV UC UN UR UT UV".split())

# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


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


def read_dataset(path: str | Path, *, stop_before_pixels: bool = False) -> Dataset:
    """Read a DICOM file, including ACR-NEMA files that have no preamble or File Meta.

    ``stop_before_pixels``: the header only (what an SR about the file needs), so a file whose
    pixel data is cut off still gives its header.

    Reads (0002,0010) Transfer Syntax UID and sets it from the encoding pydicom detected when it
    is missing: without it pydicom cannot decode the pixels of e.g. ``CR-MONO1-10-chest``.
    ``force=True`` is used only after the plain read failed *and* the bytes look like a dataset,
    because forcing turns any garbage into an empty-but-"valid" Dataset.
    """
    p = Path(path)
    try:
        with p.open("rb") as fh:
            head = fh.read(512)
    except OSError as e:
        raise DicomError(p, f"cannot open file ({e.strerror or e})") from e
    try:
        try:
            ds = pydicom.dcmread(p, stop_before_pixels=stop_before_pixels)
        except InvalidDicomError:
            if not _plausible_raw_dataset(head):
                raise
            ds = pydicom.dcmread(p, force=True, stop_before_pixels=stop_before_pixels)
    except InvalidDicomError as e:
        raise DicomError(p, "not a DICOM file (no 'DICM' marker and no dataset start)") from e
    except EOFError as e:
        raise TruncatedPixelDataError(p, f"file ends in the middle of an element ({e})") from e
    except Exception as e:  # pydicom raises many kinds on garbled headers
        raise DicomError(p, f"garbled DICOM header: {type(e).__name__}: {e}") from e
    if len(ds) == 0:
        # pydicom drops the whole dataset when it runs off the end of an undefined-length item
        # (e.g. encapsulated pixel data cut short): that is a truncated transfer.
        raise TruncatedPixelDataError(p, "no data elements could be read: the file is truncated")
    _ensure_transfer_syntax(ds)
    return ds


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


def _source(ds: Dataset, path: str | Path | None) -> str:
    if path is not None:
        return str(path)
    return str(getattr(ds, "filename", None) or "<in-memory dataset>")


# --------------------------------------------------------------------------------------------
# Pixel decoding
# --------------------------------------------------------------------------------------------


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


def check_frame_complete(ds: Dataset, src: object, index: int = 0) -> None:
    """A JPEG-family frame (JPEG, JPEG-LS, JPEG 2000) must end with its end-of-image marker (FFD9;
    JPEG 2000's EOC is the same bytes), after the fragment padding. A JPEG Lossless file cut to 17 %
    of its data decoded with garbage rows and got a score; a cut JPEG-LS one too. Truncated is
    reported as truncated: re-send the study."""
    ts = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    if ts is None or not getattr(ts, "is_encapsulated", False) or str(ts) in _NOT_JPEG_ENCAPSULATED:
        return
    from pydicom.encaps import generate_frames

    n = _number_of_frames(ds)
    try:
        frames = generate_frames(ds.PixelData, number_of_frames=n)
        frame = next(f for k, f in enumerate(frames) if k == index)
    except StopIteration:
        raise TruncatedPixelDataError(src, f"frame {index + 1} of {n} is missing from the pixel data: "
                                           "the file is truncated; re-send the study") from None
    except Exception as e:  # noqa: BLE001 - fragments that do not parse are damaged data
        raise TruncatedPixelDataError(src, f"the compressed pixel data does not parse ({e}); re-send the study") from e
    if not frame.rstrip(b"\x00\xff").endswith(b"\xff\xd9"):
        raise TruncatedPixelDataError(src, f"compressed frame {index + 1} ends without its end-of-image "
                                           "marker: the file is truncated; re-send the study")


#: Encapsulated syntaxes whose frames are not JPEG codestreams: RLE, deflate, MPEG/HEVC video.
_NOT_JPEG_ENCAPSULATED = frozenset({
    "1.2.840.10008.1.2.5", "1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.4.100", "1.2.840.10008.1.2.4.101",
    "1.2.840.10008.1.2.4.102", "1.2.840.10008.1.2.4.103", "1.2.840.10008.1.2.4.104",
    "1.2.840.10008.1.2.4.105", "1.2.840.10008.1.2.4.106", "1.2.840.10008.1.2.4.107",
    "1.2.840.10008.1.2.4.108",
})


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


def decode_pixels(ds: Dataset, path: str | Path | None = None, index: int | None = None) -> np.ndarray:
    """Decode the frames of (7FE0,0010) to an array of shape (frames, rows, columns).

    ``index`` decodes that one frame only (shape (1, rows, columns)): a viewer or screener that
    shows frame 0 of an 87-frame ultrasound loop decoded all 87 (1.7 GB, 16 s). Every decode
    is first checked against :data:`MAX_FRAME_BYTES` (:func:`check_pixel_budget`).

    Reads (0028,0002/0004/0008/0010/0011/0100/0101/0103) through pydicom and the transfer
    syntax from the File Meta. Monochrome data keeps its stored integer type, because the
    Modality LUT indexes by stored value. Colour data (RGB, YBR_*, PALETTE COLOR, palette via
    (0028,1101-1203)) is returned as float32 BT.601 luminance on the stored scale, so every
    caller gets one gray channel; the leading frame axis is always present.
    """
    src = _source(ds, path)
    validate_pixel_header(ds, path)
    pi = photometric(ds)
    n_frames = _number_of_frames(ds)
    if index is not None and not 0 <= index < n_frames:
        raise IndexError(f"frame {index} out of range: {src} has {n_frames} frame(s)")
    check_frame_complete(ds, src, index or 0)
    try:
        arr = _pixel_array(ds, None if n_frames == 1 else index)
    except ValueError as e:
        if "less than expected" in str(e):
            raise TruncatedPixelDataError(src, f"pixel data is truncated ({e})") from e
        raise DicomError(src, f"cannot decode pixel data: {e}") from e
    except Exception as e:  # decoder plugins raise RuntimeError, NotImplementedError, ...
        ts = ds.file_meta.get("TransferSyntaxUID", "unknown")
        msg = " ".join(str(e).split()) or type(e).__name__  # one line for logs and reports
        name = getattr(ts, "name", str(ts))
        raise DicomError(src, f"cannot decode pixel data ({name}): {msg}") from e

    if index is not None:
        n_frames = 1  # one frame decoded: shaped like a single-frame image
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    try:
        if pi == "PALETTE COLOR":
            from pydicom.pixels import apply_color_lut

            rgb = apply_color_lut(arr, ds)
            arr = _luminance(rgb, _palette_bits(ds))
        elif samples == 3 or pi in COLOUR:
            if arr.ndim == (3 if n_frames == 1 else 4) and arr.shape[-1] == 3:
                arr = _luminance(arr, 0)
            else:
                raise UnsupportedPhotometricError(
                    src, f"{pi} with {samples} samples per pixel decoded to shape {arr.shape}"
                )
    except DicomError:
        raise
    except Exception as e:
        raise UnsupportedPhotometricError(src, f"cannot convert {pi} to gray: {e}") from e
    if arr.ndim == 2:
        arr = arr[np.newaxis]
    if arr.ndim != 3:
        raise DicomError(src, f"unexpected decoded shape {arr.shape} for a gray image")
    return arr


#: Decoding plugin tried first per transfer syntax, where pydicom's own order (pylibjpeg first)
#: is slower for identical pixels: CharLS (pyjpegls) decodes JPEG-LS 3-4x faster than libjpeg
#: (0.08 vs 0.29 s for a 1.7k x 1.3k 12-bit image; identical pixels on the phantoms and every
#: JPEG-LS file of the NEMA set, tests/models/test_dicom.py). JPEG 2000 keeps pylibjpeg
#: (OpenJPEG, as fast as Pillow's or faster, identical pixels) and baseline JPEG keeps pylibjpeg
#: too: Pillow's libjpeg-turbo is 2x faster there but its pixels differ from libjpeg's.
PREFERRED_PLUGINS: dict[str, str] = {
    "1.2.840.10008.1.2.4.80": "pyjpegls",  # JPEG-LS Lossless
    "1.2.840.10008.1.2.4.81": "pyjpegls",  # JPEG-LS Near-Lossless
}


def _pixel_array(ds: Dataset, index: int | None = None) -> np.ndarray:
    """``ds.pixel_array`` (frame ``index`` only, when given), through :data:`PREFERRED_PLUGINS`
    first when that plugin is installed.

    A file the preferred plugin refuses is decoded again with pydicom's usual order, so the
    preference can only make a file faster, never make one fail.
    """
    ts = str(ds.file_meta.get("TransferSyntaxUID", "")) if hasattr(ds, "file_meta") else ""
    plugin = PREFERRED_PLUGINS.get(ts)
    try:
        if plugin and _plugin_available(ts, plugin):
            try:
                ds.pixel_array_options(index=index, decoding_plugin=plugin)
                return ds.pixel_array
            except Exception:  # noqa: BLE001 - any decoder error: let pydicom's order have a go
                pass
        ds.pixel_array_options(index=index)
        return ds.pixel_array
    finally:
        ds.pixel_array_options()


def _plugin_available(ts: str, plugin: str) -> bool:
    from pydicom.pixels import get_decoder

    try:
        return plugin in get_decoder(ts).available_plugins
    except Exception:  # noqa: BLE001 - no decoder for this syntax: nothing to prefer
        return False


#: Transfer syntaxes :func:`decode_reduced` can decode at a lower resolution.
J2K_SYNTAXES = ("1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91")
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"


def decode_reduced(ds: Dataset, min_side: int) -> np.ndarray | None:
    """The stored values of a single-frame image decoded at a reduced resolution, or None.

    Why: a 2k JPEG 2000 lossless radiograph costs ~0.4 s of CPU to decode in full, and the
    screener then shrinks it to the model's 224-512 px. JPEG 2000 holds the image at every
    wavelet level (Pillow's ``reduce`` stops the inverse transform ``r`` levels early, each
    halving the sides) and baseline JPEG can be decoded at 1/2, 1/4 or 1/8 scale by DCT scaling
    (Pillow's ``draft``); either way the long side stays >= ``min_side``. The values are not
    those of a full decode followed by a resize (a wavelet low-pass resp. a scaled IDCT, and
    libjpeg-turbo rather than libjpeg for JPEG), so this is only for the screener's opt-in
    ``--fast-decode``; the viewer and the default screener never call it.

    None (decode as usual) unless: (0002,0010) is JPEG 2000 or baseline JPEG, one frame, one
    sample, MONOCHROME1/2, unsigned, the codestream's precision equals (0028,0101) Bits Stored,
    and some reduction keeps the long side >= ``min_side``. Any error of the reduced decode also
    gives None: the caller's exact decode then reports the file's real problem, if any.
    """
    ts = str(ds.file_meta.get("TransferSyntaxUID", "")) if hasattr(ds, "file_meta") else ""
    if ts not in J2K_SYNTAXES and ts != JPEG_BASELINE:
        return None
    validate_pixel_header(ds, getattr(ds, "filename", None))  # the exact decode's checks, raised
    check_frame_complete(ds, _source(ds, getattr(ds, "filename", None)))
    try:
        if (_number_of_frames(ds) != 1 or int(ds.get("SamplesPerPixel", 1) or 1) != 1
                or not is_monochrome(ds) or int(ds.get("PixelRepresentation", 0) or 0) != 0
                or "PixelData" not in ds):
            return None
        rows, cols, bits = int(ds.Rows), int(ds.Columns), int(ds.get("BitsStored", 0) or 0)
        from pydicom.encaps import generate_frames

        frame = next(generate_frames(ds.PixelData, number_of_frames=1))
        if ts == JPEG_BASELINE:
            return _jpeg_draft(frame, rows, cols, bits, min_side)
        return _j2k_reduced(frame, rows, cols, bits, min_side)
    except Exception:  # noqa: BLE001 - the exact decode decides what is wrong with this file
        return None


def _steps(long_side: int, min_side: int, factors: Sequence[int]) -> int:
    """The largest factor in ``factors`` that keeps ceil(long_side / factor) >= min_side (or 1)."""
    ok = [f for f in factors if -(-long_side // f) >= min_side]
    return max(ok) if ok else 1


def _j2k_header(code: bytes) -> tuple[int, bool, int] | None:
    """(precision, signed, decomposition levels) from a J2K codestream's SIZ and COD markers."""
    if code[:4] != b"\xff\x4f\xff\x51":
        return None
    pos, prec, signed, levels = 2, None, False, None
    while pos + 4 <= len(code) and (prec is None or levels is None):
        marker, length = struct.unpack_from(">HH", code, pos)
        if marker == 0xFF51:  # SIZ: 36 bytes of sizes, then Ssiz of the first component
            ssiz = code[pos + 2 + 36 + 2]
            prec, signed = (ssiz & 0x7F) + 1, bool(ssiz & 0x80)
        elif marker == 0xFF52:  # COD: Scod, SGcod (4 bytes), then the number of levels
            levels = code[pos + 2 + 2 + 1 + 4]
        elif marker == 0xFF90:  # first tile part: the main header is over
            break
        pos += 2 + length
    if prec is None or levels is None:
        return None
    return prec, signed, levels


def _j2k_reduced(code: bytes, rows: int, cols: int, bits: int, min_side: int) -> np.ndarray | None:
    import io

    from PIL import Image

    head = _j2k_header(code)
    if head is None:
        return None
    prec, signed, levels = head
    if signed or prec != bits or prec > 16:
        return None
    # Pillow (13.0) fails the decode ("broken data stream") when a side leaves a remainder
    # below half the factor (e.g. 1637 px at 1/4): its reduced size and OpenJPEG's disagree.
    # Such factors are skipped for the next smaller one rather than paid for and thrown away.
    factors = [1 << r for r in range(levels + 1)
               if all(n % (1 << r) == 0 or 2 * (n % (1 << r)) >= (1 << r) for n in (rows, cols))]
    factor = _steps(max(rows, cols), min_side, factors)
    if factor == 1:
        return None
    r = factor.bit_length() - 1
    with Image.open(io.BytesIO(code), formats=["JPEG2000"]) as im:
        im.reduce = r  # Jpeg2KImageFile: decode r resolution levels down
        im.load()
        arr = np.asarray(im)
    if arr.shape != (-(-rows // factor), -(-cols // factor)):
        return None
    shift = (16 if arr.dtype == np.uint16 else 8) - prec  # Pillow scales samples to its mode
    if shift < 0 or arr.dtype not in (np.uint8, np.uint16):
        return None
    return arr >> shift if shift else arr


def _jpeg_draft(code: bytes, rows: int, cols: int, bits: int, min_side: int) -> np.ndarray | None:
    import io

    from PIL import Image

    if bits != 8:
        return None
    factor = _steps(max(rows, cols), min_side, (1, 2, 4, 8))
    if factor == 1:
        return None
    with Image.open(io.BytesIO(code), formats=["JPEG"]) as im:
        if im.mode != "L" or im.size != (cols, rows):
            return None
        im.draft("L", (-(-cols // factor), -(-rows // factor)))
        im.load()
        arr = np.asarray(im)
    return arr if arr.dtype == np.uint8 and arr.ndim == 2 else None


def number_of_frames(ds: Dataset) -> int:
    """(0028,0008) Number of Frames, 1 when absent or unreadable."""
    return _number_of_frames(ds)


def _number_of_frames(ds: Dataset) -> int:
    try:
        return max(1, int(ds.get("NumberOfFrames", 1) or 1))
    except (TypeError, ValueError):
        return 1


def _palette_bits(ds: Dataset) -> int:
    desc = ds.get("RedPaletteColorLookupTableDescriptor")
    try:
        return int(desc[2])
    except (TypeError, IndexError, ValueError):
        return 16


def _luminance(rgb: np.ndarray, bits: int) -> np.ndarray:
    """BT.601 luma of ``rgb`` (..., 3), rescaled from ``bits`` to 8 bits when bits is 16.

    Palette LUTs are 16-bit by the standard; scaling them to 0..255 keeps palette and RGB images
    on the same stored scale as ordinary 8-bit colour.
    """
    gray = luma(rgb)
    if bits == 16:
        gray *= np.float32(255.0 / 65535.0)
    return gray


# --------------------------------------------------------------------------------------------
# Multi-frame functional groups
# --------------------------------------------------------------------------------------------

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


# --------------------------------------------------------------------------------------------
# Modality LUT
# --------------------------------------------------------------------------------------------


def _lut_table(item: Dataset, ds: Dataset) -> tuple[np.ndarray, int, int, int]:
    """Entries, first mapped value, bits and count of an (0028,3000)/(0028,3010) item.

    (0028,3002) LUT Descriptor and (0028,3006) LUT Data, whose VR is 'US or OW': OW arrives as
    raw bytes, and 8-bit OW LUTs may pack two entries per word, so both forms are unpacked here.
    A count of 0 means 65536 (PS3.3 C.11.1.1.1).
    """
    desc = [int(v) for v in item.LUTDescriptor]
    if len(desc) != 3:
        raise ValueError(f"LUT Descriptor must have 3 values, got {desc}")
    n, first, bits = desc
    n = n or 65536
    data = item.LUTData
    if isinstance(data, bytes | bytearray):
        little = ds.original_encoding[1] is not False
        if bits == 8 and len(data) == n:
            table = np.frombuffer(data, dtype=np.uint8).astype(np.int64)
        else:
            table = np.frombuffer(data, dtype="<u2" if little else ">u2").astype(np.int64)
    else:
        seq = data if isinstance(data, Sequence) else [data]
        table = np.asarray(seq, dtype=np.int64)
    if table.size < n:
        raise ValueError(f"LUT Data has {table.size} entries, descriptor says {n}")
    return table[:n], first, bits, n


def _lookup(arr: np.ndarray, table: np.ndarray, first: int) -> np.ndarray:
    idx = np.rint(np.asarray(arr, dtype=np.float64)) - first
    idx = np.clip(idx, 0, table.size - 1).astype(np.intp)
    return table[idx]


def apply_modality_lut(arr: np.ndarray, ds: Dataset) -> np.ndarray:
    """Stored values -> modality values (HU for CT, detector units for CR/DX), as float32.

    Reads (0028,3000) Modality LUT Sequence (first item), else (0028,1053) Rescale Slope and
    (0028,1052) Rescale Intercept; identity when neither is present or the image is not
    monochrome (colour pixels carry no modality values). A LUT wins over rescale because the
    standard forbids both, and files that have both were written by tools that add a default
    1/0 rescale. Invalid slope values (0, NaN) are ignored rather than blanking the image.
    """
    if not is_monochrome(ds):
        return np.asarray(arr, dtype=np.float32)
    seq = ds.get("ModalityLUTSequence")
    if seq:
        try:
            table, first, _bits, _n = _lut_table(seq[0], ds)
        except Exception as e:
            raise DicomError(_source(ds, None), f"invalid Modality LUT Sequence: {e}") from e
        return _lookup(arr, table, first).astype(np.float32)
    slope = _float_or(ds.get("RescaleSlope"), 1.0)
    intercept = _float_or(ds.get("RescaleIntercept"), 0.0)
    if slope == 0.0:
        slope = 1.0
    out = np.asarray(arr, dtype=np.float64)
    if slope != 1.0 or intercept != 0.0:
        out = out * slope + intercept
    return out.astype(np.float32)


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


# --------------------------------------------------------------------------------------------
# VOI LUT
# --------------------------------------------------------------------------------------------


def _file_windows(ds: Dataset) -> list[tuple[float, float, str]]:
    """Valid (center, width, explanation) triples from (0028,1050/1051/1055).

    Pairs beyond the shorter of center/width, and non-finite or non-positive widths, are dropped:
    a broken window must fall back to the next VOI source, not blank the image.
    """
    centers = _floats(ds.get("WindowCenter"))
    widths = _floats(ds.get("WindowWidth"))
    expl = ds.get("WindowCenterWidthExplanation")
    if expl is None:
        names: list[str] = []
    elif isinstance(expl, str):
        names = [expl]
    else:
        names = [str(x) for x in expl]
    out = []
    for i, (c, w) in enumerate(zip(centers, widths, strict=False)):
        if math.isfinite(c) and math.isfinite(w) and w > 0:
            out.append((c, w, names[i].strip() if i < len(names) else ""))
    return out


def voi_count(ds: Dataset) -> int:
    """Number of VOI transforms ``index`` can select: file windows first, then VOI LUT items."""
    return len(_file_windows(ds)) + len(ds.get("VOILUTSequence") or [])


def _voi_function(ds: Dataset) -> str:
    fn = str(ds.get("VOILUTFunction") or "LINEAR").strip().upper()
    return fn if fn in ("LINEAR", "LINEAR_EXACT", "SIGMOID") else "LINEAR"


def _window(x: np.ndarray, center: float, width: float, function: str) -> np.ndarray:
    """PS3.3 C.11.2.1.2 / C.11.2.1.3 with output range [0, 1]."""
    x = np.asarray(x, dtype=np.float64)
    if function == "SIGMOID":
        return 1.0 / (1.0 + np.exp(np.clip(-4.0 * (x - center) / width, -700, 700)))
    if function == "LINEAR_EXACT":
        y = (x - center) / width + 0.5
        y = np.where(x <= center - width / 2.0, 0.0, y)
        return np.where(x > center + width / 2.0, 1.0, y)
    if function == "LINEAR" and width < 1.0:
        # C.11.2.1.2.1 requires Window Width >= 1 for LINEAR; a writer whose modality values are
        # fractions (Rescale Slope 5.6e-6, Window Width 0.21: a real file) meant a window in those
        # units, which is LINEAR_EXACT. Read as LINEAR it became a hard threshold: one white image.
        return _window(x, center, width, "LINEAR_EXACT")
    # LINEAR: width 1 is a threshold at center - 0.5 (C.11.2.1.2.1)
    lo = center - 0.5 - (width - 1.0) / 2.0
    hi = center - 0.5 + (width - 1.0) / 2.0
    if width <= 1.0:
        return np.where(x <= lo, 0.0, 1.0)
    y = (x - (center - 0.5)) / (width - 1.0) + 0.5
    y = np.where(x <= lo, 0.0, y)
    return np.where(x > hi, 1.0, y)


def _full_range(arr: np.ndarray, data_range: tuple[float, float] | None = None) -> np.ndarray:
    x = np.asarray(arr, dtype=np.float64)
    if data_range is not None:
        lo, hi = data_range
    else:
        finite = np.isfinite(x)
        if not finite.any():
            return np.zeros(x.shape, dtype=np.float64)
        lo, hi = float(x[finite].min()), float(x[finite].max())
    if hi <= lo:
        return np.zeros(x.shape, dtype=np.float64)
    return (x - lo) / (hi - lo)


def apply_voi_lut(
    arr: np.ndarray,
    ds: Dataset,
    index: int = 0,
    *,
    window: Window | None = None,
    data_range: tuple[float, float] | None = None,
) -> np.ndarray:
    """Modality values -> float32 in [0, 1] (0 = lowest display value before presentation).

    Reads (0028,1050) Window Center, (0028,1051) Window Width, (0028,1056) VOI LUT Function
    (LINEAR, LINEAR_EXACT, SIGMOID; unknown values are treated as LINEAR) and (0028,3010) VOI LUT
    Sequence. ``index`` selects among the file's VOI transforms, windows first then LUT items
    (see :func:`voi_count`). ``window=(center, width)`` overrides the file's windows but keeps
    its VOI LUT Function, since the function says how this modality's windows are meant.

    Without any VOI the full range of *this* data (min..max) is used, never the nominal bit
    range: a 15-bit detector rarely uses all 15 bits and the image would look washed out.
    Colour-derived (non-monochrome) data has no VOI and is scaled by its 8-bit nominal range,
    because its values already are display values.

    ``data_range`` (min, max of the finite modality values of the *image*) replaces the
    min..max of ``arr`` in that full-range case: :func:`render_frame` passes a table of every
    stored value through here instead of the image, and the table's range is not the image's.
    """
    if window is not None:
        center, width = float(window[0]), float(window[1])
        if not (math.isfinite(center) and math.isfinite(width) and width > 0):
            raise ValueError(f"window must be finite with width > 0, got {window!r}")
        out = _window(arr, center, width, _voi_function(ds))
        return np.clip(out, 0.0, 1.0).astype(np.float32)
    if not is_monochrome(ds):
        bits = 8 if photometric(ds) == "PALETTE COLOR" else int(ds.get("BitsStored", 8) or 8)
        top = float(2**bits - 1)
        return np.clip(np.asarray(arr, dtype=np.float64) / top, 0.0, 1.0).astype(np.float32)
    windows = _file_windows(ds)
    luts = list(ds.get("VOILUTSequence") or [])
    total = len(windows) + len(luts)
    if total == 0:
        return _full_range(arr, data_range).astype(np.float32)
    if not 0 <= index < total:
        raise IndexError(f"VOI index {index} out of range: this image has {total} VOI transforms")
    if index < len(windows):
        c, w, _ = windows[index]
        out = _window(arr, c, w, _voi_function(ds))
    else:
        item = luts[index - len(windows)]
        try:
            table, first, bits, _n = _lut_table(item, ds)
        except Exception as e:
            raise DicomError(_source(ds, None), f"invalid VOI LUT Sequence item: {e}") from e
        # Trust the descriptor's bit depth unless the data exceeds it (a known writer bug).
        top = max(float(2**bits - 1), float(table.max()), 1.0)
        out = _lookup(arr, table, first) / top
    return np.clip(out, 0.0, 1.0).astype(np.float32)


# --------------------------------------------------------------------------------------------
# Presentation
# --------------------------------------------------------------------------------------------


def needs_inversion(ds: Dataset) -> bool:
    """Whether VOI output must be inverted to make high attenuation bright.

    Reads (0028,0004) Photometric Interpretation and (2050,0020) Presentation LUT Shape.
    MONOCHROME1 inverts. INVERSE also inverts, but *not twice*: the DX/MG/IO IODs require INVERSE
    exactly when the image is MONOCHROME1 (PS3.3 C.8.11.1.1.x), so there it restates the same
    inversion; treating the two as independent (XOR) would show those images negative.
    IDENTITY never undoes MONOCHROME1: the result must be bone bright for every file.
    """
    shape = str(ds.get("PresentationLUTShape") or "").strip().upper()
    return photometric(ds) == "MONOCHROME1" or shape == "INVERSE"


def apply_presentation(arr01: np.ndarray, ds: Dataset) -> np.ndarray:
    """VOI output in [0, 1] -> display values in [0, 1], high attenuation bright.

    Reads (0028,0004) Photometric Interpretation and (2050,0020) Presentation LUT Shape (see
    :func:`needs_inversion`). Inversion comes after VOI, as in the standard pipeline, so that a
    window's center/width keep meaning modality values for MONOCHROME1 files too.
    """
    out = np.asarray(arr01, dtype=np.float32)
    if is_monochrome(ds) and needs_inversion(ds):
        out = np.float32(1.0) - out
    return out


# --------------------------------------------------------------------------------------------
# Presets, geometry, the whole chain
# --------------------------------------------------------------------------------------------


def _is_hounsfield(ds: Dataset) -> bool:
    rescale_type = str(ds.get("RescaleType") or "").strip().upper()
    return rescale_type == "HU" or str(ds.get("Modality") or "").upper() == "CT"


def _nominal_modality_range(ds: Dataset) -> tuple[float, float]:
    """Range of modality values without decoding: (0028,0106/0107) or the stored bit range."""
    smallest = _float_or(ds.get("SmallestImagePixelValue"), math.nan)
    largest = _float_or(ds.get("LargestImagePixelValue"), math.nan)
    if not (math.isfinite(smallest) and math.isfinite(largest) and largest > smallest):
        bits = int(ds.get("BitsStored", 16) or 16)
        signed = int(ds.get("PixelRepresentation", 0) or 0) == 1
        smallest = float(-(2 ** (bits - 1))) if signed else 0.0
        largest = float(2 ** (bits - 1) - 1) if signed else float(2**bits - 1)
    lut = apply_modality_lut(np.array([smallest, largest]), ds)
    return float(lut.min()), float(lut.max())


def window_presets(
    ds: Dataset, modality_pixels: np.ndarray | None = None
) -> list[tuple[str, float, float]]:
    """Windows the viewer offers, as (name, center, width) in modality units.

    Reads (0028,1050/1051/1055), (0008,0060) Modality, (0028,1054) Rescale Type, the rescale /
    Modality LUT tags and (0028,0004). In order: the file's own windows (named by their
    explanation, else "File window N"), "Full range" (of ``modality_pixels`` when given, else of
    the nominal stored range), then "Bone" and "Soft tissue".

    Bone W2500/L480 and soft tissue W400/L40 are Hounsfield presets; they are used as such when
    the modality values are HU (CT, or Rescale Type HU). CR/DX values are detector units with no
    fixed scale (RG1 spans 0..26512, RG2 0..1023), where W2500/L480 would show a white or
    featureless image, so for those the two presets are placed on the data range instead:
    "Bone" covers the most attenuating 60 % (center at 70 % of the attenuation axis), "Soft
    tissue" a 50 %-wide window at 40 %. The attenuation axis runs low->high values for
    MONOCHROME2 and high->low for MONOCHROME1.
    """
    presets: list[tuple[str, float, float]] = []
    for i, (c, w, name) in enumerate(_file_windows(ds)):
        presets.append((name or f"File window {i + 1}", c, w))
    if modality_pixels is not None and np.isfinite(modality_pixels).any():
        finite = np.asarray(modality_pixels)[np.isfinite(modality_pixels)]
        lo, hi = float(finite.min()), float(finite.max())
    else:
        lo, hi = _nominal_modality_range(ds)
    span = max(hi - lo, 1.0)
    # LINEAR maps [c - 0.5 - (w-1)/2, c - 0.5 + (w-1)/2]: w = span + 1, c = lo + 0.5 + span/2.
    presets.append(("Full range", lo + 0.5 + span / 2.0, span + 1.0))
    if _is_hounsfield(ds):
        presets.append(("Bone", BONE_WINDOW_HU[0], BONE_WINDOW_HU[1]))
        presets.append(("Soft tissue", SOFT_TISSUE_WINDOW_HU[0], SOFT_TISSUE_WINDOW_HU[1]))
    else:
        mono1 = photometric(ds) == "MONOCHROME1"

        def at(t: float) -> float:
            return hi - t * span if mono1 else lo + t * span

        presets.append(("Bone", at(0.70), 0.60 * span))
        presets.append(("Soft tissue", at(0.40), 0.50 * span))
    return presets


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


def to_display(
    ds: Dataset, frame: int = 0, *, window: Window | None = None, voi_index: int = 0
) -> np.ndarray:
    """The whole chain for one frame: float32 (rows, columns) in [0, 1], bone bright."""
    frames = decode_pixels(ds)
    if not 0 <= frame < frames.shape[0]:
        raise IndexError(f"frame {frame} out of range: {_source(ds, None)} has {frames.shape[0]}")
    fds = frame_dataset(ds, frame)
    return render_frame(frames[frame], fds, voi_index, window=window)[1]


#: Largest table :func:`render_frame` builds (every value of a 16-bit type).
_MAX_TABLE = 1 << 16


def render_frame(
    stored: np.ndarray,
    ds: Dataset,
    voi_index: int = 0,
    *,
    window: Window | None = None,
    need_modality: bool = True,
) -> tuple[np.ndarray | None, np.ndarray]:
    """(modality values, display values) of one frame, both float32: the chain
    :func:`apply_modality_lut` -> :func:`apply_voi_lut` -> :func:`apply_presentation`.

    Why: run element by element in float64, that chain costs more than decoding an
    uncompressed 2k radiograph. Every step is a function of the stored value alone (the
    full-range VOI excepted, whose min..max is taken over the image and passed in), and 8-16-bit
    integer frames hold far fewer distinct values than pixels, so the chain is run once on a
    table of every stored value between the frame's minimum and maximum and the frame is
    indexed into it. The values are those of the element-wise chain, bit for bit
    (tests/models/test_decode_speed_regression.py). Colour-derived float frames, 32-bit
    integers, tiny images and tables that come out non-finite take the element-wise path.
    ``need_modality=False`` (the screener, which never re-windows) skips gathering the
    modality image and returns None in its place.
    """
    a = np.asarray(stored)
    table = None
    if a.dtype.kind in "ui" and a.dtype.itemsize <= 2 and a.ndim == 2 and a.size:
        lo, hi = int(a.min()), int(a.max())
        base = 0 if a.dtype.kind == "u" and hi < _MAX_TABLE // 2 else lo
        if hi - base + 1 <= min(_MAX_TABLE, a.size):
            table = (np.arange(base, hi + 1, dtype=np.int64), base, lo, hi)
    mod_table = None if table is None else apply_modality_lut(table[0], ds)
    if table is None or mod_table is None or not np.isfinite(mod_table).all():
        modality = apply_modality_lut(a, ds)
        voi = apply_voi_lut(modality, ds, voi_index, window=window)
        return modality, apply_presentation(voi, ds)
    _values, base, lo, hi = table
    idx = a if base == 0 else (a.astype(np.int32) - np.int32(base))
    modality = mod_table[idx] if need_modality else None
    # The full-range VOI needs the image's own modality range: the ends of a monotonic table
    # (the stored minimum and maximum are both present), else the values actually present.
    m0, m1 = float(mod_table[lo - base]), float(mod_table[hi - base])
    steps = np.diff(mod_table[lo - base : hi - base + 1])
    if (steps >= 0).all() or (steps <= 0).all():
        data_range = (min(m0, m1), max(m0, m1))
    else:
        present = mod_table[np.bincount(idx.ravel(), minlength=mod_table.size) > 0]
        data_range = (float(present.min()), float(present.max()))
    voi = apply_voi_lut(mod_table, ds, voi_index, window=window, data_range=data_range)
    return modality, apply_presentation(voi, ds)[idx]


# --------------------------------------------------------------------------------------------
# Header summary
# --------------------------------------------------------------------------------------------


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
