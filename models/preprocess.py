"""The one preprocessing contract, shared by training, calibration and inference.

Numpy and Pillow only (no torch): clinic PCs run this exact code, and a model validated on one
preprocessing and served with another silently loses accuracy. Any decoded grayscale array — 8-bit
PNG, 12/16-bit DICOM after its LUTs, float — goes in; the network's input tensor comes out.

The steps, in order:
1. to grayscale float32 (RGB/RGBA/LA collapse to luminance);
2. resize the long side to ``input_size`` keeping the aspect ratio (antialiased bilinear);
3. robust intensity scaling to [0, 1] by percentiles *of the resized image* (exposure and bit
   depth differ wildly between sites; percentiles make the model see the same range);
3b. optionally (``clahe=True``, off by default) contrast-limited adaptive histogram equalisation
   of the resized content, before the black letterbox padding so that the padding never enters a
   tile's histogram; at the model's resolution it costs about a millisecond, and the runtime gets
   it from the card exactly as the model was trained;
4. letterbox: pad to a square ``input_size`` with 0 (black, like a radiograph's background);
5. standardise with ``(x - mean) / std``.

Steps 1–4 are :func:`to_unit`, step 5 is :func:`standardize`; training augmentation runs between
them so that it never bypasses the contract.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

import numpy as np
from PIL import Image

from models.errors import ConfigError

PREPROCESS_VERSION = "mura-fracture/preprocess-v1"


@dataclass(frozen=True)
class PreprocessConfig:
    """Everything that defines a model's input; stored in the model card."""

    input_size: int = 224
    mean: float = 0.5
    std: float = 0.25
    clip_percentiles: tuple[float, float] = (0.5, 99.5)
    version: str = field(default=PREPROCESS_VERSION)
    clahe: bool = False
    clahe_clip_limit: float = 0.01  # fraction of a tile's pixels one histogram bin may hold
    clahe_tiles: int = 8  # tiles per side of the (resized) image

    def __post_init__(self) -> None:
        if not 16 <= int(self.input_size) <= 4096:
            raise ConfigError(f"input_size must be in [16, 4096], got {self.input_size!r}")
        if not self.std > 0:
            raise ConfigError(f"std must be > 0, got {self.std!r}")
        lo, hi = self.clip_percentiles
        if not 0 <= lo < hi <= 100:
            raise ConfigError(f"clip_percentiles must satisfy 0 <= lo < hi <= 100, got {self.clip_percentiles!r}")
        if not 0 < self.clahe_clip_limit <= 1:
            raise ConfigError(f"clahe_clip_limit must be in (0, 1], got {self.clahe_clip_limit!r}")
        if not 1 <= int(self.clahe_tiles) <= 64:
            raise ConfigError(f"clahe_tiles must be in [1, 64], got {self.clahe_tiles!r}")
        if self.version != PREPROCESS_VERSION:
            raise ConfigError(
                f"preprocessing {self.version!r} is not supported by this build "
                f"(it implements {PREPROCESS_VERSION!r})"
            )

    def to_dict(self) -> dict:
        """Plain dict for cards and checkpoints.

        The CLAHE fields appear only when CLAHE is on: a default config serialises exactly as it
        did before CLAHE existed, so existing cards, checkpoints and decode-cache keys (a hash of
        this dict) stay valid; a card without them means "no CLAHE".
        """
        d = asdict(self)
        d["clip_percentiles"] = list(self.clip_percentiles)
        if not self.clahe:
            for k in _CLAHE_FIELDS:
                d.pop(k)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> PreprocessConfig:
        d = dict(d)
        unknown = sorted(set(d) - {f.name for f in fields(cls)})
        if unknown:
            raise ConfigError(
                f"preprocessing has settings this build does not know: {unknown} (a newer card?)"
            )
        if "clip_percentiles" in d:
            d["clip_percentiles"] = tuple(d["clip_percentiles"])
        return cls(**d)


_CLAHE_FIELDS = ("clahe", "clahe_clip_limit", "clahe_tiles")


@dataclass(frozen=True)
class Placement:
    """Where the original image sits inside the square model input (to map heatmaps back)."""

    scale: float  # model-input pixels per original pixel
    offset_x: int
    offset_y: int
    width: int  # content width in model-input pixels
    height: int

    def content_slice(self) -> tuple[slice, slice]:
        return (
            slice(self.offset_y, self.offset_y + self.height),
            slice(self.offset_x, self.offset_x + self.width),
        )


#: ITU-R BT.601 luma weights: what Pillow's convert("L") uses, so DICOM colour and plain-image
#: colour become the same gray.
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def luma(rgb: np.ndarray) -> np.ndarray:
    """BT.601 luma of ``rgb`` (..., 3) as float32, the one colour-to-gray rule of every reader.

    Per-element multiply-adds, not ``rgb @ LUMA``: a matmul rounds differently with and without
    BLAS (the installed app's numpy is built without it), and the installed app must see the
    same pixels as the development environment, bit for bit.
    """
    c = np.asarray(rgb, dtype=np.float32)
    return c[..., 0] * LUMA[0] + c[..., 1] * LUMA[1] + c[..., 2] * LUMA[2]


def to_grayscale(arr: np.ndarray) -> np.ndarray:
    """Collapse any supported layout to a 2-D float32 array (no intensity scaling yet)."""
    a = np.asarray(arr)
    if a.ndim == 3 and a.shape[-1] in (1, 2, 3, 4):
        if a.shape[-1] in (1, 2):  # L or LA: drop alpha
            a = a[..., 0]
        else:  # RGB(A): ITU-R 601 luma, alpha dropped
            a = luma(a[..., :3])
    if a.ndim != 2:
        raise ConfigError(f"expected a 2-D grayscale or HxWxC image, got shape {a.shape}")
    if a.size == 0:
        raise ConfigError("empty image (zero pixels)")
    if a.dtype == bool:
        a = a.astype(np.uint8)
    return a.astype(np.float32, copy=False)


def _resize_long_side(img: np.ndarray, size: int) -> np.ndarray:
    h, w = img.shape
    scale = size / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    if (nh, nw) == (h, w):
        return img
    return np.asarray(Image.fromarray(img, mode="F").resize((nw, nh), Image.Resampling.BILINEAR))


def scale_intensity(img: np.ndarray, clip_percentiles: tuple[float, float]) -> np.ndarray:
    """Map the [lo, hi] percentiles to [0, 1] and clip; a flat image becomes all zeros."""
    finite = np.isfinite(img)
    if not finite.all():
        img = np.where(finite, img, 0.0).astype(np.float32)
    lo, hi = np.percentile(img, clip_percentiles)
    if hi - lo < 1e-6:
        return np.zeros_like(img, dtype=np.float32)
    out = (img - lo) / (hi - lo)
    return np.clip(out, 0.0, 1.0).astype(np.float32, copy=False)


def clahe(unit: np.ndarray, clip_limit: float = 0.01, tiles: int = 8, nbins: int = 256) -> np.ndarray:
    """Contrast-limited adaptive histogram equalisation of a [0, 1] image (Zuiderveld 1994).

    Why: radiographs put cortex, trabecular bone and soft tissue in narrow, different intensity
    bands; equalising per region makes a faint cortical break visible everywhere, and the clip
    limit stops noise in flat regions from being amplified. Numpy only, since the runtime runs it.

    The image is cut into ``tiles`` x ``tiles`` regions (reflect-padded to a multiple); each
    region's ``nbins``-bin histogram is clipped at ``clip_limit`` x (pixels per region), the excess
    spread evenly over the bins still below the limit, and its cumulative sum is the region's grey-level mapping. Each
    pixel's output interpolates bilinearly between the mappings of the four nearest region
    centres (the nearest one or two at the borders), so there are no seams. ``clip_limit`` is
    scikit-image's convention (``equalize_adapthist``); 0.01 with 256 bins equals OpenCV's
    clipLimit 2.56. The result is stretched to span [0, 1]; a flat image stays all zeros.
    """
    x = np.asarray(unit, dtype=np.float32)
    if x.ndim != 2:
        raise ConfigError(f"clahe expects a 2-D image, got shape {x.shape}")
    h, w = x.shape
    if h == 0 or w == 0 or float(x.max()) - float(x.min()) < 1e-6:
        return np.zeros_like(x)
    ty, tx = min(int(tiles), h), min(int(tiles), w)
    th, tw = -(-h // ty), -(-w // tx)  # region size (ceil), the padded image is ty*th x tx*tw
    bins = np.minimum((np.clip(x, 0.0, 1.0) * nbins).astype(np.int64), nbins - 1)
    padded = np.pad(bins, ((0, ty * th - h), (0, tx * tw - w)), mode="reflect" if min(h, w) > 1 else "edge")
    region = padded.reshape(ty, th, tx, tw).transpose(0, 2, 1, 3).reshape(ty * tx, th * tw)
    offsets = (np.arange(ty * tx) * nbins)[:, None]
    hist = np.bincount((region + offsets).ravel(), minlength=ty * tx * nbins)
    hist = hist.reshape(ty * tx, nbins).astype(np.float64)
    n = th * tw
    hist = _clip_histograms(hist, max(clip_limit * n, 1.0))
    maps = (np.cumsum(hist, axis=1) / n).reshape(ty, tx, nbins)

    def axis(size: int, step: int, count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        # pixel centre in region units, relative to the first region's centre
        f = np.clip((np.arange(size) + 0.5) / step - 0.5, 0.0, count - 1.0)
        i0 = np.minimum(np.floor(f).astype(np.int64), count - 1)
        return i0, np.minimum(i0 + 1, count - 1), (f - i0)

    y0, y1, wy = axis(h, th, ty)
    x0, x1, wx = axis(w, tw, tx)
    y0, y1, wy = y0[:, None], y1[:, None], wy[:, None]
    top = maps[y0, x0, bins] * (1 - wx) + maps[y0, x1, bins] * wx
    bottom = maps[y1, x0, bins] * (1 - wx) + maps[y1, x1, bins] * wx
    out = top * (1 - wy) + bottom * wy
    lo, hi = float(out.min()), float(out.max())
    if hi - lo < 1e-12:
        return np.zeros_like(x)
    return ((out - lo) / (hi - lo)).astype(np.float32)


def _clip_histograms(hist: np.ndarray, limit: float, rounds: int = 16) -> np.ndarray:
    """Clip each row at ``limit`` and hand the excess to the bins below it, until none is left.

    Each round gives every bin under the limit an equal share of the excess and clips again, as
    Zuiderveld's redistribution does (in floats here, so it converges in a few rounds). Whatever
    cannot fit (limit x bins < pixels) is spread over all bins so each mapping still ends at 1.
    """
    hist = hist.copy()
    for _ in range(rounds):
        excess = np.maximum(hist - limit, 0.0).sum(axis=1, keepdims=True)
        if float(excess.max()) < 1e-6:
            break
        hist = np.minimum(hist, limit)
        under = hist < limit
        k = under.sum(axis=1, keepdims=True)
        hist += np.where(under, excess / np.maximum(k, 1), 0.0)
    total = hist.sum(axis=1, keepdims=True)
    hist = np.minimum(hist, limit)
    return hist + (total - hist.sum(axis=1, keepdims=True)) / hist.shape[1]


def to_unit(arr: np.ndarray, cfg: PreprocessConfig) -> tuple[np.ndarray, Placement]:
    """Steps 1–4: a square float32 image in [0, 1] of side ``input_size``, and its placement."""
    gray = to_grayscale(arr)
    h, w = gray.shape
    size = int(cfg.input_size)
    resized = _resize_long_side(gray, size)
    unit = scale_intensity(resized, cfg.clip_percentiles)
    if cfg.clahe:
        unit = clahe(unit, cfg.clahe_clip_limit, cfg.clahe_tiles)
    pl = placement_for(h, w, size)
    out = np.zeros((size, size), dtype=np.float32)
    out[pl.content_slice()] = unit
    return out, pl


def placement_for(h: int, w: int, size: int) -> Placement:
    """Where an ``h`` x ``w`` image lands in the ``size`` square input (resize long side, centre).

    Computable from the image's size alone, so a cached, already letterboxed image can still map
    annotations (fracture boxes) into input coordinates without decoding the file again.
    """
    scale = size / max(h, w)
    rh, rw = max(1, round(h * scale)), max(1, round(w * scale))
    oy, ox = (size - rh) // 2, (size - rw) // 2
    return Placement(scale=rw / w, offset_x=ox, offset_y=oy, width=rw, height=rh)


def standardize(unit: np.ndarray, cfg: PreprocessConfig) -> np.ndarray:
    """Step 5, adding the channel axis: (S, S) in [0, 1] -> (1, S, S) standardised float32."""
    x = (np.asarray(unit, dtype=np.float32) - np.float32(cfg.mean)) / np.float32(cfg.std)
    return x[None, :, :]


def preprocess(arr: np.ndarray, cfg: PreprocessConfig) -> np.ndarray:
    """The whole contract for one image: any grayscale array -> (1, S, S) float32."""
    return standardize(to_unit(arr, cfg)[0], cfg)


def preprocess_batch(arrs: list[np.ndarray], cfg: PreprocessConfig) -> np.ndarray:
    """Several images -> (N, 1, S, S) float32, ready for any engine."""
    if not arrs:
        raise ConfigError("preprocess_batch needs at least one image")
    return np.stack([preprocess(a, cfg) for a in arrs])
