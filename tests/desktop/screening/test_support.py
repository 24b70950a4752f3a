"""--version, --card and --check-decode answer in the development install as in the frozen app
(issue 15 §5): they used to exist only in installers/frozen."""

from __future__ import annotations

import json

from desktop.screening import cli as screen
from desktop.viewer import app as viewer
from models.reference import reference_dir
from tests.conftest import REPO


def test_card_prints_the_validated_performance_and_indications(capsys):
    assert screen.main(["--card"]) == 0  # no --model: the shipped reference model
    out = capsys.readouterr().out
    assert f"folder: {reference_dir()}" in out and "checksums: 4 files verified" in out
    assert "performance: AUC 0.88" in out and "indicated for: CR/" in out and "WARNING" not in out


def test_card_of_a_weak_model_carries_the_warning(tiny_bundle, capsys):
    assert viewer.main(["--card", "--model", str(tiny_bundle)]) == 0
    assert "WARNING: NOT A CLINICALLY MEANINGFUL MODEL: trained on phantom images" in capsys.readouterr().out


def test_version_names_the_checkout(capsys):
    assert screen.main(["--version"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("mura-screen ") and "commit " in out and "frozen: no" in out


def test_check_decode_one_json_line_per_file(tmp_path, capsys):
    bad = tmp_path / "bad.dcm"
    bad.write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00")
    good = sorted((REPO / "samples" / "dicom").glob("*.dcm"))[0]
    assert viewer.main(["--check-decode", str(good), str(bad)]) == 1  # no window opened
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["ok"] for r in rows] == [True, False] and rows[0]["kind"] == "dicom"
    assert screen.main(["--check-decode", str(good)]) == 0
