"""What a decode worker does with one file: decode, check scope, preprocess, make the report's
thumbnail source; and the worker-side DICOM exports. A worker returns only small arrays: the
(1, S, S) model input, its placement and a gray thumbnail source of at most
:data:`REPORT_THUMB_SIZE` px, never the full decoded image."""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from desktop.screening.render import blend_heatmap_rgbx, to_uint8
from desktop.screening.slots import Slot, write_slot
from desktop.screening.state import FastDecode, FileStamp, decode_codecs, stamp
from models.engine import ImagePrediction, StudyPrediction
from models.errors import ImageDecodeError
from models.imageio import decode_for_model, load_image
from models.preprocess import Placement, PreprocessConfig, standardize, to_unit
from models.reduction import REDUCED_DECODE_FACTOR
from models.scope import image_refusal

REPORT_THUMB_SIZE = 160  # px, long side of the report's thumbnails (the viewer's strip has its own)


@dataclass
class Prepared:
    """What a worker sends back for one file: small arrays only, or the reason it failed."""

    stamp: FileStamp
    x: np.ndarray | None = None  # (1, S, S) float32 model input
    placement: Placement | None = None
    thumb: np.ndarray | None = None  # uint8 gray, long side <= REPORT_THUMB_SIZE
    error: str | None = None
    refused: str | None = None  # not a radiograph (models.scope.image_refusal): not scored
    slot: Slot | None = None  # x was written there instead (desktop.screening.slots)


def fast_decode_min_side(cfg: PreprocessConfig) -> int:
    """The smallest long side ``--fast-decode`` may decode to: twice the model's input size, so
    the model input is still made by the same antialiased downscale, from at least 2x oversampling.
    """
    return REDUCED_DECODE_FACTOR * int(cfg.input_size)


def prepare_image(path: str, cfg: PreprocessConfig, thumb_size: int = REPORT_THUMB_SIZE,
                  fast_decode: FastDecode = False) -> Prepared:
    """Stamp, decode and preprocess one file (runs in a worker process).

    The file is stamped before it is read: if it changes meanwhile, the next run sees another
    stamp and re-scores it rather than trusting a result of unknown content. Any exception a
    decoder raises on a hostile file is turned into a reason here, in the worker.
    ``fast_decode`` decodes JPEG 2000 and baseline JPEG (True), or the codecs given, at a reduced
    resolution (:func:`models.imageio.decode_for_model` with ``min_side``): ``--fast-decode``, or
    the default for the codecs a model's card validated (:mod:`desktop.screening.decoding`).
    """
    try:
        fs = stamp(path)
    except OSError as e:
        return Prepared(FileStamp(path, -1, -1), error=f"cannot read file ({e})")
    try:
        codecs = decode_codecs(fast_decode)
        pixels, colour = decode_for_model(path, min_side=fast_decode_min_side(cfg) if codecs else None,
                                          codecs=codecs)
        refusal = image_refusal(pixels, colour)
        if refusal is None:
            unit, placement = to_unit(pixels, cfg)
            x = standardize(unit, cfg)
    except ImageDecodeError as e:
        return Prepared(fs, error=e.reason)
    except Exception as e:  # noqa: BLE001 - a decoder bug on one file must not end the batch
        return Prepared(fs, error=f"cannot decode ({type(e).__name__}: {e})")
    if refusal is not None:
        return Prepared(fs, thumb=report_thumbnail(pixels, thumb_size), refused=refusal.reason)
    if int(cfg.input_size) >= thumb_size:
        return Prepared(fs, x, placement, input_thumbnail(unit, placement, thumb_size))
    return Prepared(fs, x, placement, report_thumbnail(pixels, thumb_size))


def prepare_to_slot(slot: Slot, prepare: Callable[..., Prepared], *args: Any) -> Prepared:
    """``prepare(*args)`` (:func:`prepare_image`), its model input written into ``slot`` of the
    screener's shared block instead of being pickled back (:mod:`desktop.screening.slots`;
    falls back to the pipe)."""
    pr = prepare(*args)
    if pr.x is not None and write_slot(slot, pr.x):
        pr.x, pr.slot = None, slot
    return pr


def input_thumbnail(unit: np.ndarray, placement: Placement, thumb_size: int = REPORT_THUMB_SIZE,
                    ) -> np.ndarray | None:
    """The report's thumbnail source made from the model's own input (its image part, uint8, long
    side <= ``thumb_size``): the picture the model scored, which its heatmap is drawn over.

    Why: it is already decoded, windowed and small (``input_size`` px), so it costs ~0.15 ms,
    where quantising and resizing even a subsample of the full image cost ~0.5 ms per file in
    the decode workers (measured on FracAtlas).
    """
    try:
        im = Image.fromarray(to_uint8(unit[placement.content_slice()]))
        im.thumbnail((thumb_size, thumb_size), Image.Resampling.BOX)  # area average: 0.08 ms, bilinear 0.12
        return np.asarray(im)
    except (ValueError, OSError):
        return None


def report_thumbnail(pixels: np.ndarray, thumb_size: int = REPORT_THUMB_SIZE) -> np.ndarray | None:
    """The report's gray thumbnail source (uint8, long side <= ``thumb_size``), or None.

    Quantised and resized from every k-th pixel, k keeping at least twice the thumbnail's side:
    a bilinear thumbnail from 2x is as sharp as from the full image, and converting a 2k image
    to 8 bits and resizing it all cost about as much as the model's whole preprocessing.
    """
    try:
        step = max(1, max(pixels.shape[:2]) // (2 * thumb_size))
        im = Image.fromarray(to_uint8(pixels[::step, ::step]))
        im.thumbnail((thumb_size, thumb_size), Image.Resampling.BILINEAR)
        return np.asarray(im)
    except (ValueError, OSError):
        return None  # the report shows no picture for this image; the score stands


#: JPEG quality of the report's thumbnails. PNG with optimize=True took 47 % of a screening run
#: of 100 FracAtlas images (1.8 of 3.9 s, ~6 encoder passes per picture); a 160 px JPEG costs
#: ~0.15 ms and a quarter of the bytes, and a thumbnail is for finding the study, not reading it.
THUMB_JPEG_QUALITY = 85


def _jpeg(pixels: np.ndarray) -> bytes:
    """A JPEG of gray (H, W), RGB (H, W, 3) or RGBX (H, W, 4: the fourth byte is ignored)."""
    buf = io.BytesIO()
    if pixels.ndim == 3 and pixels.shape[2] == 4:
        h, w = pixels.shape[:2]
        im = Image.frombuffer("RGBX", (w, h), np.ascontiguousarray(pixels), "raw", "RGBX", 0, 1)
    else:
        im = Image.fromarray(pixels)
    im.save(buf, format="JPEG", quality=THUMB_JPEG_QUALITY)
    return buf.getvalue()


def gray_thumbnail(thumb: np.ndarray | None) -> bytes | None:
    """The thumbnail of an image that was not scored: the picture without a heatmap (JPEG)."""
    if thumb is None:
        return None
    try:
        return _jpeg(thumb)
    except (ValueError, OSError):
        return None


def heat_thumbnail(thumb: np.ndarray | None, pred: ImagePrediction) -> bytes | None:
    """A small JPEG of the thumbnail source with its heatmap (None if it cannot be made)."""
    if thumb is None:
        return None
    try:
        return _jpeg(blend_heatmap_rgbx(thumb, pred.heatmap(thumb.shape), opacity=0.45))
    except (ValueError, OSError):
        return None


def export_study(sources: Sequence[tuple[str, ImagePrediction]], study: StudyPrediction,
                 card: dict, out_dir: str, word: str) -> list[str]:
    """Decode the study's DICOM sources again and write its SC + SR (runs in a worker process).

    Decoding twice costs less than shipping full-size pixels between processes, and it is only
    paid with ``--dicom-out``.
    """
    from desktop.screening.dicom_export import write_study_dicom

    items = [(Path(p), load_image(p).pixels, pred) for p, pred in sources]
    return [str(p) for p in write_study_dicom(items, study, card, Path(out_dir), word=word)]


def export_not_indicated(paths: Sequence[str], reason: str, card: dict, out_dir: str, word: str) -> list[str]:
    """The SR of a study that got no verdict, saying why (runs in a worker process)."""
    from desktop.screening.dicom_export import write_not_indicated_sr

    return [str(p) for p in write_not_indicated_sr(paths, reason, card, Path(out_dir), word=word)]
