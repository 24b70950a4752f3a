"""--fp-sensitivity-budget: the ops whose own INT8 error moves the fracture logit most stay FP.

The network below has one op that per-tensor INT8 cannot represent: ``conv_b`` reads a channel
scaled by 1000 next to the channel that carries half the signal (each output channel takes one
input, so its per-channel weights quantize well), and one activation scale for both inputs
rounds the small channel away. The analysis must single it out, and keeping it in floating
point must bring the INT8 model back to FP32.
"""

import numpy as np
import pytest

from compress.cli import build_parser
from compress.quantize import QuantizeConfig, op_sensitivity, quantize_openvino, select_fp_ops
from models import ovruntime
from models.errors import ConfigError

ov = pytest.importorskip("openvino")
pytest.importorskip("nncf")


def _outlier_net():
    import openvino.opset13 as ops

    x = ops.parameter([-1, 1, 8, 8], np.float32, name="image")
    a = ops.convolution(x, ops.constant(np.array([1000.0, 1.0], np.float32).reshape(2, 1, 1, 1)),
                        [1, 1], [0, 0], [0, 0], [1, 1])
    a.set_friendly_name("conv_a")
    b = ops.convolution(a, ops.constant(np.array([[0.001, 0.0], [0.0, 1.0]], np.float32).reshape(2, 2, 1, 1)),
                        [1, 1], [0, 0], [0, 0], [1, 1])
    b.set_friendly_name("conv_b")
    pooled = ops.reduce_mean(b, ops.constant(np.array([1, 2, 3], np.int64)), keep_dims=False)
    prob = ops.sigmoid(pooled)
    prob.output(0).get_tensor().set_names({"fracture_prob"})
    return ov.Model([prob.output(0)], [x], "outlier-net")


def _logits(model, x):
    cm = ovruntime.core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    p = np.asarray(cm(x)[cm.outputs[0]], np.float64).reshape(-1)
    return np.log(p / (1 - p))


@pytest.fixture(scope="module")
def calib():
    # a per-image offset keeps the pooled logit away from zero, so an error cannot average out
    rng = np.random.default_rng(0)
    x = rng.standard_normal((24, 1, 8, 8)).astype(np.float32) * 0.5
    return x + rng.uniform(-1.5, 1.5, (24, 1, 1, 1)).astype(np.float32)


def test_selection_keeps_the_most_sensitive_ops_within_the_budget():
    sens = {"a": 1e-4, "b": 4e-4, "c": 1e-2}
    assert select_fp_ops(sens, 0.03) == ["c"]  # 1e-4 + 4e-4 <= 0.03**2 < + 1e-2
    assert select_fp_ops(sens, 0.015) == ["c", "b"]  # most sensitive first
    assert select_fp_ops(sens, 0.0) == ["c", "b", "a"]
    assert select_fp_ops(sens, 1.0) == []
    with pytest.raises(ConfigError, match="budget"):
        select_fp_ops(sens, -0.1)


def test_sensitivity_singles_out_the_outlier_op_and_keeping_it_fp_restores_the_logit(calib, capsys):
    fp32 = _outlier_net()
    plain = quantize_openvino(fp32, calib, QuantizeConfig(subset_size=len(calib)))
    sens = op_sensitivity(fp32, plain, calib)
    # a pass over hundreds of ops says how far it is (DenseNet169: 262 ops, minutes)
    assert f"sensitivity, one op INT8 at a time: {len(sens)}/{len(sens)} ops" in capsys.readouterr().out
    assert max(sens, key=sens.get) == "conv_b"
    assert sens["conv_b"] > 30 * max(v for k, v in sens.items() if k != "conv_b")

    info: dict = {}
    budget = float(np.sqrt(sens["conv_b"])) / 2  # conv_b alone is over it, everything else under
    kept = quantize_openvino(fp32, calib, QuantizeConfig(subset_size=len(calib),
                                                          fp_sensitivity_budget=budget), info=info)
    assert info["kept_fp"] == ["conv_b"] and info["quantized_ops"] == len(sens)
    ops = {op.get_friendly_name(): op for op in kept.get_ordered_ops()}
    assert ops["conv_b"].input_value(1).get_node().get_type_name() == "Constant"  # FP32 weights
    assert ops["conv_a"].input_value(1).get_node().get_type_name() != "Constant"  # still INT8

    ref = _logits(fp32, calib)
    err_plain = np.sqrt(np.mean((_logits(plain, calib) - ref) ** 2))
    err_kept = np.sqrt(np.mean((_logits(kept, calib) - ref) ** 2))
    assert err_kept < err_plain / 10


def test_sensitivity_needs_a_fracture_output(calib):
    fp32 = _outlier_net()
    plain = quantize_openvino(fp32, calib, QuantizeConfig(subset_size=len(calib)))
    for m in (fp32, plain):
        m.outputs[0].get_tensor().set_names({"score"})
    with pytest.raises(ConfigError, match="fracture_prob"):
        op_sensitivity(fp32, plain, calib)


def test_cli_passes_the_budget_to_the_quantizer(monkeypatch):
    import compress.cli as cli

    base = ["--checkpoint", "c.pt", "--out", "o", "--calib-data", "mura:x"]
    a = build_parser().parse_args(base)
    assert a.fp_sensitivity_budget == 0.0 and a.sensitivity_images == 128
    seen = []
    monkeypatch.setattr(cli, "run", lambda cfg: (seen.append(cfg), (True, {}))[1])
    assert cli.main([*base, "--fp-sensitivity-budget", "0.02", "--sensitivity-images", "64"]) == 0
    assert seen[0].quant.fp_sensitivity_budget == 0.02 and seen[0].quant.sensitivity_images == 64


def test_weight_folding_does_not_walk_the_network(monkeypatch):
    """Telling a weight quantizer from an activation one must look at the decompression
    subgraph only: walking back through residual branches visits 2**depth paths (EfficientNet-B0
    never finished)."""
    import openvino.opset13 as ops

    import compress.quantize as q

    x = ops.parameter([1, 4], np.float32, name="image")
    node = x
    for _ in range(12):  # 12 diamonds: 4096 paths back to the input
        node = ops.add(ops.relu(node), ops.multiply(node, ops.constant(np.float32(0.5))))
    calls = []
    real = q._folded
    monkeypatch.setattr(q, "_folded", lambda n: (calls.append(n), real(n))[1])
    assert q._folded(node.output(0).get_node()) is None
    assert len(calls) < 10
    w = ops.multiply(ops.convert(ops.constant(np.array([2, -3], np.int8)), "f32"),
                     ops.constant(np.float32(0.5)))
    assert np.allclose(q._folded(w.output(0).get_node()), [1.0, -1.5])


def test_quantizers_that_move_to_unmeasured_ops_are_kept_fp_too(monkeypatch):
    """Ignoring an op can make NNCF put a quantizer on a neighbour that was never measured (the
    CAM's quantizer moved to the LSE pooling's Subtract on EfficientNet-B0); it must stay FP."""
    import compress.quantize as q

    calls = []
    placed = {(): {"a": 1, "b": 1, "c": 1}, ("c",): {"a": 1, "sub": 1}, ("c", "sub"): {"a": 1}}

    def fake_ptq(model, calib, qcfg, extra):
        calls.append(tuple(extra))
        return tuple(extra)

    monkeypatch.setattr(q, "_ptq", fake_ptq)
    monkeypatch.setattr(q, "_quantized_ops", lambda m: placed[m])
    monkeypatch.setattr(q, "op_sensitivity", lambda fp, m, x: {"a": 1e-6, "b": 1e-6, "c": 1.0})
    info: dict = {}
    out = q.quantize_openvino(object(), np.zeros((2, 1, 4, 4), np.float32),
                              QuantizeConfig(fp_sensitivity_budget=0.01), info=info)
    assert calls == [(), ("c",), ("c", "sub")]
    assert out == ("c", "sub") and info["kept_fp"] == ["c", "sub"]


@pytest.mark.skipif(not __import__("sys").platform.startswith("linux"), reason="sigaltstack: Linux only")
def test_quantization_leaves_the_thread_on_a_signal_stack_that_outlives_nncf(calib):
    """NNCF makes and frees OpenVINO cores of its own; out of order they leave this thread's
    alternate signal stack unmapped and the next Ctrl+C a SIGSEGV (models/ovruntime.py). After
    quantizing, the thread must be on the stack ovruntime keeps for it."""
    import ctypes

    off = ovruntime._StackT(ss_sp=None, ss_flags=2, ss_size=0)  # SS_DISABLE: no alternate stack
    assert ctypes.CDLL(None).sigaltstack(ctypes.byref(off), None) == 0
    assert not ovruntime.current_signal_stack()[2]
    quantize_openvino(_outlier_net(), calib, QuantizeConfig(subset_size=24))
    addr, size, enabled = ovruntime.current_signal_stack()
    assert enabled and size == ovruntime.PINNED_STACK_BYTES
    assert ovruntime.pin_signal_stack() is False  # already the pinned one
