"""Projection rendering of a phantom anatomy: pose, exposure, detector blur and noise.

Each bone's X-ray path length is summed into an attenuation map with a soft-tissue envelope, then
exposed (``1 - exp(-k * attenuation)``), gamma-adjusted and made noisy. Two acquisition styles
(MURA-like and an "external site") let the writers simulate a domain shift.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from models.errors import ConfigError
from models.synth.anatomy import Point, _Anatomy, _anatomy, _Blob, _Cut, _Tube

# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Style:
    """Ranges of the acquisition: exposure, detector noise, tissue densities.

    The external set draws from other ranges so that it behaves like a different site.
    """

    gain: tuple[float, float] = (0.85, 1.1)
    gamma: tuple[float, float] = (0.8, 1.3)
    background: tuple[float, float] = (0.0, 0.07)
    noise: tuple[float, float] = (0.006, 0.025)
    lowfreq: tuple[float, float] = (0.01, 0.05)
    soft: tuple[float, float] = (0.3, 0.5)
    bone: tuple[float, float] = (0.9, 1.15)
    rotation: float = 25.0
    zoom: tuple[float, float] = (0.85, 1.12)


_MURA_STYLE = _Style()
_EXTERNAL_STYLE = _Style(
    gain=(0.75, 1.0),
    gamma=(1.1, 1.7),
    background=(0.04, 0.16),
    noise=(0.015, 0.04),
    lowfreq=(0.03, 0.08),
    soft=(0.4, 0.65),
    bone=(0.8, 1.05),
    rotation=40.0,
    zoom=(0.8, 1.2),
)


@dataclass(frozen=True)
class _View:
    """A similarity transform from canonical units to pixels (the patient's pose on the plate)."""

    m: tuple[float, float, float, float]
    c: tuple[float, float]
    unit: float

    def point(self, p: Point) -> Point:
        m = self.m
        return (m[0] * p[0] + m[1] * p[1] + self.c[0], m[2] * p[0] + m[3] * p[1] + self.c[1])


def _draw_view(
    rng: np.random.Generator, anatomy: _Anatomy, shape: tuple[int, int], style: _Style
) -> _View:
    """Random pose and zoom, shifted if needed so that the fracture site stays in the frame.

    A positive label whose fracture was cropped away would be label noise, not a hard case.
    """
    h, w = shape
    zoom = rng.uniform(*style.zoom)
    unit = min(w / 2 / anatomy.extent[0], h / 2 / anatomy.extent[1]) * zoom
    deg = rng.uniform(-style.rotation, style.rotation)
    flip = -1.0 if rng.random() < 0.5 else 1.0
    c, s = math.cos(math.radians(deg)) * unit, math.sin(math.radians(deg)) * unit
    m = (c * flip, -s, s * flip, c)
    tx, ty = rng.uniform(-0.1, 0.1, size=2) * min(h, w)
    view = _View(m, (w / 2 + tx, h / 2 + ty), unit)
    if anatomy.site is not None:
        x, y = view.point(anatomy.site)
        tx += float(np.clip(x, 0.18 * w, 0.82 * w)) - x
        ty += float(np.clip(y, 0.18 * h, 0.82 * h)) - y
        view = _View(m, (w / 2 + tx, h / 2 + ty), unit)
    return view


def _bbox(pts: Sequence[Point], pad: float, shape: tuple[int, int]) -> tuple[int, int, int, int]:
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    x0, x1 = max(int(min(xs) - pad), 0), min(int(max(xs) + pad) + 2, shape[1])
    y0, y1 = max(int(min(ys) - pad), 0), min(int(max(ys) + pad) + 2, shape[0])
    return x0, x1, y0, y1


def _axis_coords(a: Point, b: Point, box: tuple[int, int, int, int]):
    """Axial (s) and signed perpendicular (v) pixel coordinates of a box relative to a->b."""
    x0, x1, y0, y1 = box
    length = math.hypot(b[0] - a[0], b[1] - a[1])
    if length < 1e-6:  # a round bone or blob: any axis will do
        length, ux, uy = 0.0, 1.0, 0.0
    else:
        ux, uy = (b[0] - a[0]) / length, (b[1] - a[1]) / length
    dx = np.arange(x0, x1, dtype=np.float32)[None, :] + np.float32(0.5 - a[0])
    dy = np.arange(y0, y1, dtype=np.float32)[:, None] + np.float32(0.5 - a[1])
    return dx * ux + dy * uy, dy * ux - dx * uy, length


def _draw_tube(canvas: np.ndarray, t: _Tube, view: _View) -> None:
    """Add one tube's projected bone thickness; cortex projects brighter than medulla."""
    a, b, u = view.point(t.a), view.point(t.b), view.unit
    r = t.r * u
    rmax = r * max(t.flare_a, t.flare_b, 1.0)
    box = _bbox((a, b), rmax + 2, canvas.shape)
    if box[0] >= box[1] or box[2] >= box[3]:
        return
    s, v, length = _axis_coords(a, b, box)
    sc = np.clip(s, 0.0, length)
    k = 1.0 / (0.14 * length + 0.6 * r) ** 2
    radius: np.ndarray | float = r
    if t.flare_a != 1.0:
        radius = radius + (r * (t.flare_a - 1.0)) * np.exp(-(sc * sc) * k)
    if t.flare_b != 1.0:
        radius = radius + (r * (t.flare_b - 1.0)) * np.exp(-((length - sc) ** 2) * k)
    excess = s - sc
    d2 = v * v + excess * excess
    outer = np.sqrt(np.maximum(radius * radius - d2, 0.0))
    ri = radius * (1.0 - t.cortex)
    inner = np.sqrt(np.maximum(ri * ri - d2, 0.0))
    thick = (outer - (1.0 - t.medulla) * inner) * (t.density / r) * (t.r / 0.07) ** 0.3
    if t.cut is not None:
        thick *= _cut_mask(t.cut, s, v, u)
    sub = canvas[box[2] : box[3], box[0] : box[1]]
    if t.merge:
        np.maximum(sub, thick, out=sub)
    else:
        sub += thick


def _cut_mask(cut: _Cut, s: np.ndarray, v: np.ndarray, unit: float) -> np.ndarray:
    """Soft (1 px) step along the jagged fracture line: hard edges alias, real ones do not."""
    per = max(cut.jag_period * unit, 1.0)
    phase = v / per + cut.jag_phase
    tri = 4.0 * np.abs(phase - np.floor(phase + 0.5)) - 1.0
    edge = cut.s0 * unit + cut.slope * v + cut.jag_amp * unit * tri
    return np.clip(cut.side * (s - edge) + 0.5, 0.0, 1.0)


def _draw_soft(shape: tuple[int, int], blobs: Sequence[_Blob], view: _View) -> np.ndarray:
    """Soft tissue at quarter resolution, upsampled: it is smooth anyway and 16x cheaper."""
    f = 4
    small = (max(shape[0] // f, 2), max(shape[1] // f, 2))
    out = np.zeros(small, np.float32)
    for blob in blobs:
        a = view.point(blob.a)
        b = view.point(blob.b)
        a, b = (a[0] / f, a[1] / f), (b[0] / f, b[1] / f)
        r_a = blob.r * view.unit / f
        r_b = (blob.r if blob.r_b is None else blob.r_b) * view.unit / f
        box = _bbox((a, b), max(r_a, r_b) + 1, small)
        if box[0] >= box[1] or box[2] >= box[3]:
            continue
        s, v, length = _axis_coords(a, b, box)
        sc = np.clip(s, 0.0, length)
        r = r_a + (r_b - r_a) * (sc / length) if length > 0 else r_a
        excess = s - sc
        q = np.clip(1.0 - (v * v + excess * excess) / (r * r), 0.0, None) ** 0.6
        q *= min((max(blob.r, blob.r_b or 0.0) / 0.3) ** 0.3, 1.3)  # thicker limbs absorb more
        sub = out[box[2] : box[3], box[0] : box[1]]
        np.maximum(sub, q, out=sub)
    return _upsample(out, shape)


def _upsample(small: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    img = Image.fromarray(small.astype(np.float32))
    return np.array(img.resize((shape[1], shape[0]), Image.Resampling.BILINEAR))


@functools.lru_cache(maxsize=4096)
def _taps(n: int, cells: int) -> tuple[np.ndarray, np.ndarray]:
    """Four-tap Gaussian interpolation from ``cells`` coarse samples to ``n`` pixels."""
    pos = (np.arange(n, dtype=np.float64) + 0.5) / n * cells - 0.5
    idx = np.floor(pos).astype(np.int64)[:, None] + np.arange(-1, 3)[None, :]
    w = np.exp(-0.5 * ((pos[:, None] - idx) / 0.7) ** 2)
    w /= w.sum(axis=1, keepdims=True)
    return np.clip(idx, 0, cells - 1), w.astype(np.float32)


def _lowfreq(rng: np.random.Generator, shape: tuple[int, int], cells: int) -> np.ndarray:
    """Smooth random field, roughly in [-1, 1]: heel effect, uneven plate response, texture.

    Sparse separable interpolation, not a matrix product: BLAS threads oversubscribe the CPU
    when several workers render at once, and PIL resizing is ten times slower.
    """
    grid = rng.uniform(-1.6, 1.6, size=(cells, cells)).astype(np.float32)
    (iy, wy), (ix, wx) = _taps(shape[0], cells), _taps(shape[1], cells)
    cols = sum(grid[:, ix[:, t]] * wx[None, :, t] for t in range(4))  # (cells, W): tiny
    out = cols[iy[:, 0]] * wy[:, 0, None]
    for t in range(1, 4):  # whole-row gathers are the cheap direction
        out += cols[iy[:, t]] * wy[:, t, None]
    return out


def _blur(x: np.ndarray) -> np.ndarray:
    """Binomial 3x3 blur (edge-replicated): the detector's point spread, cheap every time."""
    y = 0.5 * x
    y[1:] += 0.25 * x[:-1]
    y[:-1] += 0.25 * x[1:]
    y[0] += 0.25 * x[0]
    y[-1] += 0.25 * x[-1]
    z = 0.5 * y
    z[:, 1:] += 0.25 * y[:, :-1]
    z[:, :-1] += 0.25 * y[:, 1:]
    z[:, 0] += 0.25 * y[:, 0]
    z[:, -1] += 0.25 * y[:, -1]
    return z


def _render(
    rng: np.random.Generator, anatomy: _Anatomy, shape: tuple[int, int], style: _Style
) -> np.ndarray:
    """Project anatomy under one random view and exposure; bone is bright, air is dark."""
    view = _draw_view(rng, anatomy, shape, style)
    soft_k, bone_k = rng.uniform(*style.soft), rng.uniform(*style.bone)
    gain, gamma = rng.uniform(*style.gain), rng.uniform(*style.gamma)
    bg = rng.uniform(*style.background)
    noise, low = rng.uniform(*style.noise), rng.uniform(*style.lowfreq)

    bone = np.zeros(shape, np.float32)
    chains = np.zeros(shape, np.float32)
    for tube in anatomy.bones:
        _draw_tube(chains if tube.merge else bone, tube, view)
    bone += chains
    texture = _lowfreq(rng, shape, max(4, int(min(shape) / 14)))
    soft = _draw_soft(shape, anatomy.soft, view)
    soft *= 1.0 + 0.15 * _lowfreq(rng, shape, 5)
    atten = soft_k * soft + bone_k * bone * (1.0 + 0.12 * texture)
    img = 1.0 - np.exp(-1.5 * atten)
    img = bg + (1.0 - bg) * gain * np.power(img, gamma)
    img = _blur(img)
    img += low * _lowfreq(rng, shape, 4)
    img += noise * rng.standard_normal(shape, dtype=np.float32)
    return np.clip(img, 0.0, 1.0).astype(np.float32)


def _check_shape(shape: Sequence[int]) -> tuple[int, int]:
    if len(shape) != 2 or min(int(shape[0]), int(shape[1])) < 32:
        raise ConfigError(f"image shape {tuple(shape)!r} must be (height, width), both >= 32")
    return int(shape[0]), int(shape[1])


def render_radiograph(
    rng: np.random.Generator, body_part: str, fractured: bool, shape: tuple[int, int]
) -> np.ndarray:
    """Draw one phantom radiograph (float32, HxW, [0, 1], bone bright).

    The generator is consumed identically for ``fractured`` True and False, so two renders from
    equal generator states form a matched pair that differs only by the fracture - handy for
    tests and saliency checks.
    """
    hw = _check_shape(shape)
    return _render(rng, _anatomy(rng, body_part, fractured), hw, _MURA_STYLE)
