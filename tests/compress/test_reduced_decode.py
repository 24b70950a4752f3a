"""The reduced-decode check (compress.reduced_decode): its numbers, the card section, the rule.

The numbers are recomputed here from the engine and the two decodings directly, so the check is
tested against what it claims to measure, not against itself.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from compress.reduced_decode import (
    AS_J2K,
    AS_STORED,
    REDUCED_ONLY,
    REPORT_HEADING,
    check_reduced_decode,
    judge,
    main,
)
from compress.sources import resolve_split
from models.card import load_bundle, validate_card, write_bundle
from models.engine import Engine
from models.errors import CardValidationError
from models.imageio import decode_for_model
from models.reduction import Reduction, reduced_decode_side, validated_reduction

N_LARGE, N_SMALL = 8, 4


@pytest.fixture(scope="module")
def folder_set(tmp_path_factory) -> Path:
    """A folder set: 8 JPEGs large enough for a reduction by 2 at the tiny model's 64 px input
    (long side >= 255: min side 128), 4 small PNGs that always decode in full."""
    from PIL import Image

    from models.synth import render_radiograph

    root = tmp_path_factory.mktemp("reduced_set")
    rng = np.random.default_rng(11)
    for k in range(N_LARGE + N_SMALL):
        label = "fractured" if k % 2 else "not fractured"
        big = k < N_LARGE
        img = render_radiograph(rng, "wrist", bool(k % 2), (300, 260) if big else (100, 90))
        d = root / "test" / label
        d.mkdir(parents=True, exist_ok=True)
        u8 = Image.fromarray(np.rint(img * 255).astype(np.uint8))
        u8.save(d / (f"im{k}.jpg" if big else f"im{k}.png"), **({"quality": 90} if big else {}))
    return root


@pytest.fixture(scope="module")
def measured(tiny_bundle, folder_set):
    engine = Engine(tiny_bundle)
    split = resolve_split(f"folder:{folder_set}", "validation", {})
    section, rows = check_reduced_decode(engine, [split], budget=1.0, min_agreement=0.0)
    return engine, split, section, rows


def _p(engine: Engine, pixels: list[np.ndarray]) -> np.ndarray:
    return np.array([p.probability for p in engine.predict(pixels)])


def test_numbers_are_those_of_the_two_decodings(measured):
    engine, split, section, rows = measured
    paths = [r.path for r in split.records]
    exact = _p(engine, [decode_for_model(p)[0] for p in paths])
    reduced = _p(engine, [decode_for_model(p, min_side=128)[0] for p in paths])
    dp = np.abs(exact - reduced)
    large = np.array([p.endswith(".jpg") for p in paths])
    assert section["min_side"] == 128 and section["n_images"] == N_LARGE + N_SMALL
    assert section["n_reduced"] == N_LARGE and section["codecs"] == {"jpeg": N_LARGE, "jpeg2000": N_LARGE}
    assert section["n_jpeg2000"] == N_LARGE  # the large ones, transcoded
    assert np.all(dp[~large] < 1e-6)  # a file that decodes in full both ways scores the same
    stored = next(r for r in rows if r["decoding"] == AS_STORED)
    only = next(r for r in rows if r["decoding"] == REDUCED_ONLY)
    assert (stored["n_images"], only["n_images"]) == (N_LARGE + N_SMALL, N_LARGE)
    assert stored["max_abs_dp"] == pytest.approx(dp.max(), abs=1e-5)
    assert stored["p99_abs_dp"] == pytest.approx(np.percentile(dp, 99), abs=1e-5)
    assert only["p99_abs_dp"] == pytest.approx(np.percentile(dp[large], 99), abs=1e-5)
    for name, t in engine.thresholds.items():
        assert stored["image_agreement_" + name] == pytest.approx(np.mean((exact >= t) == (reduced >= t)))
    # one image per study here: the study level is the image level
    assert stored["study_agreement_likely"] == stored["image_agreement_likely"]
    assert {r["decoding"] for r in rows} == {AS_STORED, REDUCED_ONLY, AS_J2K}
    assert section["abs_dp_reduced"]["max"] >= only["max_abs_dp"]


def test_the_gates_numbers_decide(measured, tiny_bundle, folder_set):
    _engine, _split, section, _rows = measured
    # the tiny bundle's own gate numbers (budget 1.0, no agreement floor): everything passes
    assert section["passed"] and section["criteria"] == {**section["criteria"], "budget": 1.0,
                                                         "min_agreement": 0.0}
    assert [s["decoding"] for s in section["sets"]] == [AS_STORED, REDUCED_ONLY, AS_J2K]
    # a budget nothing can keep: the gate's own check (compress.validate.gate) fails it
    engine = Engine(tiny_bundle)
    split = resolve_split(f"folder:{folder_set}", "validation", {})
    strict, _ = check_reduced_decode(engine, [split], budget=-1.0, min_agreement=0.0)
    assert not strict["passed"] and any("beyond the budget" in r for r in strict["reasons"])


def test_a_check_that_decoded_nothing_reduced_does_not_pass(tiny_bundle, folder_set, tmp_path):
    small = tmp_path / "small"
    for f in folder_set.rglob("*.png"):
        dst = small / f.relative_to(folder_set)
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(f, dst)
    split = resolve_split(f"folder:{small}", "validation", {})
    section, _ = check_reduced_decode(Engine(tiny_bundle), [split], budget=1.0, min_agreement=0.0)
    assert not section["passed"] and section["n_reduced"] == 0
    assert any("nothing validated" in r for r in section["reasons"])


def test_mura_compress_writes_the_section(tiny_bundle):
    card = load_bundle(tiny_bundle).card
    section = card["reduced_decode"]
    # the phantom sets are 96-128 px: nothing decodes reduced at a 128 px minimum, so no verdict
    assert section["passed"] is False and section["n_reduced"] == 0 and section["min_side"] == 128
    assert reduced_decode_side(card) is None
    report = json.loads((tiny_bundle / "validation.json").read_text())
    assert report["reduced_decode"]["passed"] is False
    assert (tiny_bundle / "validation.md").read_text().count(REPORT_HEADING) == 1


def test_the_command_updates_an_existing_bundle(bundle_copy, folder_set, capsys):
    assert main([str(bundle_copy), "--data", f"folder:{folder_set}", "--limit", "6"]) == 0
    assert REPORT_HEADING in capsys.readouterr().out
    card = load_bundle(bundle_copy).card  # checksums and schema still hold
    assert card["reduced_decode"]["n_images"] == 6
    assert main([str(bundle_copy), "--data", f"folder:{folder_set}"]) == 0
    assert load_bundle(bundle_copy).card["reduced_decode"]["n_images"] == N_LARGE + N_SMALL
    md = (bundle_copy / "validation.md").read_text()
    assert md.count(REPORT_HEADING) == 1 and md.startswith("# INT8 validation report")
    # the training source is never scored whole: without the run manifest it is refused
    card = load_bundle(bundle_copy).card
    train = card["provenance"]["training_data"].get("source")
    if train:
        assert main([str(bundle_copy), "--data", f"folder:{train}"]) == 2
        assert "--checkpoint" in capsys.readouterr().err


def test_card_schema_old_cards_load_and_the_section_validates(tiny_bundle):
    card = dict(load_bundle(tiny_bundle).card)
    old = {k: v for k, v in card.items() if k != "reduced_decode"}
    validate_card(old)  # a card from before the section
    assert reduced_decode_side(old) is None
    validate_card(card)
    for bad in ({**card["reduced_decode"], "passed": "yes"},
                {k: v for k, v in card["reduced_decode"].items() if k != "min_side"}):
        with pytest.raises(CardValidationError, match="reduced_decode"):
            validate_card({**card, "reduced_decode": bad})


def test_runtimes_use_the_reduced_decode_only_for_a_card_that_passed_at_their_rule(tiny_bundle,
                                                                                   validated_bundle):
    card = load_bundle(validated_bundle).card
    assert reduced_decode_side(card) == 128 == Engine(validated_bundle).reduction.min_side
    assert Engine(tiny_bundle).reduction is None
    section = card["reduced_decode"]
    assert reduced_decode_side({**card, "reduced_decode": {**section, "passed": False}}) is None
    # validated for another minimum side than the runtimes' rule (2 x input): not this rule
    assert reduced_decode_side({**card, "reduced_decode": {**section, "min_side": 256}}) is None


def test_write_bundle_keeps_the_section(bundle_copy, validated_bundle):
    card = load_bundle(validated_bundle).card
    write_bundle(bundle_copy, {**load_bundle(bundle_copy).card, "reduced_decode": card["reduced_decode"]})
    assert load_bundle(bundle_copy).card["reduced_decode"]["passed"] is True


def _fail(row: dict) -> dict:
    return {**row, "image_auc_drop": 0.5, "study_auc_drop": 0.5}


def test_each_codec_is_judged_on_the_comparisons_holding_its_images(measured):
    """The tiny check passes both codecs; failing the JPEG 2000 transcodes' comparison fails that
    codec alone, failing the stored set's (its reduced images are JPEG) fails baseline JPEG alone."""
    _engine, _split, section, rows = measured
    assert section["codecs_passed"] == ["jpeg", "jpeg2000"] and section["by_codec"]["jpeg2000"]["passed"]
    counts = section["codecs"]
    for broken, left in ((AS_J2K, ["jpeg"]), (REDUCED_ONLY, ["jpeg2000"]), (AS_STORED, ["jpeg2000"])):
        v = judge([_fail(r) if r["decoding"] == broken else r for r in rows], 0.4, 0.0, counts, 128)
        assert v["codecs_passed"] == left and v["passed"] is False, broken
        failed = next(c for c in ("jpeg", "jpeg2000") if c not in left)
        assert v["by_codec"][failed]["reasons"] and not v["by_codec"][left[0]]["reasons"]
        assert all(x.startswith({"jpeg": "baseline JPEG", "jpeg2000": "JPEG 2000"}[failed]) for x in v["reasons"])
    # a codec no image was measured with validates nothing, whatever its rows say
    v = judge(rows, 1.0, 0.0, {"jpeg": counts["jpeg"]}, 128)
    assert v["codecs_passed"] == ["jpeg"] and "nothing validated" in v["by_codec"]["jpeg2000"]["reasons"][0]


def test_rejudge_gives_an_old_measurement_its_per_codec_verdict(bundle_copy, folder_set, capsys):
    """A bundle measured before per-codec verdicts (one 'passed' for all) is judged again from
    its validation.json: nothing decoded, the card then validates the codec that passed."""
    assert main([str(bundle_copy), "--data", f"folder:{folder_set}"]) == 0
    js = bundle_copy / "validation.json"
    report = json.loads(js.read_text())
    rows = [_fail(r) if r["decoding"] == AS_J2K else r for r in report["reduced_decode"]["rows"]]
    report["reduced_decode"]["rows"] = rows
    js.write_text(json.dumps(report))
    card = load_bundle(bundle_copy).card
    old = {k: v for k, v in card["reduced_decode"].items() if k not in ("codecs_passed", "by_codec")}
    crit = {**old["criteria"], "budget": 0.4, "min_agreement": 0.0}
    write_bundle(bundle_copy, {**card, "reduced_decode": {**old, "passed": False, "criteria": crit}})
    assert validated_reduction(load_bundle(bundle_copy).card) is None
    capsys.readouterr()
    assert main([str(bundle_copy), "--rejudge"]) == 0
    assert "PASSED for baseline JPEG only" in capsys.readouterr().out
    card = load_bundle(bundle_copy).card  # checksums and schema hold
    assert card["reduced_decode"]["codecs_passed"] == ["jpeg"] and not card["reduced_decode"]["passed"]
    assert validated_reduction(card) == Reduction(128, frozenset({"jpeg"}))
    assert card["reduced_decode"]["n_images"] == old["n_images"]  # the measurement is kept
    md = (bundle_copy / "validation.md").read_text()
    assert md.count(REPORT_HEADING) == 1 and "JPEG 2000: **failed**" in md
    # nothing measured yet: refused with a typed error, not a traceback
    (bundle_copy / "validation.json").unlink()
    assert main([str(bundle_copy), "--rejudge"]) == 2
    assert "run the check" in capsys.readouterr().err
