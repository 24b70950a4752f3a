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
    # the machine is named: INT8 speed depends on AVX2 / AVX-512 VNNI / AMX
    cpu = next(line for line in out.splitlines() if line.startswith("CPU: "))
    assert "ISA: " in cpu and "interleaved rounds" in out


def test_bench_rejects_unknown_backbone():
    with pytest.raises(ConfigError, match="unknown"):
        load_bench("compress").main(["--backbones", "vgg"])


def test_bench_times_a_bundles_own_files_beside_its_gate_figures(tiny_bundle, capsys):
    """The INT8 timed is the gated file, and the ΔAUC printed is the one its card records."""
    import json

    card = json.loads((tiny_bundle / "card.json").read_text())
    bench = load_bench("compress")
    assert bench.main(["--bundle", str(tiny_bundle), "--iters", "2"]) == 0
    out = capsys.readouterr().out
    name = f"{card['architecture']} ({tiny_bundle.name})"
    size = card["input"]["preprocessing"]["input_size"]
    assert f"Input {size} px" in out
    for v in bench.VARIANTS:
        assert f"| {name} | {v} |" in out
    gate_rows = [r for r in out.splitlines() if r.startswith(f"| {name} | passed |")]
    sets = [m for k, m in card["metrics"].items() if k.startswith("gate:")]
    assert len(gate_rows) == len(sets) == 2
    for m in sets:
        assert any(f"| {m['dataset']} ({m['n_images']}) | {m['image_auc_delta']:+.4f}" in r for r in gate_rows)
    int8_mb = sum((tiny_bundle / f).stat().st_size for f in ("model.xml", "model.bin")) / 1e6
    assert f"| {name} | OV INT8 | {int8_mb:.2f} |" in out
    # timed as the engine runs it: the non-quantized layers in f32 (the gate's precision), not
    # OpenVINO's bf16 default on AVX-512 BF16 CPUs, which would flatter INT8
    int8_row = next(r for r in out.splitlines() if r.startswith(f"| {name} | OV INT8 |"))
    assert int8_row.rstrip(" |").split("| ")[-1].startswith("f32,"), int8_row


def _drop(bundle, *keys: str) -> None:
    import json

    card = json.loads((bundle / "card.json").read_text())
    for key in keys:
        rel = card["artifacts"].pop(key)
        for f in (rel, rel.replace(".xml", ".bin")):
            card["files"].pop(f, None)
    (bundle / "card.json").write_text(json.dumps(card))


def test_bench_times_a_shipped_bundle_with_its_fp16_weights(bundle_copy, capsys):
    """A shipped bundle keeps INT8 and FP16 only (compress.ship): the FP16 IR, run at f32,
    stands in for FP32 and says so; there is no ONNX Runtime row without an ONNX file."""
    _drop(bundle_copy, "onnx", "openvino_fp32")
    bench = load_bench("compress")
    assert bench.main(["--bundle", str(bundle_copy), "--iters", "2", "--rounds", "1",
                       "--bench-seconds", "0.5"]) == 0
    out = capsys.readouterr().out
    f32 = next(r for r in out.splitlines() if "| OV f32 |" in r)
    assert "FP16 weights" in f32 and "| ORT FP32 |" not in out and "| OV INT8 |" in out
    assert "benchmark_app" in out


def test_bench_names_the_bundle_that_lacks_a_file(bundle_copy):
    from models.errors import BundleError

    _drop(bundle_copy, "openvino_int8")
    with pytest.raises(BundleError, match="openvino_int8"):
        load_bench("compress").main(["--bundle", str(bundle_copy), "--iters", "1"])
