"""Phantom anatomy: bones as hollow tubes, body-part builders and fractures.

Everything here is geometry in canonical units, independent of pixels, so a study's views can
share one anatomy (one fracture) seen under different poses. Pure numpy, no torch: the generator
runs on clinic PCs and in the runtime's tests.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from models.errors import ConfigError
from models.labels import MURA_BODY_PARTS

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


def _check_part(body_part: str) -> None:
    if body_part not in _BUILDERS:
        raise ConfigError(
            f"unknown body part {body_part!r}; expected one of {', '.join(MURA_BODY_PARTS)}"
        )


def _anatomy(rng: np.random.Generator, body_part: str, fractured: bool) -> _Anatomy:
    _check_part(body_part)
    return _fracture(rng, _BUILDERS[body_part](rng), fractured)
