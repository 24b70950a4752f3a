"""The grayscale display chain, as pure functions in the order of PS3.3 C.11 / PS3.4 N.2:

    stored values --> apply_modality_lut --> apply_voi_lut --> apply_presentation

Each step reads only the tags its docstring names and returns a new array; :func:`render_frame`
runs the three on a table of stored values (bit for bit the element-wise result) and
:func:`window_presets` offers the viewer's windows in the same modality units.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from pydicom.dataset import Dataset

from models.dicom.header import Window, _float_or, _floats, _source, is_monochrome, photometric
from models.errors import DicomError

#: CT presets in Hounsfield units. Only meaningful when modality values are HU (see
#: :func:`window_presets`).
BONE_WINDOW_HU: Window = (480.0, 2500.0)
SOFT_TISSUE_WINDOW_HU: Window = (40.0, 400.0)


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
    modality: np.ndarray | None
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
