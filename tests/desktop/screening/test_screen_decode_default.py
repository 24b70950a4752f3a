"""mura-screen's decoding default: the reduced decode for a model whose card validated it, the
exact decode for every other model; --fast-decode / --exact-decode force one; never mixed."""

from __future__ import annotations

import sqlite3

import pytest

from desktop.screening.cli import main
from desktop.screening.decoding import choose_fast_decode, decoding_text
from desktop.screening.prepare import prepare_image
from desktop.screening.state import DECODE_EXACT, DECODE_FAST
from models.card import load_bundle
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
