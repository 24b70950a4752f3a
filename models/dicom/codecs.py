"""Pixel decoding: the exact decode, the reduced-resolution one (``--fast-decode``, the viewer's
preview) and the checks on compressed frames both share.

Monochrome data keeps its stored integer type (the Modality LUT indexes by stored value); colour
becomes BT.601 luminance. The reduced decode (:func:`decode_reduced`, rendered by
:func:`render_reduced`) uses the JPEG 2000 resolution levels and baseline JPEG DCT scaling the
codestream already holds; both of its callers go through :func:`render_reduced`.
"""

from __future__ import annotations

import struct
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
from pydicom.dataset import Dataset

from models.dicom.header import (
    COLOUR,
    Window,
    _number_of_frames,
    _source,
    frame_dataset,
    is_monochrome,
    photometric,
    validate_pixel_header,
)
from models.dicom.lut import render_frame
from models.errors import DicomError, TruncatedPixelDataError, UnsupportedPhotometricError
from models.preprocess import luma
from models.reduction import CODECS

if TYPE_CHECKING:
    from PIL import Image


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


def decode_reduced(ds: Dataset, min_side: int, codecs: Collection[str] = CODECS) -> np.ndarray | None:
    """The stored values of a single-frame image decoded at a reduced resolution, or None.

    Why: a 2k JPEG 2000 lossless radiograph costs ~0.4 s of CPU to decode in full, and the
    screener then shrinks it to the model's 224-512 px. JPEG 2000 holds the image at every
    wavelet level (Pillow's ``reduce`` stops the inverse transform ``r`` levels early, each
    halving the sides) and baseline JPEG can be decoded at 1/2, 1/4 or 1/8 scale by DCT scaling
    (Pillow's ``draft``); either way the long side stays >= ``min_side``. The values are not
    those of a full decode followed by a resize (a wavelet low-pass resp. a scaled IDCT, and
    libjpeg-turbo rather than libjpeg for JPEG), so this is only for the screener's opt-in
    ``--fast-decode`` and the viewer's unscored preview, both through :func:`render_reduced`;
    the default screener never calls it.

    None (decode as usual) unless: (0002,0010) is JPEG 2000 or baseline JPEG, one frame, one
    sample, MONOCHROME1/2, unsigned, the codestream's precision equals (0028,0101) Bits Stored,
    and some reduction keeps the long side >= ``min_side``. Any error of the reduced decode also
    gives None: the caller's exact decode then reports the file's real problem, if any.
    ``codecs`` ("jpeg", "jpeg2000": :data:`models.reduction.CODECS`) limits the reduction to
    those a model's card validated; a file of another codec decodes in full.
    """
    ts = str(ds.file_meta.get("TransferSyntaxUID", "")) if hasattr(ds, "file_meta") else ""
    if not ((ts in J2K_SYNTAXES and "jpeg2000" in codecs) or (ts == JPEG_BASELINE and "jpeg" in codecs)):
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
    from PIL.Jpeg2KImagePlugin import Jpeg2KImageFile

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
        if not isinstance(im, Jpeg2KImageFile):  # what formats=["JPEG2000"] opens; narrows im
            return None
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

    if bits != 8 or _steps(max(rows, cols), min_side, JPEG_SCALES) == 1:
        return None
    with Image.open(io.BytesIO(code), formats=["JPEG"]) as im:
        if im.mode != "L" or im.size != (cols, rows):
            return None
        draft_jpeg(im, min_side)
        im.load()
        arr = np.asarray(im)
    return arr if arr.dtype == np.uint8 and arr.ndim == 2 else None


#: The scalings libjpeg's DCT offers for baseline JPEG (Pillow's ``draft``).
JPEG_SCALES = (1, 2, 4, 8)


def draft_jpeg(im: Image.Image, min_side: int) -> int:
    """Ask libjpeg for the 1/2, 1/4 or 1/8 scale decode of an opened, not yet loaded JPEG that
    keeps its long side >= ``min_side``; returns the factor (1: full size, nothing asked).

    Why here: baseline JPEG inside DICOM (:func:`decode_reduced`) and plain ``.jpg`` files
    (:mod:`models.imageio`) are reduced by the same rule under ``--fast-decode``.
    """
    w, h = im.size
    factor = _steps(max(w, h), min_side, JPEG_SCALES)
    if factor > 1:
        im.draft(im.mode, (-(-w // factor), -(-h // factor)))
    return factor


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


def to_display(
    ds: Dataset, frame: int = 0, *, window: Window | None = None, voi_index: int = 0
) -> np.ndarray:
    """The whole chain for one frame: float32 (rows, columns) in [0, 1], bone bright."""
    frames = decode_pixels(ds)
    if not 0 <= frame < frames.shape[0]:
        raise IndexError(f"frame {frame} out of range: {_source(ds, None)} has {frames.shape[0]}")
    fds = frame_dataset(ds, frame)
    return render_frame(frames[frame], fds, voi_index, window=window)[1]


class ReducedFrame(NamedTuple):
    """Frame 0 decoded at a reduced resolution and rendered (:func:`render_reduced`)."""

    stored: np.ndarray
    modality: np.ndarray | None  # None when asked for display values only
    pixels: np.ndarray


def render_reduced(ds: Dataset, min_side: int, *, need_modality: bool = True,
                   codecs: Collection[str] = CODECS) -> ReducedFrame | None:
    """Frame 0 of ``ds`` decoded at a reduced resolution (:func:`decode_reduced`) and run through
    the display chain (:func:`render_frame`); None when no reduction applies.

    Why one function: the screener's ``--fast-decode`` (:mod:`models.imageio`) and the viewer's
    quick preview (``desktop.viewer.studies``) each assembled decode -> frame header -> chain
    themselves. ``need_modality=False`` (the screener, which never re-windows) skips the
    modality image. A result at full size counts as no reduction. Raises what the exact
    decode's header checks raise (:func:`validate_pixel_header`, :func:`check_frame_complete`).
    """
    stored = decode_reduced(ds, min_side, codecs)
    if stored is None or stored.shape[-2:] == (int(ds.Rows), int(ds.Columns)):
        return None
    modality, pixels = render_frame(stored, frame_dataset(ds, 0), need_modality=need_modality)
    return ReducedFrame(stored, modality, pixels)
