"""bench/compress.py runs end to end at toy size and prints every variant and the speed-ups."""

import pytest

from models.errors import ConfigError
from tests.conftest import load_bench


def test_bench_prints_a_table(capsys):
    bench = load_bench("compress")
    assert bench.main(["--backbones", "custom_cnn", "--size", "32", "--iters", "2", "--calib-size", "4"]) == 0
    out = capsys.readouterr().out
    for v in bench.VARIANTS:
        assert f"| custom_cnn | {v} |" in out
    assert "INT8 latency speed-up vs OV f32" in out


def test_bench_rejects_unknown_backbone():
    with pytest.raises(ConfigError, match="unknown"):
        load_bench("compress").main(["--backbones", "vgg"])
