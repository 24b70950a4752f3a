"""Deterministic phantom radiographs: the project's embedded default data.

Real MURA cannot ship with the project (licence, size), yet every stage - training, evaluation,
compression, the desktop screen - needs images in the exact on-disk layouts it will meet in the
field. This module draws radiograph-like phantoms procedurally and writes them as

* the MURA-v1.1 tree with its four headerless CSVs (:func:`write_mura`),
* the external "Bone Fracture Binary Classification" folder layout (:func:`write_external`),
* DICOM studies exercising the encodings a clinic PACS export really contains
  (:func:`write_dicom_studies`).

Only numpy, Pillow, pydicom and the standard library are imported: the generator runs on a clinic
PC that has no torch. Everything is a pure function of the seed, so tests and CI can regenerate
byte-identical data instead of storing it.

The drawing model is a tiny projection radiograph: each bone is a hollow tube (bright cortex,
darker medulla) whose X-ray path length is summed into an attenuation map together with a soft
tissue envelope, then exposed (``1 - exp(-k * attenuation)``), gamma-adjusted and made noisy.
"""

from __future__ import annotations

import argparse
import csv
import functools
import io
import json
import math
import os
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image

from models.errors import ConfigError
from models.labels import MURA_BODY_PARTS

__all__ = [
    "render_radiograph",
    "write_mura",
    "write_external",
    "write_dicom_studies",
    "main",
]

# --------------------------------------------------------------------------------------------
# Geometry primitives
# --------------------------------------------------------------------------------------------

Point = tuple[float, float]


@dataclass(frozen=True)
class _Cut:
    """A fracture surface in a tube's own axial frame, so it travels with a displaced fragment.

    The kept side is ``side * (s - s0 - slope * v - jag(v)) > 0``; both fragments of one break
    share slope and jag, so their edges interlock like a real fracture line.
    """

    side: int
    s0: float
    slope: float
    jag_amp: float
    jag_period: float
    jag_phase: float


@dataclass(frozen=True)
class _Tube:
    """One bone (or bone fragment): a capsule whose radius flares towards its ends."""

    a: Point
    b: Point
    r: float
    flare_a: float = 1.0
    flare_b: float = 1.0
    cortex: float = 0.3  # cortical thickness as a fraction of the radius
    medulla: float = 0.35  # medullary density relative to the cortex
    density: float = 1.0
    cut: _Cut | None = None
    merge: bool = False  # part of a curved chain: overlaps at the links must not add up


@dataclass(frozen=True)
class _Blob:
    """Soft tissue: a solid, possibly tapering capsule with a smooth, edge-free thickness."""

    a: Point
    b: Point
    r: float
    r_b: float | None = None  # radius at ``b`` when the limb tapers


@dataclass(frozen=True)
class _LongBone:
    """A bone that may break, with the axial range (fractions of its length) kept in view."""

    tube: _Tube
    t_range: tuple[float, float]
    severity: float = 1.0  # small bones need a bigger break to be seen at 128 px


@dataclass
class _Anatomy:
    """Everything drawn for one body part, in canonical units (the ROI spans ``extent``)."""

    extent: tuple[float, float]
    bones: list[_Tube]
    long_bones: list[_LongBone]
    soft: list[_Blob]
    site: Point | None = None  # where the (possible) fracture is: every view keeps it in frame


def _rot(p: Point, origin: Point, deg: float) -> Point:
    """Rotate ``p`` about ``origin``: joints flex and fragments angulate this way."""
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    x, y = p[0] - origin[0], p[1] - origin[1]
    return (origin[0] + c * x - s * y, origin[1] + s * x + c * y)


def _rot_tube(t: _Tube, origin: Point, deg: float) -> _Tube:
    return replace(t, a=_rot(t.a, origin, deg), b=_rot(t.b, origin, deg))


def _oval(rng: np.random.Generator, c: Point, r: float, elong: float = 0.6) -> _Tube:
    """A small carpal-like bone: a short capsule with a random orientation."""
    ang = rng.uniform(0.0, math.pi)
    h = r * elong * rng.uniform(0.4, 1.0)
    dx, dy = h * math.cos(ang), h * math.sin(ang)
    return _Tube((c[0] - dx, c[1] - dy), (c[0] + dx, c[1] + dy), r, cortex=0.25, medulla=0.55)


def _ray(
    rng: np.random.Generator, base: Point, deg: float, lengths: Sequence[float], r: float
) -> list[_Tube]:
    """A chain of bones along a direction with joint spaces, bending slightly at each joint.

    ``deg`` is measured from straight up (negative y), so digits can fan out from the carpus.
    """
    out: list[_Tube] = []
    x, y = base
    ang = deg
    for i, length in enumerate(lengths):
        dx, dy = math.sin(math.radians(ang)), -math.cos(math.radians(ang))
        a = (x, y)
        b = (x + dx * length, y + dy * length)
        ri = r * (0.88**i)
        out.append(_Tube(a, b, ri, flare_a=1.45, flare_b=1.3, cortex=0.32))
        gap = 0.9 * ri
        x, y = b[0] + dx * gap, b[1] + dy * gap
        ang += rng.uniform(-6.0, 6.0)
    return out


# --------------------------------------------------------------------------------------------
# Body parts: each builder returns a distinct bone arrangement with random proportions
# --------------------------------------------------------------------------------------------


def _humerus(rng: np.random.Generator) -> _Anatomy:
    r = rng.uniform(0.068, 0.085)
    shaft = _Tube((0.0, -1.0), (rng.uniform(-0.05, 0.05), 1.0), r, 1.45, 1.9, cortex=0.3)
    head = _Tube((0.07, -1.04), (0.07, -1.04), rng.uniform(0.16, 0.2), cortex=0.12, medulla=0.5)
    cond = [_oval(rng, (shaft.b[0] + dx, 1.04), 0.065) for dx in (-0.1, 0.1)]
    ulna = _Tube((0.05, 1.15), (0.07, 1.9), 0.05, 1.6, 1.0)
    radius = _Tube((-0.1, 1.2), (-0.13, 1.9), 0.045, 1.4, 1.0)
    soft = [_Blob((0.0, -1.4), (0.0, 1.6), rng.uniform(0.3, 0.36))]
    return _Anatomy(
        (0.5, 1.2), [shaft, head, *cond, ulna, radius], [_LongBone(shaft, (0.28, 0.72))], soft
    )


def _forearm(rng: np.random.Generator) -> _Anatomy:
    sep = rng.uniform(0.09, 0.13)
    radius = _Tube((-sep, -1.3), (-sep - 0.03, 1.3), rng.uniform(0.045, 0.055), 1.2, 1.9)
    ulna = _Tube((sep, -1.3), (sep - 0.01, 1.3), rng.uniform(0.04, 0.05), 1.7, 1.2)
    carpals = [_oval(rng, (x, 1.5), 0.06) for x in (-0.15, -0.02, 0.11)]
    condyles = [_oval(rng, (x, -1.5), 0.08) for x in (-0.1, 0.1)]
    soft = [_Blob((0.0, -1.7), (0.0, 1.7), 0.33, 0.26)]
    longs = [_LongBone(radius, (0.22, 0.78)), _LongBone(ulna, (0.22, 0.78))]
    return _Anatomy((0.45, 1.1), [radius, ulna, *carpals, *condyles], longs, soft)


def _elbow(rng: np.random.Generator) -> _Anatomy:
    flex = rng.uniform(0.0, 65.0) * rng.choice([-1.0, 1.0])
    pivot = (0.0, 0.05)
    humerus = _Tube((0.0, -1.6), (0.0, -0.06), rng.uniform(0.075, 0.09), 1.0, 2.0)
    troch = [_oval(rng, (x, -0.02), 0.07) for x in (-0.08, 0.08)]
    radius = _Tube((-0.08, 0.12), (-0.1, 1.7), 0.05, 1.5, 1.0)
    ulna = _Tube((0.08, -0.16), (0.09, 1.7), 0.05, 1.8, 1.0)
    forearm = [_rot_tube(t, pivot, flex) for t in (radius, ulna)]
    soft = [
        _Blob((0.0, -1.7), (0.0, 0.05), 0.34),
        _Blob(pivot, _rot((0.0, 1.8), pivot, flex), 0.3),
    ]
    longs = [
        _LongBone(humerus, (0.5, 0.78)),
        _LongBone(forearm[0], (0.3, 0.62)),
        _LongBone(forearm[1], (0.35, 0.62)),
    ]
    return _Anatomy((0.6, 0.9), [humerus, *troch, *forearm], longs, soft)


def _carpus(rng: np.random.Generator, cx: float, cy: float, size: float) -> list[_Tube]:
    """Eight carpal ovals in two rows: the cluster that makes wrist and hand recognisable."""
    out = []
    for row, y in enumerate((cy - 0.11 * size, cy + 0.11 * size)):
        for k in range(4):
            x = cx + (k - 1.5) * 0.125 * size + rng.uniform(-0.015, 0.015) + row * 0.01
            out.append(_oval(rng, (x, y + rng.uniform(-0.02, 0.02)), 0.062 * size))
    return out


def _wrist(rng: np.random.Generator) -> _Anatomy:
    radius = _Tube((-0.1, -1.7), (-0.1, -0.02), rng.uniform(0.055, 0.065), 1.0, 2.1)
    ulna = _Tube((0.15, -1.7), (0.15, -0.06), rng.uniform(0.04, 0.048), 1.0, 1.35)
    carpals = _carpus(rng, 0.0, 0.26, 1.0)
    metas = [
        _Tube((x, 0.5), (x * 1.3, 1.7), 0.042, 1.45, 1.0) for x in (-0.24, -0.12, 0.0, 0.11, 0.21)
    ]
    soft = [_Blob((0.0, -1.8), (0.0, 0.3), 0.3, 0.35), _Blob((0.0, 0.3), (0.0, 1.8), 0.35, 0.4)]
    longs = [_LongBone(radius, (0.55, 0.84)), _LongBone(ulna, (0.5, 0.84))]
    return _Anatomy((0.55, 0.9), [radius, ulna, *carpals, *metas], longs, soft)


def _hand(rng: np.random.Generator) -> _Anatomy:
    radius = _Tube((-0.08, -1.6), (-0.08, -0.78), 0.055, 1.0, 2.0)
    ulna = _Tube((0.13, -1.6), (0.13, -0.82), 0.04, 1.0, 1.35)
    bones = [radius, ulna, *_carpus(rng, 0.0, -0.58, 0.95)]
    longs: list[_LongBone] = []
    soft = [_Blob((0.0, -1.6), (0.0, -0.5), 0.26, 0.3), _Blob((0.0, -0.45), (0.02, 0.1), 0.32)]
    spread = rng.uniform(0.7, 1.2)
    rays = [  # (base x, angle, metacarpal length, phalanx lengths)
        (-0.2, -42.0, 0.36, (0.28, 0.2)),
        (-0.12, -10.0 * spread, 0.5, (0.34, 0.21, 0.15)),
        (-0.03, -3.0 * spread, 0.5, (0.37, 0.23, 0.16)),
        (0.06, 4.0 * spread, 0.47, (0.34, 0.22, 0.15)),
        (0.14, 12.0 * spread, 0.42, (0.27, 0.17, 0.13)),
    ]
    for bx, deg, meta_len, phal in rays:
        down = 180.0 - deg + rng.uniform(-3, 3)  # digits point away from the forearm
        chain = _ray(rng, (bx, -0.4), down, (meta_len, *phal), 0.044)
        bones.extend(chain)
        longs.append(_LongBone(chain[0], (0.3, 0.7), 1.6))
        longs.append(_LongBone(chain[1], (0.3, 0.7), 1.6))
        soft.append(_Blob(chain[1].a, chain[-1].b, 0.068))
    return _Anatomy((0.72, 1.0), bones, longs, soft)


def _finger(rng: np.random.Generator) -> _Anatomy:
    bones = _ray(rng, (0.0, 1.8), rng.uniform(-5, 5), (1.0, 0.7, 0.42, 0.28), 0.088)
    tuft = _oval(rng, bones[-1].b, 0.05, elong=0.3)
    neighbour = _ray(rng, (0.62, 1.8), rng.uniform(5, 12), (1.0, 0.75, 0.45), 0.085)
    soft = [
        _Blob(bones[0].a, bones[-1].b, rng.uniform(0.19, 0.23)),
        _Blob(neighbour[0].a, neighbour[-1].b, 0.2),
    ]
    longs = [_LongBone(bones[1], (0.25, 0.75)), _LongBone(bones[2], (0.3, 0.7))]
    return _Anatomy((0.35, 1.0), [*bones, tuft, *neighbour], longs, soft)


def _arc(center: Point, radius: float, deg0: float, deg1: float, n: int, r: float) -> list[_Tube]:
    """A curved thin bone as a chain of short capsules (glenoid rim, ribs)."""
    angs = np.radians(np.linspace(deg0, deg1, n + 1))
    pts = [(center[0] + radius * math.cos(t), center[1] + radius * math.sin(t)) for t in angs]
    return [_Tube(p, q, r, cortex=0.35, merge=True) for p, q in zip(pts[:-1], pts[1:], strict=True)]


def _shoulder(rng: np.random.Generator) -> _Anatomy:
    hc = (0.25 + rng.uniform(-0.04, 0.04), 0.05)
    head_r = rng.uniform(0.26, 0.31)
    head = _Tube(hc, hc, head_r, cortex=0.1, medulla=0.55, density=0.9)
    tuber = replace(_oval(rng, (hc[0] + 0.19, hc[1] - 0.1), 0.085), medulla=0.6, density=0.6)
    shaft = _Tube((hc[0] + 0.06, hc[1] + 0.22), (hc[0] + 0.15, 1.9), 0.1, 1.4, 1.0)
    glenoid = _arc(hc, head_r + 0.07, 145.0, 215.0, 4, 0.035)
    scap = _Tube(
        (-0.12, 0.05), (-0.5, 0.95), 0.17, 1.4, 0.8, cortex=0.12, medulla=0.7, density=0.25
    )
    scap_edge = _Tube((-0.02, 0.25), (-0.3, 1.0), 0.035, density=0.5)
    acromion = _Tube((-0.25, -0.45), (hc[0] + 0.12, -0.36), 0.06, cortex=0.3)
    coracoid = _Tube((-0.1, -0.2), (0.05, -0.12), 0.045)
    clav_y = rng.uniform(-0.62, -0.5)
    clavicle = _Tube((-1.3, clav_y - 0.2), (0.15, clav_y + 0.05), 0.055, 1.4, 1.5)
    ribs: list[_Tube] = []
    for k in range(5):  # posterior ribs sweep laterally and down behind the scapula
        rib = _arc((-1.25, -0.35 + 0.32 * k), 0.85, -85.0, -15.0, 4, 0.03)
        ribs.extend(replace(t, density=0.35) for t in rib)
    soft = [
        _Blob((-1.6, 0.35), (0.2, 0.35), 1.0),
        _Blob((hc[0], -0.1), (hc[0] + 0.15, 1.9), 0.42),
    ]
    longs = [_LongBone(shaft, (0.12, 0.45)), _LongBone(clavicle, (0.3, 0.65))]
    bones = [*ribs, scap, scap_edge, head, tuber, shaft, *glenoid, acromion, coracoid, clavicle]
    return _Anatomy((0.9, 0.9), bones, longs, soft)


_BUILDERS: dict[str, Callable[[np.random.Generator], _Anatomy]] = {
    "elbow": _elbow,
    "finger": _finger,
    "forearm": _forearm,
    "hand": _hand,
    "humerus": _humerus,
    "shoulder": _shoulder,
    "wrist": _wrist,
}

#: Parts whose radiographs are usually taller than wide.
_TALL_PARTS = frozenset({"finger", "forearm", "humerus"})

# --------------------------------------------------------------------------------------------
# Fractures
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Break:
    """Random parameters of one fracture, in units of the broken bone's length and radius."""

    pick: int  # which long bone
    t: float  # where along its allowed range
    gap_len: float  # gap as a fraction of the bone length ...
    gap_r: float  # ... plus a fraction of its radius
    slope: float  # obliquity of the fracture line
    jag: tuple[float, float, float]  # zigzag amplitude, period (radii) and phase
    disp: float  # sideways shift of the distal fragment (radii)
    angle: float  # angulation (degrees)
    shorten: float  # axial shift (radii); negative = overlapping fragments
    butterfly: bool  # a small loose wedge fragment
    swell: float  # soft-tissue swelling radius (radii)


def _draw_break(rng: np.random.Generator, n_long: int) -> _Break:
    """Draw a break; kinds: displaced only, angulated only, or both."""
    pick, t = int(rng.integers(n_long)), rng.uniform(0.0, 1.0)
    # Conspicuous on purpose: the phantom must be learnable by a small CNN at 128 px in minutes.
    gap_len, gap_r = rng.uniform(0.08, 0.13), rng.uniform(0.8, 1.3)
    slope = math.tan(math.radians(rng.uniform(-40.0, 40.0)))
    jag = (rng.uniform(0.0, 0.45), rng.uniform(0.5, 1.1), rng.uniform(0.0, 1.0))
    disp = rng.uniform(1.0, 1.8) * rng.choice([-1.0, 1.0])
    angle = rng.uniform(6.0, 24.0) * rng.choice([-1.0, 1.0])
    kind = rng.random()
    if kind < 0.35:
        angle = 0.0
    elif kind < 0.65:
        disp *= 0.5
    shorten, butterfly = rng.uniform(-0.6, 0.1), bool(rng.random() < 0.25)
    return _Break(
        pick, t, gap_len, gap_r, slope, jag, disp, angle, shorten, butterfly, rng.uniform(1.6, 2.4)
    )


def _break_bone(bone: _LongBone, brk: _Break) -> tuple[Point, list[_Tube], _Blob]:
    """Split a tube into interlocking proximal and displaced distal fragments."""
    tube = bone.tube
    length = math.hypot(tube.b[0] - tube.a[0], tube.b[1] - tube.a[1])
    ux, uy = (tube.b[0] - tube.a[0]) / length, (tube.b[1] - tube.a[1]) / length
    s_f = (bone.t_range[0] + (bone.t_range[1] - bone.t_range[0]) * brk.t) * length
    site = (tube.a[0] + ux * s_f, tube.a[1] + uy * s_f)
    gap = (brk.gap_len * length + brk.gap_r * tube.r) * bone.severity
    amp, per, phase = brk.jag[0] * tube.r, brk.jag[1] * tube.r, brk.jag[2]
    near = replace(tube, cut=_Cut(-1, s_f - gap / 2, brk.slope, amp, per, phase))
    angle = brk.angle * min(1.0, 0.6 / max(length - s_f, 1e-3))  # same tip excursion if long
    distal = _rot_tube(
        replace(tube, cut=_Cut(+1, s_f + gap / 2, brk.slope, amp, per, phase)), site, angle
    )
    perp, axial = brk.disp * tube.r * bone.severity, brk.shorten * tube.r
    dx, dy = ux * axial - uy * perp, uy * axial + ux * perp
    distal = replace(
        distal, a=(distal.a[0] + dx, distal.a[1] + dy), b=(distal.b[0] + dx, distal.b[1] + dy)
    )
    fragments = [near, distal]
    if brk.butterfly:
        c = (site[0] - uy * tube.r * 1.1, site[1] + ux * tube.r * 1.1)
        fragments.append(_Tube(c, (c[0] + ux * gap, c[1] + uy * gap), tube.r * 0.35, cortex=0.5))
    return site, fragments, _Blob(site, site, tube.r * brk.swell)


def _fracture(rng: np.random.Generator, anatomy: _Anatomy, apply: bool) -> _Anatomy:
    """Break one long bone: gap, interlocking jagged edges, displacement and angulation.

    The same random numbers are drawn whether or not ``apply`` is set, so a fractured and an
    intact render from equal generator states differ only by the fracture itself; the intact
    twin still records the site so that both are framed alike.
    """
    brk = _draw_break(rng, len(anatomy.long_bones))
    # Mostly the thickest long bone: the phantom must be learnable by a small CNN in minutes.
    thickest = max(range(len(anatomy.long_bones)), key=lambda i: anatomy.long_bones[i].tube.r)
    bone = anatomy.long_bones[thickest if brk.t < 0.7 else brk.pick]
    site, fragments, swelling = _break_bone(bone, brk)
    if not apply:
        return replace(anatomy, site=site)
    bones = [b for b in anatomy.bones if b is not bone.tube] + fragments
    return _Anatomy(anatomy.extent, bones, anatomy.long_bones, [*anatomy.soft, swelling], site)


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


def _check_part(body_part: str) -> None:
    if body_part not in _BUILDERS:
        raise ConfigError(
            f"unknown body part {body_part!r}; expected one of {', '.join(MURA_BODY_PARTS)}"
        )


def _check_shape(shape: Sequence[int]) -> tuple[int, int]:
    if len(shape) != 2 or min(int(shape[0]), int(shape[1])) < 32:
        raise ConfigError(f"image shape {tuple(shape)!r} must be (height, width), both >= 32")
    return int(shape[0]), int(shape[1])


def _anatomy(rng: np.random.Generator, body_part: str, fractured: bool) -> _Anatomy:
    _check_part(body_part)
    return _fracture(rng, _BUILDERS[body_part](rng), fractured)


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


# --------------------------------------------------------------------------------------------
# Writing files
# --------------------------------------------------------------------------------------------


def _atomic_write(path: Path, data: bytes) -> None:
    """Readers (a trainer started in parallel, a crashed run) never see a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _to_u8(img: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)


def _png_bytes(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(_to_u8(img)).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def _check_range(name: str, pair: Sequence[int], lo: int) -> tuple[int, int]:
    try:
        a, b = (int(x) for x in pair)
    except (TypeError, ValueError):
        a, b = -1, -2
    if not lo <= a <= b:
        raise ConfigError(f"{name} {tuple(pair)!r} must be (min, max) with {lo} <= min <= max")
    return a, b


def _check_count(name: str, value: int, lo: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < lo:
        raise ConfigError(f"{name} must be an integer >= {lo}, got {value!r}")
    return int(value)


def _shape_for(rng: np.random.Generator, part: str, size_range: tuple[int, int]) -> tuple[int, int]:
    """Image size in the range; long bones get portrait frames as on a real plate."""
    a, b = (int(x) for x in rng.integers(size_range[0], size_range[1] + 1, size=2))
    if part in _TALL_PARTS:
        a, b = max(a, b), min(a, b)
    return a, b


_MARKER = ".mura-synth-{kind}.json"


def _claim(root: Path, kind: str, entries: Sequence[str], meta: dict) -> None:
    """Remove what an earlier run of this writer left, and refuse to clobber foreign files.

    Without this, regenerating with fewer patients would leave orphan images that folder-walking
    loaders pick up, breaking determinism.
    """
    root.mkdir(parents=True, exist_ok=True)
    marker = root / _MARKER.format(kind=kind)
    if marker.exists():
        try:
            old = json.loads(marker.read_text()).get("entries", [])
        except (ValueError, AttributeError):
            old = []
        for name in old:
            target = root / Path(str(name)).name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
    clash = [name for name in entries if (root / name).exists()]
    if clash:
        raise ConfigError(
            f"{root / clash[0]} already exists and was not written by mura-synth; "
            "choose an empty output folder"
        )
    _atomic_write(marker, json.dumps({**meta, "kind": kind, "entries": list(entries)}).encode())


def _check_jobs(jobs: int | None) -> int:
    return min(os.cpu_count() or 1, 8) if jobs is None else _check_count("jobs", jobs, 1)


def _parallel_map(fn: Callable[[tuple], object], tasks: Sequence[tuple], jobs: int) -> list:
    """Map in worker processes when it pays off; results keep task order (determinism).

    Workers are spawned, not forked: a caller that already imported torch (the end-to-end
    tests, the trainer) must not fork its OpenMP thread pools.
    """
    if jobs == 1 or len(tasks) < 4 * jobs:
        return [fn(t) for t in tasks]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
        return list(pool.map(fn, tasks, chunksize=max(1, len(tasks) // (jobs * 8))))


def _csv_bytes(rows: Sequence[Sequence[object]], header: Sequence[str] | None = None) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    if header is not None:
        writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue().encode()


# ---- MURA ----------------------------------------------------------------------------------

_MURA_DIR = "MURA-v1.1"
_POSITIVE_RATE = 0.4


def _mura_plan(seed: int, n_patients: int) -> list[tuple[str, int, str, int, bool, int]]:
    """Decide every study up front: (split, patient, part, study number, positive, n_images).

    Patients are numbered train first, then valid, as in MURA-v1.1; the split is by patient so
    that no patient leaks between training and validation.
    """
    rng = np.random.default_rng([seed, 1, 0])
    n_valid = max(1, round(0.2 * n_patients))
    plan = []
    for pid in range(1, n_patients + 1):
        split = "train" if pid <= n_patients - n_valid else "valid"
        per_part: dict[str, int] = {}
        for _ in range(int(rng.integers(1, 3))):
            part = MURA_BODY_PARTS[int(rng.integers(len(MURA_BODY_PARTS)))]
            per_part[part] = per_part.get(part, 0) + 1
            positive = bool(rng.random() < _POSITIVE_RATE)
            plan.append((split, pid, part, per_part[part], positive, int(rng.integers(1, 5))))
    return plan


def _write_mura_study(task: tuple) -> tuple[str, list[str]]:
    """Render and write one study; a pure function of its task so workers can run it."""
    root, seed, idx, (split, pid, part, number, positive, n_img), size_range = task
    label = "positive" if positive else "negative"
    rel = f"{_MURA_DIR}/{split}/XR_{part.upper()}/patient{pid:05d}/study{number}_{label}/"
    anatomy = _anatomy(np.random.default_rng([seed, 1, 1, idx]), part, positive)
    paths = []
    for k in range(1, n_img + 1):
        vrng = np.random.default_rng([seed, 1, 2, idx, k])
        img = _render(vrng, anatomy, _shape_for(vrng, part, size_range), _MURA_STYLE)
        _atomic_write(Path(root) / f"{rel}image{k}.png", _png_bytes(img))
        paths.append(f"{rel}image{k}.png")
    return rel, paths


def write_mura(
    root: str | os.PathLike[str],
    *,
    seed: int,
    n_patients: int,
    size_range: tuple[int, int] = (256, 384),
    jobs: int | None = None,
) -> dict[str, dict[str, int]]:
    """Write a phantom MURA-v1.1 under ``root`` so loaders for the real set run unchanged.

    A study's images are views of one anatomy (one fracture, if positive) seen under different
    poses and exposures, like the views of a real study. Returns per-split counts of
    ``images``, ``studies``, ``positive_studies`` and ``patients``. ``jobs`` worker processes
    (default: CPU count) render in parallel; the output does not depend on it.
    """
    n_patients = _check_count("n_patients", n_patients, 2)
    size_range = _check_range("size_range", size_range, 32)
    seed, jobs = _check_count("seed", seed, 0), _check_jobs(jobs)
    root = Path(root)
    _claim(root, "mura", [_MURA_DIR], {"seed": int(seed), "n_patients": n_patients})
    images: dict[str, list[list[str]]] = {"train": [], "valid": []}
    studies: dict[str, list[list[object]]] = {"train": [], "valid": []}
    patients: dict[str, set[int]] = {"train": set(), "valid": set()}
    plan = _mura_plan(seed, n_patients)
    tasks = [(str(root), seed, idx, study, size_range) for idx, study in enumerate(plan)]
    written = _parallel_map(_write_mura_study, tasks, jobs)
    for (split, pid, _, _, positive, _), (rel, paths) in zip(plan, written, strict=True):
        images[split].extend([p] for p in paths)
        studies[split].append([rel, int(positive)])
        patients[split].add(pid)
    for split in ("train", "valid"):
        _atomic_write(root / _MURA_DIR / f"{split}_image_paths.csv", _csv_bytes(images[split]))
        _atomic_write(root / _MURA_DIR / f"{split}_labeled_studies.csv", _csv_bytes(studies[split]))
    return {
        split: {
            "images": len(images[split]),
            "studies": len(studies[split]),
            "positive_studies": sum(int(row[1]) for row in studies[split]),  # type: ignore[arg-type]
            "patients": len(patients[split]),
        }
        for split in ("train", "valid")
    }


# ---- external set --------------------------------------------------------------------------

_EXTERNAL_CLASSES = ("fractured", "not fractured")


def _write_external_image(task: tuple) -> tuple[str, str]:
    root, seed, i, fractured, split, size_range = task
    irng = np.random.default_rng([seed, 2, 1, i])
    part = MURA_BODY_PARTS[int(irng.integers(len(MURA_BODY_PARTS)))]
    shape = _shape_for(irng, part, size_range)
    img = _render(irng, _anatomy(irng, part, fractured), shape, _EXTERNAL_STYLE)
    cls = _EXTERNAL_CLASSES[0] if fractured else _EXTERNAL_CLASSES[1]
    pil = Image.fromarray(_to_u8(img))
    if irng.random() < 0.5:
        pil = pil.convert("RGB")
    buf = io.BytesIO()
    pil.save(buf, format="JPEG", quality=int(irng.integers(75, 96)))
    _atomic_write(Path(root) / split / cls / f"{i:05d}-{part}.jpg", buf.getvalue())
    return split, cls


def write_external(
    root: str | os.PathLike[str],
    *,
    seed: int,
    n_images: int,
    size_range: tuple[int, int] = (224, 320),
    jobs: int | None = None,
) -> dict[str, dict[str, int]]:
    """Write a phantom of the external fracture set: another site, other exposure and noise.

    It exists to measure domain shift, so it uses its own acquisition style, JPEG compression
    and a mix of grayscale and RGB files. Returns per-split counts per class.
    """
    n_images = _check_count("n_images", n_images, 4)
    size_range = _check_range("size_range", size_range, 32)
    seed, jobs = _check_count("seed", seed, 0), _check_jobs(jobs)
    root = Path(root)
    _claim(root, "external", ["train", "test"], {"seed": int(seed), "n_images": n_images})
    rng = np.random.default_rng([seed, 2, 0])
    labels = np.arange(n_images) % 2 == 0
    rng.shuffle(labels)
    n_test = max(2, round(0.2 * n_images))
    counts = {s: {c: 0 for c in _EXTERNAL_CLASSES} for s in ("train", "test")}
    tasks = [
        (str(root), seed, i, bool(fr), "test" if i >= n_images - n_test else "train", size_range)
        for i, fr in enumerate(labels.tolist())
    ]
    for split, cls in _parallel_map(_write_external_image, tasks, jobs):
        counts[split][cls] += 1
    return counts


# ---- DICOM ---------------------------------------------------------------------------------

_CR_STORAGE = "1.2.840.10008.5.1.4.1.1.1"
_DX_PRESENTATION_STORAGE = "1.2.840.10008.5.1.4.1.1.1.1"
_TRANSFER_SYNTAXES = (
    "1.2.840.10008.1.2.1",  # Explicit VR Little Endian
    "1.2.840.10008.1.2",  # Implicit VR Little Endian
    "1.2.840.10008.1.2.5",  # RLE Lossless
    "1.2.840.10008.1.2.4.80",  # JPEG-LS Lossless
    "1.2.840.10008.1.2.4.90",  # JPEG 2000 Lossless
)
_BITS = ((8, 8), (16, 10), (16, 12), (16, 16))  # (BitsAllocated, BitsStored)
_RESCALE: tuple[tuple[float, float] | None, ...] = (
    None,
    (1.0, 0.0),
    (1.0, -1024.0),
    None,
    (0.5, 0.0),
    (2.0, -100.0),
    None,
)
_PHOTOMETRIC = ("MONOCHROME1", "MONOCHROME2", "MONOCHROME2")


@dataclass(frozen=True)
class _DicomImage:
    """Encoding choices of one file, drawn from cycles so a few studies cover every case."""

    transfer_syntax: str
    photometric: str
    bits_allocated: int
    bits_stored: int
    rescale: tuple[float, float] | None


def _dicom_encoding(i: int, offsets: Sequence[int]) -> _DicomImage:
    ba, bs = _BITS[(i + offsets[2]) % len(_BITS)]
    return _DicomImage(
        _TRANSFER_SYNTAXES[(i + offsets[0]) % len(_TRANSFER_SYNTAXES)],
        _PHOTOMETRIC[(i + offsets[1]) % len(_PHOTOMETRIC)],
        ba,
        bs,
        _RESCALE[(i + offsets[3]) % len(_RESCALE)],
    )


def _stored_pixels(img: np.ndarray, enc: _DicomImage, rng: np.random.Generator) -> np.ndarray:
    """Quantise to BitsStored, leaving detector-like margins; MONOCHROME1 stores bone dark."""
    top = (1 << enc.bits_stored) - 1
    lo, hi = rng.uniform(0.0, 0.05) * top, rng.uniform(0.85, 1.0) * top
    raw = np.rint(lo + img * (hi - lo))
    if enc.photometric == "MONOCHROME1":
        raw = top - raw
    return raw.astype(np.uint8 if enc.bits_allocated == 8 else np.uint16)


@dataclass(frozen=True)
class _DicomStudy:
    """Study-level attributes shared by every file of one DICOM study."""

    index: int
    folder: str
    uid: str
    label: int
    part: str
    modality: str
    n_images: int
    date: str
    laterality: str
    spacing: str


def _uid(seed: int, *parts: object) -> str:
    """A valid UID that is a pure function of the seed: reruns must be byte-identical."""
    from pydicom.uid import generate_uid

    return str(generate_uid(entropy_srcs=[str(seed), *(str(p) for p in parts)]))


def _dicom_header(st: _DicomStudy, k: int, sop_uid: str, series_uid: str):
    """Patient/study/series/instance modules and file meta for image ``k`` of a study."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian

    sop_class = _CR_STORAGE if st.modality == "CR" else _DX_PRESENTATION_STORAGE
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds.file_meta.ImplementationVersionName = "MURA_SYNTH_1"
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, sop_uid
    ds.StudyInstanceUID, ds.SeriesInstanceUID = st.uid, series_uid
    ds.PatientName = ds.PatientID = f"PHANTOM^{st.index}"
    ds.PatientBirthDate = ds.PatientSex = ds.ReferringPhysicianName = ""
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = st.date
    ds.StudyTime = "101500"
    ds.AccessionNumber = f"SYN{st.index:06d}"
    ds.StudyID = str(st.index)
    ds.StudyDescription = f"XR {st.part.upper()} {st.n_images} VIEW{'S' * (st.n_images > 1)}"
    ds.SeriesDescription = f"{st.part.upper()} VIEW {k}"
    ds.Modality = st.modality
    ds.Manufacturer = "mura-synth phantom"
    ds.InstitutionName = "SYNTHETIC"
    ds.SeriesNumber = k if st.modality == "CR" else 1
    ds.InstanceNumber = k
    ds.BodyPartExamined = st.part.upper()
    ds.ViewPosition = ("AP", "LAT", "PA")[(k - 1) % 3]
    ds.ImageLaterality = ds.Laterality = st.laterality
    ds.PatientOrientation = ["A", "F"] if k % 2 else ["P", "F"]
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.BurnedInAnnotation = "NO"
    ds.PixelSpacing = ds.ImagerPixelSpacing = [st.spacing, st.spacing]
    if st.modality == "DX":
        ds.PresentationIntentType = "FOR PRESENTATION"
    return ds


def _dicom_pixels(ds, pixels: np.ndarray, enc: _DicomImage) -> None:
    """Image pixel module, modality and VOI LUT attributes, then the transfer syntax."""
    ds.PresentationLUTShape = "INVERSE" if enc.photometric == "MONOCHROME1" else "IDENTITY"
    ds.set_pixel_data(pixels, enc.photometric, enc.bits_stored, generate_instance_uid=False)
    slope, intercept = enc.rescale or (1.0, 0.0)
    if enc.rescale is not None:
        ds.RescaleSlope, ds.RescaleIntercept = f"{slope:g}", f"{intercept:g}"
        ds.RescaleType = "US"
    lo, hi = float(pixels.min()) * slope + intercept, float(pixels.max()) * slope + intercept
    # PS3.3 C.11.2.1.2: this centre/width maps lo to black and hi to white exactly
    ds.WindowCenter = f"{(lo + hi) / 2 + 0.5:.2f}"
    ds.WindowWidth = f"{hi - lo + 1.0:.2f}"
    if enc.transfer_syntax in _TRANSFER_SYNTAXES[2:]:
        ds.compress(enc.transfer_syntax, pixels, generate_instance_uid=False)
    else:
        ds.file_meta.TransferSyntaxUID = enc.transfer_syntax


def _write_dicom_study(task: tuple) -> list[dict[str, object]]:
    """Write one study's files; CR gets a series per view, DX one series for the study."""
    root, seed, st, anatomy, encodings = task
    images: list[dict[str, object]] = []
    for k, enc in enumerate(encodings, start=1):
        irng = np.random.default_rng([seed, 3, 2, st.index, k])
        # pydicom's RLE encoder is pure Python (~1 s per megapixel): keep those frames small
        sizes = (512, 600) if enc.transfer_syntax == _TRANSFER_SYNTAXES[2] else (512, 1024)
        shape = _shape_for(irng, st.part, sizes)
        pixels = _stored_pixels(_render(irng, anatomy, shape, _MURA_STYLE), enc, irng)
        sop_uid = _uid(seed, "sop", st.index, k)
        series = (st.index, k) if st.modality == "CR" else (st.index,)
        ds = _dicom_header(st, k, sop_uid, _uid(seed, "series", *series))
        _dicom_pixels(ds, pixels, enc)
        name = f"IM{k:05d}" if st.index % 3 == 0 else f"image{k}.dcm"
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True)
        _atomic_write(Path(root) / st.folder / name, buf.getvalue())
        images.append(
            {
                "file": f"{st.folder}/{name}",
                "sop_instance_uid": sop_uid,
                "transfer_syntax": enc.transfer_syntax,
                "photometric": enc.photometric,
                "bits_allocated": enc.bits_allocated,
                "bits_stored": enc.bits_stored,
                "rescale": None if enc.rescale is None else list(enc.rescale),
                "shape": list(shape),
            }
        )
    return images


def write_dicom_studies(
    root: str | os.PathLike[str], *, seed: int, n_studies: int, jobs: int | None = None
) -> list[dict[str, object]]:
    """Write phantom DICOM studies the way a PACS export delivers them, plus ``labels.csv``.

    Encodings (transfer syntax, photometric, bit depth, rescale) rotate through fixed cycles of
    coprime lengths, so even a handful of studies covers every decoder path the screening app
    must handle. Every third study names its files without the ``.dcm`` extension, as DICOMDIR
    exports do. Returns one dict per study: ``study_uid``, ``label`` (1 = fractured),
    ``body_part``, ``folder``, ``modality`` and ``images`` (per-file encoding details).
    ``jobs`` worker processes (default: CPU count) write studies in parallel.
    """
    n_studies = _check_count("n_studies", n_studies, 1)
    seed, jobs = _check_count("seed", seed, 0), _check_jobs(jobs)
    root = Path(root)
    folders = [f"study_{i:04d}" for i in range(1, n_studies + 1)]
    _claim(root, "dicom", [*folders, "labels.csv"], {"seed": int(seed), "n_studies": n_studies})
    rng = np.random.default_rng([seed, 3, 0])
    offsets = [int(x) for x in rng.integers(0, 7, size=4)]
    parts = [MURA_BODY_PARTS[int(i)] for i in rng.permutation(len(MURA_BODY_PARTS))]
    labels = (np.arange(n_studies) % 2 == 1).tolist()
    rng.shuffle(labels)
    tasks = []
    image_index = 0
    for i, folder in enumerate(folders, start=1):
        srng = np.random.default_rng([seed, 3, 1, i])
        st = _DicomStudy(
            index=i,
            folder=folder,
            uid=_uid(seed, "study", i),
            label=int(labels[i - 1]),
            part=parts[(i - 1) % len(parts)],
            modality=("CR", "DX")[i % 2],
            n_images=int(srng.integers(1, 4)),
            date=f"2024{int(srng.integers(1, 13)):02d}{int(srng.integers(1, 29)):02d}",
            laterality="L" if srng.random() < 0.5 else "R",
            spacing=f"{srng.uniform(0.1, 0.2):.3f}",
        )
        anatomy = _anatomy(srng, st.part, bool(st.label))
        encodings = [_dicom_encoding(image_index + k, offsets) for k in range(st.n_images)]
        image_index += st.n_images
        tasks.append((str(root), seed, st, anatomy, encodings))
    studies: list[dict[str, object]] = [
        {
            "study_uid": st.uid,
            "label": st.label,
            "body_part": st.part,
            "folder": st.folder,
            "modality": st.modality,
            "images": images,
        }
        for (_, _, st, _, _), images in zip(
            tasks, _parallel_map(_write_dicom_study, tasks, jobs), strict=True
        )
    ]
    rows = [[s["study_uid"], s["label"], s["body_part"], s["folder"]] for s in studies]
    header = ("study_uid", "label", "body_part", "folder")
    _atomic_write(root / "labels.csv", _csv_bytes(rows, header))
    return studies


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------

_KINDS = ("mura", "external", "dicom")


def _parse_only(text: str) -> list[str]:
    kinds = [k.strip() for k in text.split(",") if k.strip()]
    bad = [k for k in kinds if k not in _KINDS]
    if bad or not kinds:
        raise ConfigError(f"--only {text!r}: expected a comma list of {', '.join(_KINDS)}")
    return kinds


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mura-synth",
        description=(
            "Write deterministic phantom radiographs in the layouts the project reads: "
            "OUT/mura/MURA-v1.1 (MURA tree + CSVs), OUT/external ({train,test}/{fractured,"
            "not fractured}/*.jpg) and OUT/dicom (DICOM studies + labels.csv). "
            "Synthetic data for development and tests only; not for diagnostic use."
        ),
        epilog=(
            "Rerunning into the same OUT replaces what an earlier mura-synth run wrote there "
            "(recorded in hidden .mura-synth-*.json markers) and refuses to overwrite anything "
            "else."
        ),
    )
    p.add_argument("out", metavar="OUT", help="output folder (created if missing)")
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="random seed (default 0); equal seeds give byte-identical files",
    )
    p.add_argument(
        "--mura-patients",
        type=int,
        default=300,
        metavar="N",
        help="patients in the MURA phantom, split ~80/20 into train/valid (default 300)",
    )
    p.add_argument(
        "--external-images",
        type=int,
        default=200,
        metavar="N",
        help="images in the external-set phantom, ~balanced, ~80/20 train/test (default 200)",
    )
    p.add_argument(
        "--dicom-studies",
        type=int,
        default=12,
        metavar="N",
        help="DICOM studies of 1-3 images covering CR/DX, MONOCHROME1/2, 8-16 bits and "
        "uncompressed, RLE, JPEG-LS and JPEG 2000 encodings (default 12)",
    )
    p.add_argument(
        "--jobs",
        type=int,
        default=None,
        metavar="N",
        help="worker processes for rendering (default: CPU count); output does not depend on it",
    )
    p.add_argument(
        "--only",
        default=",".join(_KINDS),
        metavar="KINDS",
        help="comma list of what to write, from mura,external,dicom (default: all three)",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``mura-synth``; bad options exit with status 2 and name the value."""
    parser = _parser()
    args = parser.parse_args(argv)
    out = Path(args.out)
    start = time.perf_counter()
    try:
        kinds = _parse_only(args.only)
        if "mura" in kinds:
            c = write_mura(
                out / "mura", seed=args.seed, n_patients=args.mura_patients, jobs=args.jobs
            )
            for split, n in c.items():
                print(
                    f"mura/{split}: {n['patients']} patients, {n['studies']} studies "
                    f"({n['positive_studies']} positive), {n['images']} images"
                )
        if "external" in kinds:
            e = write_external(
                out / "external", seed=args.seed, n_images=args.external_images, jobs=args.jobs
            )
            for split, n in e.items():
                print(f"external/{split}: " + ", ".join(f"{v} {k}" for k, v in n.items()))
        if "dicom" in kinds:
            d = write_dicom_studies(
                out / "dicom", seed=args.seed, n_studies=args.dicom_studies, jobs=args.jobs
            )
            n_files = sum(len(s["images"]) for s in d)  # type: ignore[arg-type]
            print(f"dicom: {len(d)} studies, {n_files} files, labels in {out / 'dicom/labels.csv'}")
    except ConfigError as exc:
        parser.error(str(exc))
    print(f"wrote {out} in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
