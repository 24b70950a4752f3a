"""Which reduced decode a card validated (models.reduction): side and codecs, nothing else."""

from __future__ import annotations

import pytest

from models.reduction import (
    CODECS,
    Reduction,
    codec_names,
    reduced_decode_side,
    validated_reduction,
)


def _card(section: dict | None, size: int = 256) -> dict:
    card: dict = {"input": {"preprocessing": {"input_size": size}}}
    if section is not None:
        card["reduced_decode"] = section
    return card


def test_passed_means_every_codec():
    card = _card({"passed": True, "min_side": 512})
    assert validated_reduction(card) == Reduction(512, CODECS) and reduced_decode_side(card) == 512


@pytest.mark.parametrize("listed, want", [(["jpeg2000"], {"jpeg2000"}), (["jpeg"], {"jpeg"}),
                                          (["jpeg", "jpeg2000"], CODECS), (["jpeg2000", "webp"], {"jpeg2000"})])
def test_codecs_passed_lists_the_validated_ones(listed, want):
    r = validated_reduction(_card({"passed": False, "min_side": 512, "codecs_passed": listed}))
    assert r is not None and r.min_side == 512 and r.codecs == frozenset(want)


@pytest.mark.parametrize("section", [
    None,                                                      # a card from before the check
    {"passed": False, "min_side": 512},                        # failed, no codec listed
    {"passed": False, "min_side": 512, "codecs_passed": []},   # failed for every codec
    {"passed": False, "min_side": 512, "codecs_passed": ["webp"]},  # nothing this runtime knows
    {"passed": False, "min_side": 512, "codecs_passed": "jpeg2000"},  # not a list: not trusted
    {"passed": True, "min_side": 256},                         # measured at another rule
    {"passed": True},                                          # no side
    "passed",                                                  # not a section
])
def test_anything_else_decodes_exactly(section):
    card = _card(section)
    assert validated_reduction(card) is None and reduced_decode_side(card) is None


def test_a_card_without_an_input_size_validates_nothing():
    assert validated_reduction({"reduced_decode": {"passed": True, "min_side": 512}}) is None


def test_codec_names():
    assert codec_names(CODECS) == "JPEG 2000 and baseline JPEG"
    assert codec_names({"jpeg"}) == "baseline JPEG" and codec_names(()) == "no codec"
