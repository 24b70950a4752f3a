"""Which decoding makes a screening run's scores: exact, or the reduced resolution a card validated.

JPEG 2000 and baseline JPEG can be decoded at a reduced resolution (long side >= twice the
model's input) several times faster, with slightly different scores. ``mura-compress`` measures
how different for each model (``compress.reduced_decode``) and records the verdict in the card;
for a model whose card says it passed, that decoding is the default, so the screener and the
viewer (which scores the same way) give the same numbers. Everything else decodes exactly by
default. ``--fast-decode`` forces the reduced decoding (the opt-in it has always been, validated
or not), ``--exact-decode`` the exact one. The state, worklist and report record which made the
scores, and a run never resumes with the other (:meth:`desktop.screening.state.ScreenState.begin`).
"""

from __future__ import annotations

from collections.abc import Mapping

from models.engine import reduced_decode_side
from models.errors import ConfigError

__all__ = ["choose_fast_decode", "decoding_text", "validated"]


def validated(card: Mapping) -> bool:
    """The card's ``reduced_decode`` check passed for the rule the screener applies."""
    return reduced_decode_side(card) is not None


def choose_fast_decode(card: Mapping, *, fast: bool = False, exact: bool = False) -> bool:
    """Whether a run decodes at reduced resolution: the flag given, else the card's verdict.

    Raises :class:`~models.errors.ConfigError` for both flags at once.
    """
    if fast and exact:
        raise ConfigError("--fast-decode and --exact-decode contradict each other: give one")
    if fast or exact:
        return fast
    return validated(card)


def decoding_text(card: Mapping, fast: bool) -> str:
    """One sentence for the terminal and the report: how the images were decoded, and on what
    authority when it was not exactly."""
    if not fast:
        return "exact (every file decoded at full resolution)"
    size = card.get("input", {}).get("preprocessing", {}).get("input_size")
    side = f"{2 * int(size)} px" if size else "twice the model's input"
    how = f"JPEG 2000 and baseline JPEG decoded with a long side of at least {side}"
    check = card.get("reduced_decode") or {}
    if validated(card):
        dp = check.get("abs_dp_reduced") or {}
        return (f"reduced resolution, validated by the model card ({how}; over "
                f"{check.get('n_reduced', 0) + check.get('n_jpeg2000', 0)} reduced decodes of its "
                f"gate sets it kept the INT8 gate's bar, max |Δp| {dp.get('max', float('nan')):.3f}; "
                "--exact-decode decodes in full)")
    return f"reduced resolution (--fast-decode, not validated by the model card): {how}; " \
           "scores differ slightly from an exact decode"
