"""bench/int8_study.py compares recipes on one model and prints one row per recipe."""

import pytest

from models.errors import ConfigError
from tests.conftest import load_bench


def test_study_prints_a_row_per_recipe(tiny_checkpoint, phantom, capsys):
    study = load_bench("int8_study")
    mura = f"mura:{phantom / 'mura'}"
    assert study.main(["--checkpoint", str(tiny_checkpoint), "--calib", mura, "--val", mura,
                       "--recipes", "ptq-fast-bc,ptq", "--seconds", "0.2", "--calib-size", "8"]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| ptq")]
    assert [r.split(" | ")[0] for r in rows] == ["| ptq-fast-bc", "| ptq"]
    for r in rows:  # ΔAUC / agreement / max Δp, then timings: all numbers, agreement a share
        cells = [c.strip() for c in r.strip("|").split("|")]
        d, agree, dp = (float(v) for v in cells[1].split(" / "))
        assert abs(d) <= 1 and 0 <= agree <= 1 and dp >= 0
        assert float(cells[3]) > 0 and cells[4].endswith("x")


def test_study_rejects_unknown_recipe(tiny_checkpoint):
    with pytest.raises(ConfigError, match="--recipes"):
        load_bench("int8_study").main(["--checkpoint", str(tiny_checkpoint), "--calib", "mura:x", "--val", "mura:x",
                       "--recipes", "fp4"])
