"""bench/compress.py runs end to end at toy size and prints every variant and the speed-ups."""

import importlib.util
from pathlib import Path

import pytest

from models.errors import ConfigError

BENCH = Path(__file__).resolve().parents[2] / "bench" / "compress.py"


def _bench():
    spec = importlib.util.spec_from_file_location("bench_compress", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_bench_prints_a_table(capsys):
    bench = _bench()
    assert bench.main(["--backbones", "custom_cnn", "--size", "32", "--iters", "2", "--calib-size", "4"]) == 0
    out = capsys.readouterr().out
    for v in bench.VARIANTS:
        assert f"| custom_cnn | {v} |" in out
    assert "INT8 latency speed-up vs OV f32" in out


def test_bench_rejects_unknown_backbone():
    with pytest.raises(ConfigError, match="unknown"):
        _bench().main(["--backbones", "vgg"])
