"""mura-screen's decoding default: the reduced decode for a model whose card validated it, the
exact decode for every other model; --fast-decode / --exact-decode force one; never mixed."""

from __future__ import annotations

import sqlite3

import pytest

from desktop.screening.cli import main
from desktop.screening.decoding import choose_fast_decode, decoding_text
from desktop.screening.prepare import prepare_image
from desktop.screening.state import (
    DECODE_EXACT,
    DECODE_FAST,
    decode_mode,
    describe_mode,
    mode_codecs,
)
from models.card import load_bundle, write_bundle
from models.engine import Engine
from models.errors import ConfigError
from tests.desktop.screening.test_screen_fast import _report, _worklist, src  # noqa: F401 - fixture


def test_default_rule(tiny_bundle, validated_bundle):
    passed, not_passed = load_bundle(validated_bundle).card, load_bundle(tiny_bundle).card
    old = {k: v for k, v in not_passed.items() if k != "reduced_decode"}
    assert choose_fast_decode(passed) is True
    assert choose_fast_decode(not_passed) is False and choose_fast_decode(old) is False
    assert choose_fast_decode(passed, exact=True) is False
    assert choose_fast_decode(not_passed, fast=True) is True and choose_fast_decode(old, fast=True)
    with pytest.raises(ConfigError, match="--exact-decode"):
        choose_fast_decode(passed, fast=True, exact=True)
    assert "validated by the model card" in decoding_text(passed, True)
    assert "not validated" in decoding_text(not_passed, True)
    assert decoding_text(passed, False).startswith("exact")


def _probs(out) -> dict[str, float]:
    with sqlite3.connect(out / "screen.sqlite") as db:
        return dict(db.execute("SELECT path, probability FROM images"))


def test_a_validated_model_screens_with_the_reduced_decode_by_default(src, validated_bundle,  # noqa: F811
                                                                      tmp_path, capsys):
    out = tmp_path / "out"
    args = [str(src), "--model", str(validated_bundle), "--out", str(out), "--workers", "0",
            "--no-progress"]
    assert main(args) == 0
    assert "validated by the model card" in capsys.readouterr().out
    assert {r["decode"] for r in _worklist(out)} == {DECODE_FAST} and _report(out).decode == DECODE_FAST
    # the scores are those of the validated decode (what the viewer shows for this model)
    engine = Engine(validated_bundle)
    probs = _probs(out)
    for path, p in probs.items():
        prep = prepare_image(path, engine.cfg, fast_decode=True)
        assert p == pytest.approx(float(engine.infer(prep.x[None])["fracture_prob"][0]), abs=1e-5)
    # the same command resumes; the exact decoding over these results is refused, naming the flags
    assert main(args) == 0 and "3 resumed" in capsys.readouterr().out
    assert main(args + ["--exact-decode"]) == 2
    err = capsys.readouterr().err
    assert "--fast-decode" in err and "--exact-decode" in err and "--restart" in err
    assert main(args + ["--exact-decode", "--restart"]) == 0
    assert {r["decode"] for r in _worklist(out)} == {DECODE_EXACT} and _report(out).decode == DECODE_EXACT
    assert main(args) == 2  # and the default (reduced) over exact results is refused too
    assert main(args + ["--fast-decode", "--exact-decode"]) == 2
    assert "contradict" in capsys.readouterr().err


def test_an_unvalidated_model_keeps_the_exact_decode(src, tiny_bundle, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "out"
    assert main([str(src), "--model", str(tiny_bundle), "--out", str(out), "--workers", "0",
                 "--no-progress"]) == 0
    assert "Decoding:" not in capsys.readouterr().out
    assert {r["decode"] for r in _worklist(out)} == {DECODE_EXACT}


@pytest.fixture(scope="module")
def j2k_validated(validated_bundle, tmp_path_factory):
    """The validated bundle, its card passing JPEG 2000 alone (as the shipped model's does)."""
    import shutil

    dst = tmp_path_factory.mktemp("j2k_only") / "bundle"
    shutil.copytree(validated_bundle, dst)
    card = dict(load_bundle(dst).card)
    card["reduced_decode"] = {**card["reduced_decode"], "passed": False, "codecs_passed": ["jpeg2000"],
                              "by_codec": {"jpeg": {"passed": False, "n_reduced": 3, "max_abs_dp": 0.2},
                                           "jpeg2000": {"passed": True, "n_reduced": 5, "max_abs_dp": 0.01}}}
    write_bundle(dst, card)
    return dst


def test_decode_modes_round_trip():
    assert decode_mode(False) == DECODE_EXACT and decode_mode(frozenset()) == DECODE_EXACT
    assert decode_mode(True) == DECODE_FAST == decode_mode({"jpeg", "jpeg2000"})
    assert decode_mode({"jpeg2000"}) == "fast:jpeg2000"
    for fast in (False, True, {"jpeg"}, {"jpeg2000"}):
        assert decode_mode(mode_codecs(decode_mode(fast))) == decode_mode(fast)
    for bad in ("fast:", "fast:webp", "fast:jpeg,jpeg2000", "slow", "fast:jpeg2000,jpeg"):
        with pytest.raises(ConfigError, match="unknown decoding"):
            mode_codecs(bad)
    with pytest.raises(ConfigError, match="webp"):
        decode_mode({"webp"})
    assert describe_mode("fast:jpeg2000") == ("at reduced resolution for JPEG 2000 only",
                                              "no decoding flag: the model card's validated default")


def test_a_card_validating_one_codec_reduces_that_codec_only(src, j2k_validated, tmp_path,  # noqa: F811
                                                             capsys):
    card = load_bundle(j2k_validated).card
    assert choose_fast_decode(card) == frozenset({"jpeg2000"})
    assert choose_fast_decode(card, fast=True) is True  # --fast-decode: both, as always
    text = decoding_text(card, frozenset({"jpeg2000"}))
    assert "validated by the model card" in text and "baseline JPEG in full" in text and "0.010" in text
    assert "not validated" in decoding_text(card, True)
    out = tmp_path / "out"
    args = [str(src), "--model", str(j2k_validated), "--out", str(out), "--workers", "0", "--no-progress"]
    assert main(args) == 0
    assert "JPEG 2000 decoded with a long side" in capsys.readouterr().out
    assert {r["decode"] for r in _worklist(out)} == {"fast:jpeg2000"} == {_report(out).decode}
    engine = Engine(j2k_validated)
    for path, p in _probs(out).items():  # JPEG 2000 reduced; baseline JPEG and the rest exact
        is_j2k = "1.2.840.10008.1.2.4.90" in str(pydicom_ts(path))
        prep = prepare_image(path, engine.cfg, fast_decode=is_j2k)
        assert p == pytest.approx(float(engine.infer(prep.x[None])["fracture_prob"][0]), abs=1e-5)
    assert main(args + ["--fast-decode"]) == 2  # both codecs over one codec's results: refused
    err = capsys.readouterr().err
    assert "for JPEG 2000 only" in err and "validated default" in err
    assert main(args) == 0 and "3 resumed" in capsys.readouterr().out


def pydicom_ts(path: str) -> str:
    import pydicom

    return str(pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID)
