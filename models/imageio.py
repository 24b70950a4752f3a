"""One entry point that turns any radiograph file into a display-ready gray image.

Files reach the screener from PACS exports, USB sticks and Kaggle zips: names lie (PNG bytes
called ``.jpg``, DICOM files with no extension at all), so the kind is decided by content. Every
failure becomes an :class:`~models.errors.ImageDecodeError` subclass naming the file, so a batch
run can report the file and move on instead of dying on a pydicom or Pillow traceback.

The returned pixels are float32 in [0, 1] with bone bright, the same convention for DICOM and
plain images. Plain images are assumed to be already rendered for display (bone bright); nothing
in a PNG/JPEG says otherwise.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError
from pydicom.dataset import Dataset

from models import dicom
from models.dicom import DicomInfo, Window
from models.errors import DicomError, ImageDecodeError, ImageTooLargeError, UnsupportedImageError
from models.preprocess import luma
from models.reduction import CODECS
from models.scope import chroma

__all__ = [
    "IGNORED_NAMES",
    "LoadedImage",
    "is_ignored_file",
    "load_image",
    "load_pixels",
    "decode_for_model",
    "rewindow_source",
    "sniff_kind",
]

#: Files that operating systems and sync tools drop next to images (compared case-insensitively).
IGNORED_NAMES = frozenset({".ds_store", "thumbs.db", "ehthumbs.db", "desktop.ini"})

# Pillow format names per sniffed kind: restricting Image.open to the sniffed format keeps
# Pillow from trying its ~40 other parsers on a file we already classified.
_PIL_FORMATS = {
    "png": "PNG",
    "jpeg": "JPEG",
    "gif": "GIF",
    "bmp": "BMP",
    "tiff": "TIFF",
    "webp": "WEBP",
}
_BMP_HEADER_SIZES = frozenset({12, 16, 40, 52, 56, 64, 108, 124})


def sniff_kind(path: str | Path) -> str | None:
    """The file's real kind from its first bytes, or None when it is no image we handle.

    Returns "dicom", "png", "jpeg", "gif", "bmp", "tiff" or "webp". An unreadable path (missing,
    a directory, no permission) is also None: callers that need the reason call
    :func:`load_image`.
    """
    try:
        with Path(path).open("rb") as fh:
            head = fh.read(512)
    except OSError:
        return None
    return _kind_of(head)


def _kind_of(head: bytes) -> str | None:
    # DICM first: a Part 10 preamble may legally hold a TIFF header (dual-format files, and
    # pydicom's own CT_small.dcm starts with "II*\0").
    if len(head) >= 132 and head[128:132] == b"DICM":
        return "dicom"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[:2] == b"BM" and len(head) >= 18:
        if int.from_bytes(head[14:18], "little") in _BMP_HEADER_SIZES:
            return "bmp"
    if dicom.looks_like_dicom(head):
        return "dicom"
    return None


def is_ignored_file(path: str | Path) -> bool:
    """Whether a folder walk should skip this file silently instead of reporting it.

    Hidden files (name starting with "."; covers ``.DS_Store`` and macOS ``._`` AppleDouble
    twins, which look like images by name but are not), ``Thumbs.db``, ``desktop.ini`` and the
    ``name:Zone.Identifier`` streams Windows leaves behind when files are copied off NTFS. Only
    the file name is judged: the folder it sits in is the caller's choice.
    """
    name = Path(path).name
    if not name:
        return False
    lower = name.lower()
    return name.startswith(".") or lower in IGNORED_NAMES or lower.endswith(":zone.identifier")


@dataclass
class LoadedImage:
    """A decoded image ready for display and for the model's preprocessing.

    ``pixels`` is float32 (H, W) in [0, 1], bone bright. For DICOM, ``modality_pixels`` holds the
    frame's modality values (after the Modality LUT, before VOI) and ``dataset`` the header, so
    the viewer can re-window with :meth:`display` without decoding again; both are None for plain
    images. ``stored`` keeps the frame's stored values too (DICOM, integers of up to 16 bits):
    re-windowing then runs the chain once on a table of stored values and indexes the image
    into it, as decoding does (:func:`models.dicom.render_frame`), instead of windowing 4 M
    float pixels element by element on every mouse move of a window/level drag. ``info``
    carries patient identifiers: see :class:`~models.dicom.DicomInfo` before logging anything
    from it.
    """

    pixels: np.ndarray
    kind: str
    path: Path
    info: DicomInfo | None = None
    frames: int = 1
    frame: int = 0
    modality_pixels: np.ndarray | None = field(default=None, repr=False)
    dataset: Dataset | None = field(default=None, repr=False)
    pixel_spacing: tuple[float, float] | None = None
    stored: np.ndarray | None = field(default=None, repr=False)
    #: mean chroma of a plain colour file before it became gray (:func:`models.scope.chroma`);
    #: 0 for gray files and DICOM (whose colour the header's photometric already states)
    colour: float = 0.0
    #: ``pixels`` come from a reduced-resolution decode (``load_image(..., min_side=...)``):
    #: smaller than the file's image, and slightly different from a full decode
    reduced: bool = False

    def display(self, window: Window | None = None, voi_index: int = 0) -> np.ndarray:
        """Re-render with another window, float32 [0, 1] bone bright.

        DICOM: ``window`` is (center, width) in modality units, as from
        :func:`models.dicom.window_presets`; None re-applies the file's VOI ``voi_index``.
        Plain images: ``window`` is (center, width) on the [0, 1] scale of ``pixels``.
        """
        if self.modality_pixels is not None and self.dataset is not None:
            fds = dicom.frame_dataset(self.dataset, self.frame)
            if self.stored is not None:
                return dicom.render_frame(self.stored, fds, voi_index, window=window,
                                          need_modality=False)[1]
            voi = dicom.apply_voi_lut(self.modality_pixels, fds, voi_index, window=window)
            return dicom.apply_presentation(voi, fds)
        if window is None:
            return self.pixels
        # Plain pixels are continuous in [0, 1]: LINEAR's "width - 1" assumes integer steps, so
        # use LINEAR_EXACT; no Photometric Interpretation means no inversion.
        fake = Dataset()
        fake.VOILUTFunction = "LINEAR_EXACT"
        return dicom.apply_voi_lut(self.pixels, fake, window=window)

    def window_presets(self) -> list[tuple[str, float, float]]:
        """Presets for this image (DICOM only; empty for plain images)."""
        if self.dataset is None:
            return []
        fds = dicom.frame_dataset(self.dataset, self.frame)
        lo_hi = self.modality_range
        return dicom.window_presets(fds, None if lo_hi is None else np.array(lo_hi))

    @functools.cached_property
    def modality_range(self) -> tuple[float, float] | None:
        """(min, max) of the finite modality values, None without any (or for plain images).

        Cached: a window drag asks for it on every mouse move (it scales the drag), and a
        min/max over a 2k x 2k image costs milliseconds each time.
        """
        m = self.modality_pixels
        if m is None:
            return None
        finite = np.isfinite(m)
        if finite.all():
            return float(m.min()), float(m.max())
        if not finite.any():
            return None
        return float(m[finite].min()), float(m[finite].max())


def load_image(path: str | Path, *, frame: int = 0, min_side: int | None = None,
               codecs: Collection[str] = CODECS) -> LoadedImage:
    """Decode ``path`` by content to a :class:`LoadedImage`.

    Raises :class:`UnsupportedImageError` for files that are no image we handle,
    :class:`~models.errors.DicomError` subclasses for DICOM problems and
    :class:`ImageDecodeError` for unreadable or truncated plain images. ``frame`` selects a frame
    of multi-frame DICOM, GIF or TIFF; an out-of-range frame is a caller error (IndexError).

    ``min_side`` (the viewer, for a model whose card validated it): the reduced-resolution
    decode of :func:`decode_for_model`, with the same pixels, kept re-windowable for display
    (``reduced`` is set when a reduction applied; every other file decodes in full), for the
    ``codecs`` the card validated.
    """
    p, kind = _sniff_or_raise(path)
    if kind == "dicom":
        with _typed(p):
            reduced = (_load_dicom_reduced(p, min_side, codecs) if min_side is not None and frame == 0
                       else None)
            return reduced or _load_dicom(p, frame)
    return _load_plain(p, kind, frame, min_side=min_side, codecs=codecs)


def load_pixels(path: str | Path, *, frame: int = 0, min_side: int | None = None,
                codecs: Collection[str] = CODECS) -> np.ndarray:
    """Only the display pixels of ``path``: exactly ``load_image(path, frame=frame).pixels``.

    See :func:`decode_for_model`, which also returns the file's colour content.
    """
    return decode_for_model(path, frame=frame, min_side=min_side, codecs=codecs)[0]


def decode_for_model(path: str | Path, *, frame: int = 0, min_side: int | None = None,
                     codecs: Collection[str] = CODECS) -> tuple[np.ndarray, float]:
    """The display pixels of ``path`` and its :attr:`LoadedImage.colour` (what the scope check needs).

    Why: the batch screener needs nothing else, and for DICOM it skips building the modality
    image the viewer keeps for re-windowing (a full-size float32 gather), the header summary and
    the pixel spacing. Raises what :func:`load_image` raises.

    ``min_side`` (the screener's opt-in ``--fast-decode``; None everywhere else) lets JPEG 2000
    and baseline JPEG — DICOM or plain ``.jpg`` — decode at a reduced resolution whose long side
    is still >= ``min_side`` (:func:`models.dicom.decode_reduced`). Those pixels are smaller and
    slightly different from a full decode; every other file decodes exactly as without it.
    ``codecs`` ("jpeg", "jpeg2000") limits the reduction to the codecs a card validated
    (:func:`models.reduction.validated_reduction`).
    """
    p, kind = _sniff_or_raise(path)
    if kind != "dicom":
        im = _load_plain(p, kind, frame, min_side=min_side, codecs=codecs)
        return im.pixels, im.colour
    with _typed(p):
        return _decode_dicom_for_model(p, frame, min_side, codecs)


def _decode_dicom_for_model(p: Path, frame: int, min_side: int | None,
                            codecs: Collection[str]) -> tuple[np.ndarray, float]:
    if min_side is not None and frame == 0:
        ds = dicom.read_dataset(p)
        reduced = dicom.render_reduced(ds, int(min_side), need_modality=False, codecs=codecs)
        if reduced is not None:
            return _finite(p, reduced.pixels), 0.0
        stored = dicom.decode_pixels(ds, p, index=0)[0]
        fds = dicom.frame_dataset(ds, 0)
    else:
        _ds, stored, fds, _n = _decode_dicom(p, frame)
    _, pixels = dicom.render_frame(stored, fds, need_modality=False)
    return _finite(p, pixels), 0.0


@contextlib.contextmanager
def _typed(path: Path):
    """The read -> decode -> render chain of a DICOM file is one typed boundary: pydicom converts
    element values lazily, so a bad value raises (NotImplementedError, ValueError, ...) wherever
    it is first touched, not only in the guarded read and decode."""
    try:
        yield
    except (ImageDecodeError, IndexError):
        raise
    except MemoryError as e:
        raise DicomError(path, "ran out of memory decoding this file") from e
    except Exception as e:  # noqa: BLE001 - whatever a damaged header raises, typed and named
        raise DicomError(path, f"unreadable DICOM ({type(e).__name__}: {' '.join(str(e).split())})") from e


def _sniff_or_raise(path: str | Path) -> tuple[Path, str]:
    p = Path(path)
    try:
        with p.open("rb") as fh:
            head = fh.read(512)
    except OSError as e:
        raise ImageDecodeError(p, f"cannot open file ({e.strerror or e})") from e
    if not head:
        raise UnsupportedImageError(p, "file is empty")
    kind = _kind_of(head)
    if kind is None:
        raise UnsupportedImageError(
            p, f"not a DICOM or image file we can read (starts with {head[:8]!r})"
        )
    return p, kind


def _decode_dicom(path: Path, frame: int) -> tuple[Dataset, np.ndarray, Dataset, int]:
    """(header, the stored values of ``frame`` alone, its per-frame header, number of frames):
    only the frame that is shown or scored is decoded."""
    ds = dicom.read_dataset(path)
    stored = dicom.decode_pixels(ds, path, index=frame)[0]
    return ds, stored, dicom.frame_dataset(ds, frame), dicom.number_of_frames(ds)


def _finite(path: Path, pixels: np.ndarray) -> np.ndarray:
    if not np.isfinite(pixels).all():
        raise ImageDecodeError(path, "decoded pixels contain NaN or infinity")
    return np.ascontiguousarray(pixels, dtype=np.float32)


def _load_dicom(path: Path, frame: int) -> LoadedImage:
    ds, stored, fds, n_frames = _decode_dicom(path, frame)
    modality, pixels = dicom.render_frame(stored, fds)
    pixels = _finite(path, pixels)
    return LoadedImage(
        pixels=np.ascontiguousarray(pixels, dtype=np.float32),
        kind="dicom",
        path=path,
        info=dicom.dicom_info(ds),
        frames=n_frames,
        frame=frame,
        modality_pixels=np.ascontiguousarray(modality, dtype=np.float32),
        dataset=ds,
        pixel_spacing=dicom.pixel_spacing(ds),
        stored=rewindow_source(stored),
    )


def _load_dicom_reduced(path: Path, min_side: int, codecs: Collection[str]) -> LoadedImage | None:
    """Frame 0 at a reduced resolution (:func:`models.dicom.render_reduced`), or None: decode in
    full. No pixel spacing: it is the full image's, and would mislead a measurement."""
    ds = dicom.read_dataset(path)
    reduced = dicom.render_reduced(ds, int(min_side), codecs=codecs)
    if reduced is None or reduced.modality is None:
        return None
    return LoadedImage(pixels=_finite(path, reduced.pixels), kind="dicom", path=path,
                       info=dicom.dicom_info(ds), modality_pixels=np.ascontiguousarray(
                           reduced.modality, dtype=np.float32),
                       dataset=ds, stored=rewindow_source(reduced.stored), reduced=True)


def rewindow_source(stored: np.ndarray) -> np.ndarray | None:
    """The stored frame when :meth:`LoadedImage.display` can re-window it through a table
    (2-D integers of up to 16 bits), else None (it then windows the modality values)."""
    a = np.asarray(stored)
    if a.ndim == 2 and a.dtype.kind in "ui" and a.dtype.itemsize <= 2:
        return a
    return None


def _load_plain(path: Path, kind: str, frame: int, min_side: int | None = None,
                codecs: Collection[str] = CODECS) -> LoadedImage:
    try:
        # No warnings.catch_warnings() here: it is process-global and the screener decodes in
        # threads. DecompressionBombError (over 2x Pillow's pixel limit) is reported below.
        with Image.open(path, formats=[_PIL_FORMATS[kind]]) as im:
            n_frames = int(getattr(im, "n_frames", 1) or 1)
            if not 0 <= frame < n_frames:
                raise IndexError(f"frame {frame} out of range: {path} has {n_frames} frame(s)")
            if frame:
                im.seek(frame)
            _check_plain_budget(path, im)
            full_size = im.size
            if min_side is not None and kind == "jpeg" and "jpeg" in codecs:
                dicom.draft_jpeg(im, int(min_side))
            im.load()  # full decode now, so a truncated file fails here and not later
            reduced = im.size != full_size  # what libjpeg did, not what was asked
            upright = ImageOps.exif_transpose(im) or im
            gray, colour = _to_gray01(upright)
    except (IndexError, ImageTooLargeError):
        raise
    except UnidentifiedImageError as e:
        raise ImageDecodeError(path, f"looks like {kind.upper()} but Pillow cannot parse it") from e
    except Image.DecompressionBombError as e:
        raise ImageTooLargeError(path, f"image too large to decode safely ({e})") from e
    except ImageDecodeError:
        raise
    except Exception as e:  # OSError (truncated), SyntaxError, ValueError, EOFError, ...
        raise ImageDecodeError(path, f"cannot decode {kind.upper()}: {e}") from e
    if gray.ndim != 2 or 0 in gray.shape:
        raise ImageDecodeError(path, f"decoded to an unusable shape {gray.shape}")
    if not np.isfinite(gray).all():
        raise ImageDecodeError(path, "decoded pixels contain NaN or infinity")
    return LoadedImage(
        pixels=np.ascontiguousarray(np.clip(gray, 0.0, 1.0), dtype=np.float32),
        kind=kind,
        path=path,
        frames=n_frames,
        frame=frame,
        colour=colour,
        reduced=reduced,
    )


def _check_plain_budget(path: Path, im: Image.Image) -> None:
    """The DICOM budget (:data:`models.dicom.MAX_FRAME_BYTES`) for PNG/JPEG/TIFF too, from the
    header Pillow has read, before ``load()`` allocates the pixels."""
    w, h = im.size
    per_band = 4 if im.mode in ("I", "F") else 2 if im.mode.startswith("I;16") else 1
    size = w * h * max(1, len(im.getbands())) * per_band
    if size > dicom.MAX_FRAME_BYTES:
        raise ImageTooLargeError(path, f"image too large to decode safely: {w} x {h} pixels ({im.mode}) = "
                                       f"{size / 2**20:,.0f} MB (limit {dicom.MAX_FRAME_BYTES // 2**20} MB)")


def _full_range01(arr: np.ndarray) -> np.ndarray:
    x = arr.astype(np.float64)
    lo, hi = float(x.min()), float(x.max())
    if hi <= lo:
        return np.zeros(x.shape, dtype=np.float32)
    return ((x - lo) / (hi - lo)).astype(np.float32)


def _to_gray01(im: Image.Image) -> tuple[np.ndarray, float]:
    """Pillow image -> (float32 gray in [0, 1], mean chroma of the colour it had).

    8-bit content keeps its own scale (/255): it is already a rendered image and the training
    data looks exactly like that. 16/32-bit integer and float content (``I;16``, ``I``, ``F``)
    has no display scale, so it is stretched over its own min..max, as DICOM without VOI is.
    Colour becomes BT.601 luma; transparent pixels are composited onto black, because in a
    radiograph the background (air) is black.
    """
    mode = im.mode
    if mode in ("1", "L"):
        return np.asarray(im.convert("L"), dtype=np.float32) / np.float32(255.0), 0.0
    if mode.startswith("I;16") or mode in ("I", "F"):
        return _full_range01(np.asarray(im)), 0.0
    if mode == "P":
        im = im.convert("RGBA")
        mode = "RGBA"
    if mode in ("LA", "La", "PA"):
        im = im.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "RGBa"):
        rgba = np.asarray(im.convert("RGBA"), dtype=np.float32) / np.float32(255.0)
        return luma(rgba[..., :3]) * rgba[..., 3], chroma(rgba[..., :3])
    rgb = np.asarray(im.convert("RGB"), dtype=np.float32) / np.float32(255.0)
    return luma(rgb), chroma(rgb)
