"""Which reduced-resolution decode a model's card validated: its long side, and for which codecs.

A reduced decode (JPEG 2000 resolution levels, baseline JPEG DCT scaling; ``models.dicom``)
gives slightly different pixels than a full decode followed by the model's resize, so a runtime
scores from it only where ``compress.reduced_decode`` measured the model and its verdict passed.
The two reductions are different algorithms (a wavelet low-pass, a scaled IDCT) and move the
scores differently, so the check judges each codec on the comparisons that hold its reduced
images, and the card says which passed (``codecs_passed``); ``passed`` means every codec did.
A card without the section (every bundle made before it existed) decodes exactly.

Pure: a card (a mapping) in, a :class:`Reduction` or None out; the screener, the viewer and the
check all read the verdict here.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import NamedTuple

__all__ = ["CODECS", "REDUCED_DECODE_FACTOR", "Reduction", "codec_names", "reduced_decode_side",
           "validated_reduction"]

#: A reduced-resolution decode keeps the image's long side >= this many times the model's input
#: size (the rule ``compress.reduced_decode`` validates and every runtime applies).
REDUCED_DECODE_FACTOR = 2
#: The codecs that have a reduced decode: baseline JPEG (DICOM or plain .jpg) and JPEG 2000.
CODECS: frozenset[str] = frozenset({"jpeg", "jpeg2000"})
_NAMES = {"jpeg": "baseline JPEG", "jpeg2000": "JPEG 2000"}


class Reduction(NamedTuple):
    """Decode these codecs with a long side of at least ``min_side`` (every other file in full)."""

    min_side: int
    codecs: frozenset[str]


def codec_names(codecs: Collection[str]) -> str:
    """'JPEG 2000 and baseline JPEG', 'JPEG 2000', ...: for messages and reports."""
    return " and ".join(_NAMES.get(c, c) for c in sorted(codecs, reverse=True)) or "no codec"


def validated_reduction(card: Mapping) -> Reduction | None:
    """The reduced decode this card's check validated, or None: decode exactly.

    Only for the rule every runtime applies (``min_side`` = twice the input size): a section
    measured at another side validates nothing here. ``passed`` (every codec passed) stands for
    all of :data:`CODECS`; otherwise the codecs listed in ``codecs_passed``.
    """
    section = card.get("reduced_decode")
    if not isinstance(section, Mapping):
        return None
    try:
        side = REDUCED_DECODE_FACTOR * int(card["input"]["preprocessing"]["input_size"])
    except (KeyError, TypeError, ValueError):
        return None
    if section.get("min_side") != side:
        return None
    if section.get("passed") is True:
        return Reduction(side, CODECS)
    listed = section.get("codecs_passed")
    codecs = frozenset(c for c in listed if c in CODECS) if isinstance(listed, list) else frozenset()
    return Reduction(side, codecs) if codecs else None


def reduced_decode_side(card: Mapping) -> int | None:
    """The long side of :func:`validated_reduction` (None: no codec validated)."""
    r = validated_reduction(card)
    return None if r is None else r.min_side
