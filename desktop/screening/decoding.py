"""Which decoding makes a screening run's scores: exact, or the reduced resolution a card validated.

JPEG 2000 and baseline JPEG can be decoded at a reduced resolution (long side >= twice the
model's input) several times faster, with slightly different scores. ``mura-compress`` measures
how different for each model and codec (``compress.reduced_decode``) and records the verdict in
the card; for the codecs it validated, that decoding is the default, so the screener and the
viewer (which scores the same way) give the same numbers. Everything else decodes exactly by
default. ``--fast-decode`` forces the reduced decoding of both codecs (the opt-in it has always
been, validated or not), ``--exact-decode`` the exact one. The state, worklist and report record
which made the scores, and a run never resumes with another
(:meth:`desktop.screening.state.ScreenState.begin`).
"""

from __future__ import annotations

from collections.abc import Mapping

from desktop.screening.state import FastDecode, decode_codecs
from models.errors import ConfigError
from models.reduction import CODECS, codec_names, validated_reduction

__all__ = ["choose_fast_decode", "decoding_text", "validated"]


def validated(card: Mapping) -> bool:
    """The card's ``reduced_decode`` check passed, for some codec, for the rule the screener applies."""
    return validated_reduction(card) is not None


def choose_fast_decode(card: Mapping, *, fast: bool = False, exact: bool = False) -> FastDecode:
    """How a run decodes: the flag given, else the codecs the card validated (True: both).

    Raises :class:`~models.errors.ConfigError` for both flags at once.
    """
    if fast and exact:
        raise ConfigError("--fast-decode and --exact-decode contradict each other: give one")
    if fast or exact:
        return fast
    r = validated_reduction(card)
    if r is None:
        return False
    return True if r.codecs == CODECS else r.codecs


def decoding_text(card: Mapping, fast: FastDecode) -> str:
    """One sentence for the terminal and the report: how the images were decoded, and on what
    authority when it was not exactly."""
    codecs = decode_codecs(fast)
    if not codecs:
        return "exact (every file decoded at full resolution)"
    size = card.get("input", {}).get("preprocessing", {}).get("input_size")
    side = f"{2 * int(size)} px" if size else "twice the model's input"
    how = f"{codec_names(codecs)} decoded with a long side of at least {side}"
    others = CODECS - codecs
    if others:
        how += f"; {codec_names(others)} in full"
    check = card.get("reduced_decode") or {}
    r = validated_reduction(card)
    if r is not None and codecs <= r.codecs:
        by = {c: v for c, v in (check.get("by_codec") or {}).items() if c in codecs}
        n = (sum(int(v.get("n_reduced", 0)) for v in by.values()) if by
             else check.get("n_reduced", 0) + check.get("n_jpeg2000", 0))
        dp = (max(float(v.get("max_abs_dp", 0.0)) for v in by.values()) if by
              else (check.get("abs_dp_reduced") or {}).get("max", float("nan")))
        return (f"reduced resolution, validated by the model card ({how}; over {n} reduced decodes of "
                f"its gate sets it kept the INT8 gate's bar, max |Δp| {dp:.3f}; --exact-decode "
                "decodes in full)")
    return f"reduced resolution (--fast-decode, not validated by the model card): {how}; " \
           "scores differ slightly from an exact decode"
