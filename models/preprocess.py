"""The one preprocessing contract, shared by training, calibration and inference.

Numpy and Pillow only (no torch): clinic PCs run this exact code, and a model validated on one
preprocessing and served with another silently loses accuracy. Any decoded grayscale array — 8-bit
PNG, 12/16-bit DICOM after its LUTs, float — goes in; the network's input tensor comes out.

The steps, in order:
1. to grayscale float32 (RGB/RGBA/LA collapse to luminance);
2. resize the long side to ``input_size`` keeping the aspect ratio (antialiased bilinear);
3. robust intensity scaling to [0, 1] by percentiles *of the resized image* (exposure and bit
   depth differ wildly between sites; percentiles make the model see the same range);
4. letterbox: pad to a square ``input_size`` with 0 (black, like a radiograph's background);
5. standardise with ``(x - mean) / std``.

Steps 1–4 are :func:`to_unit`, step 5 is :func:`standardize`; training augmentation runs between
them so that it never bypasses the contract.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

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

    def __post_init__(self) -> None:
        if not 16 <= int(self.input_size) <= 4096:
            raise ConfigError(f"input_size must be in [16, 4096], got {self.input_size!r}")
        if not self.std > 0:
            raise ConfigError(f"std must be > 0, got {self.std!r}")
        lo, hi = self.clip_percentiles
        if not 0 <= lo < hi <= 100:
            raise ConfigError(f"clip_percentiles must satisfy 0 <= lo < hi <= 100, got {self.clip_percentiles!r}")
        if self.version != PREPROCESS_VERSION:
            raise ConfigError(
                f"preprocessing {self.version!r} is not supported by this build "
                f"(it implements {PREPROCESS_VERSION!r})"
            )

    def to_dict(self) -> dict:
        d = asdict(self)
        d["clip_percentiles"] = list(self.clip_percentiles)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> PreprocessConfig:
        d = dict(d)
        if "clip_percentiles" in d:
            d["clip_percentiles"] = tuple(d["clip_percentiles"])
        return cls(**d)


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


def to_grayscale(arr: np.ndarray) -> np.ndarray:
    """Collapse any supported layout to a 2-D float32 array (no intensity scaling yet)."""
    a = np.asarray(arr)
    if a.ndim == 3 and a.shape[-1] in (1, 2, 3, 4):
        if a.shape[-1] in (1, 2):  # L or LA: drop alpha
            a = a[..., 0]
        else:  # RGB(A): ITU-R 601 luma, alpha dropped
            rgb = a[..., :3].astype(np.float32)
            a = rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
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
    return np.asarray(Image.fromarray(img, mode="F").resize((nw, nh), Image.BILINEAR))


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


def to_unit(arr: np.ndarray, cfg: PreprocessConfig) -> tuple[np.ndarray, Placement]:
    """Steps 1–4: a square float32 image in [0, 1] of side ``input_size``, and its placement."""
    gray = to_grayscale(arr)
    h, w = gray.shape
    size = int(cfg.input_size)
    resized = _resize_long_side(gray, size)
    unit = scale_intensity(resized, cfg.clip_percentiles)
    rh, rw = unit.shape
    oy, ox = (size - rh) // 2, (size - rw) // 2
    out = np.zeros((size, size), dtype=np.float32)
    out[oy : oy + rh, ox : ox + rw] = unit
    return out, Placement(scale=rw / w, offset_x=ox, offset_y=oy, width=rw, height=rh)


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
