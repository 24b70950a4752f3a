"""Scores first, full resolution after: the viewer's side of a validated reduced decode (Qt-free).

A study of three 2k JPEG 2000 radiographs takes ~1.7 s to decode in full and ~0.1 s at the
resolution the model needs (twice its input). For a model whose card says the reduced decode
passed its gate (``compress.reduced_decode``, :func:`models.reduction.validated_reduction`) the
viewer decodes and scores that first (``desktop.viewer.studies.decode_study`` with
``score_side``), and this module's task then decodes each stand-in in full so the reader gets
every pixel, as before; the scores stay, being those of the validated decode. For any other
model nothing here runs and the viewer decodes exactly, as it always has.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from desktop.viewer.studies import (
    CancelledFn,
    DecodedImage,
    PartialFn,
    ProgressFn,
    StudyOutcome,
    ViewImage,
    check_cancelled,
    decode_view,
)
from models.reduction import Reduction, validated_reduction

__all__ = ["FullResolution", "decode_full", "reduced_side_hint", "stand_ins"]


@dataclass(frozen=True)
class FullResolution:
    """The result of :func:`decode_full`: study ``key`` now holds full decodes only."""

    key: str


def reduced_side_hint(bundle: str | Path) -> Reduction | None:
    """The reduced decode a bundle's card validated, read before the model is loaded (None:
    none, or no readable card).

    Why a hint: at start-up the model compiles for a second or two while the first study is
    decoded; knowing now that its scores may come from the reduced decode lets that decode be
    the one made. Nothing is scored from it until the loaded engine, whose card was verified,
    agrees (``desktop.viewer.studies.score_outcome`` decodes in full otherwise).
    """
    try:
        card = json.loads((Path(bundle) / "card.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return validated_reduction(card) if isinstance(card, dict) else None


def stand_ins(outcome: StudyOutcome) -> list[tuple[int, ViewImage]]:
    """The images of ``outcome`` still shown from a reduced decode, with their index."""
    return [(k, v) for k, v in enumerate(outcome.images) if v.preview and v.image is not None]


def decode_full(key: str, items: list[tuple[int, ViewImage]], *, progress: ProgressFn | None = None,
                cancelled: CancelledFn | None = None, partial: PartialFn | None = None) -> FullResolution:
    """Decode each stand-in in full and hand it over (``partial``: a :class:`DecodedImage`
    without scores; the receiver keeps the stand-in's). A file whose full decode fails keeps
    its stand-in: it is still viewable, and its score came from the validated decode."""
    for n, (k, v) in enumerate(items):
        check_cancelled(cancelled)
        if progress is not None:
            progress(n, len(items), f"Full resolution: {v.name} ({n + 1}/{len(items)})…")
        full = decode_view(v.ref, v.series, None)
        if full.image is not None and partial is not None:
            partial(DecodedImage(key, k, full))
    return FullResolution(key)
