"""NNCF INT8 post-training quantization of the OpenVINO model.

Calibration goes through ``nncf.Dataset`` over inputs already made by the shared preprocessing, so
the quantizer sees exactly what the clinic PC will feed the network.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from compress.gate_metric import TOLERANCE, GateMetric
from models import ovruntime
from models.errors import ConfigError


@dataclass
class QuantizeConfig:
    preset: str = "performance"  # or "mixed" (asymmetric activations; safer for SiLU nets)
    # Full bias correction by default: on the phantom custom_cnn the fast variant shifted every
    # probability by about +0.01 and flipped 4 % of decisions at the thresholds (AUC unchanged);
    # the full one kept all of them (max |Δp| 0.02). It costs seconds to minutes more, once.
    fast_bias_correction: bool = False
    subset_size: int = 300
    ignored_types: list[str] = field(default_factory=list)  # e.g. ["Multiply"] to keep SiLU gates FP
    ignored_names: list[str] = field(default_factory=list)
    # > 0: after a first PTQ, measure each quantized op's own effect on the fracture logit (see
    # :func:`op_sensitivity`) and re-quantize with the most sensitive ops kept in floating point,
    # so that the predicted logit error stays within this RMS (logit units). 0.02 is what the
    # 99 % decision-agreement floor allowed on FracAtlas EfficientNet-B0 (results/fracatlas).
    fp_sensitivity_budget: float = 0.0
    sensitivity_images: int = 128  # calibration images the sensitivity is measured on
    # > 0: accuracy control reverts at most this many ops to floating point (NNCF's
    # max_num_iterations). Each revert costs a validation pass and often a re-ranking of every
    # remaining op (minutes each at 256 px on 2 cores), so an unbounded run on a model whose
    # flips no single op explains can take hours; the gate still judges whatever it returns.
    ac_max_iterations: int = 0


def _preset(name: str):
    import nncf

    presets = {"performance": nncf.QuantizationPreset.PERFORMANCE, "mixed": nncf.QuantizationPreset.MIXED}
    if name not in presets:
        raise ConfigError(f"unknown NNCF preset {name!r}; choose one of {sorted(presets)}")
    return presets[name]


def calibration_dataset(inputs: np.ndarray):
    """One-image batches: NNCF collects statistics per sample."""
    import nncf

    if len(inputs) == 0:
        raise ConfigError("calibration set is empty: no decodable training image")
    return nncf.Dataset(list(range(len(inputs))), lambda i: inputs[i : i + 1])


def _ptq(ov_model, calib_inputs: np.ndarray, qcfg: QuantizeConfig, extra_names: list[str]):
    import nncf

    scope = None
    names = [*qcfg.ignored_names, *extra_names]
    if qcfg.ignored_types or names:
        scope = nncf.IgnoredScope(types=qcfg.ignored_types, names=names, validate=False)
    try:
        return nncf.quantize(
            ov_model,
            calibration_dataset(calib_inputs),
            preset=_preset(qcfg.preset),
            subset_size=min(qcfg.subset_size, len(calib_inputs)),
            fast_bias_correction=qcfg.fast_bias_correction,
            ignored_scope=scope,
        )
    finally:  # NNCF made and freed OpenVINO cores of its own (models/ovruntime.py says why)
        ovruntime.pin_signal_stack()


def quantize_openvino(ov_model, calib_inputs: np.ndarray, qcfg: QuantizeConfig,
                      info: dict | None = None):
    """Return the INT8 ``openvino.Model``.

    With ``qcfg.fp_sensitivity_budget`` the ops whose quantization moves the fracture logit most
    are kept in floating point (two NNCF runs and one sensitivity pass); ``info``, when given,
    receives what was kept and the measured per-op errors, for the report.
    """
    q = _ptq(ov_model, calib_inputs, qcfg, [])
    if qcfg.fp_sensitivity_budget <= 0:
        return q
    if qcfg.fp_sensitivity_budget != qcfg.fp_sensitivity_budget:  # NaN
        raise ConfigError("fp_sensitivity_budget is NaN; give an RMS logit error such as 0.02")
    sens = op_sensitivity(ov_model, q, calib_inputs[: max(qcfg.sensitivity_images, 1)])
    keep_fp = select_fp_ops(sens, qcfg.fp_sensitivity_budget)
    if info is not None:
        info.update(fp_sensitivity_budget=qcfg.fp_sensitivity_budget,
                    sensitivity_images=int(min(len(calib_inputs), max(qcfg.sensitivity_images, 1))),
                    quantized_ops=len(sens), kept_fp=keep_fp,
                    predicted_rms=float(np.sqrt(sum(v for k, v in sens.items() if k not in keep_fp))),
                    all_int8_predicted_rms=float(np.sqrt(sum(sens.values()))))
    if not keep_fp:
        return q
    # Ignoring ops moves NNCF's quantizers: one that fed an ignored op can reappear on a neighbour
    # (on EfficientNet-B0 the CAM's quantizer moved from the ignored Flatten to the LSE pooling's
    # Subtract, unmeasured, and cost 2 % of decisions). Such new places stay FP too.
    allowed = set(sens) - set(keep_fp)
    for _ in range(3):
        q = _ptq(ov_model, calib_inputs, qcfg, keep_fp)
        moved = sorted(set(_quantized_ops(q)) - allowed)
        if not moved:
            break
        keep_fp += moved
    else:
        raise ConfigError(f"NNCF kept placing quantizers on ops outside the measured set: {moved}")
    if info is not None:
        info["kept_fp"] = keep_fp
    return q


LOGIT_CLIP = 5.0  # logits beyond ±5 (p < 0.007 or > 0.993) count as saturated: far from any threshold


def _fracture_logits(compiled, inputs: np.ndarray, batch: int = 32) -> np.ndarray:
    port = next((o for o in compiled.outputs if "fracture_prob" in o.get_names()), None)
    if port is None:
        raise ConfigError("sensitivity analysis needs a 'fracture_prob' output; the model has "
                          f"{[sorted(o.get_names()) for o in compiled.outputs]}")
    p = np.concatenate([np.asarray(compiled(inputs[i : i + batch])[port], dtype=np.float64).reshape(-1)
                        for i in range(0, len(inputs), batch)])
    p = np.clip(p, 1e-12, 1 - 1e-12)
    return np.clip(np.log(p / (1 - p)), -LOGIT_CLIP, LOGIT_CLIP)


def _folded(node) -> np.ndarray | None:
    """Value of a constant weight subgraph (NNCF's int8 Constant -> Convert -> [Subtract] ->
    Multiply decompression), or None when the input is not constant."""
    t = node.get_type_name()
    if t == "Constant":
        return node.get_data()
    if t not in ("Convert", "Multiply", "Subtract", "Reshape"):
        return None  # stop here: recursing through a whole network is exponential in its branches
    args = [_folded(v.get_node()) for v in node.input_values()]
    if any(a is None for a in args):
        return None
    if t == "Convert":
        return args[0].astype(np.float32)
    if t == "Multiply":
        return args[0] * args[1]
    if t == "Subtract":
        return args[0] - args[1]
    if t == "Reshape":
        return args[0].reshape(tuple(node.get_output_shape(0)))
    return None


def _quantized_ops(int8_model) -> dict[str, dict]:
    """Per quantized op (friendly name): the FakeQuantize parameters on its input ports and its
    dequantized weights, read from NNCF's INT8 model."""
    units: dict[str, dict] = {}
    for op in int8_model.get_ordered_ops():
        t = op.get_type_name()
        if t == "FakeQuantize":
            if _folded(op.input_value(0).get_node()) is not None:
                continue  # a weight quantizer (not used by NNCF's OpenVINO backend, but allowed)
            prm = tuple(op.input_value(i).get_node() for i in range(1, 5))
            if any(n.get_type_name() != "Constant" for n in prm):
                continue
            params = (*(n.get_data().astype(np.float32) for n in prm), int(op.get_attributes()["levels"]))
            for target in op.output(0).get_target_inputs():
                u = units.setdefault(target.get_node().get_friendly_name(), {"w": None, "fq": {}})
                u["fq"][target.get_index()] = params
        elif t in ("Convolution", "GroupConvolution", "MatMul") and op.get_input_size() > 1:
            w = op.input_value(1).get_node()
            if w.get_type_name() != "Constant" and (data := _folded(w)) is not None:
                units.setdefault(op.get_friendly_name(), {"w": None, "fq": {}})["w"] = data
    return units


def _with_quantized(fp32_model, units: dict[str, dict], names: list[str]):
    """A copy of the FP32 model in which only ``names`` carry their INT8 quantization."""
    import openvino.opset13 as ops

    m = fp32_model.clone()
    by_name = {op.get_friendly_name(): op for op in m.get_ordered_ops()}
    for name in names:
        op, u = by_name[name], units[name]
        for port, (il, ih, ol, oh, levels) in u["fq"].items():
            fq = ops.fake_quantize(op.input_value(port), ops.constant(il), ops.constant(ih),
                                   ops.constant(ol), ops.constant(oh), levels)
            op.input(port).replace_source_output(fq.output(0))
        if u["w"] is not None:
            shape = tuple(op.input_value(1).get_shape())
            w = np.asarray(u["w"], dtype=np.float32).reshape(shape)
            op.input(1).replace_source_output(ops.constant(w).output(0))
    m.validate_nodes_and_infer_types()
    return m


def _progress_printer(what: str):
    """A ``(done, total)`` callback printing about ten lines per run: long passes say how far they are."""
    t0 = time.time()

    def report(done: int, total: int) -> None:
        if done == total or done % max(total // 10, 1) == 0:
            print(f"[compress] {what}: {done}/{total} ops in {time.time() - t0:.0f}s", flush=True)

    return report


def op_sensitivity(fp32_model, int8_model, inputs: np.ndarray,
                   progress: Callable[[int, int], None] | None = None) -> dict[str, float]:
    """Mean squared fracture-logit error (logits clipped to ±``LOGIT_CLIP``) when ONE op at a
    time carries its INT8 quantization (its input FakeQuantize and int8 weights, as NNCF chose
    them) and the rest of the network stays FP32.

    Why one at a time: accuracy control ranks by reverting ops from the fully quantized model,
    where each op's share drowns in the others' error and each re-ranking costs a validation run
    per op (7.5 min per step on EfficientNet-B0 here). With small independent errors the
    variances add, so the per-op figures predict the whole model's error; the logit clip keeps
    images the model is sure about (logit -11, p 2e-5) from dominating a ranking that is about
    decisions near the thresholds.
    """
    if len(inputs) == 0:
        raise ConfigError("sensitivity analysis needs at least one calibration image")
    units = _quantized_ops(int8_model)
    missing = set(units) - {op.get_friendly_name() for op in fp32_model.get_ordered_ops()}
    for name in missing:  # ops NNCF created (none expected); nothing to compare them to
        units.pop(name)
    core = ovruntime.core()
    cfg = {"INFERENCE_PRECISION_HINT": "f32"}
    ref = _fracture_logits(core.compile_model(fp32_model, "CPU", cfg), inputs)
    progress = progress or _progress_printer("sensitivity, one op INT8 at a time")
    out = {}
    for i, name in enumerate(units, 1):
        lg = _fracture_logits(core.compile_model(_with_quantized(fp32_model, units, [name]), "CPU", cfg),
                              inputs)
        out[name] = float(np.mean((lg - ref) ** 2))
        progress(i, len(units))
    return out


def select_fp_ops(sensitivity: dict[str, float], budget_rms: float) -> list[str]:
    """Ops to keep in floating point: the least sensitive ops stay INT8 for as long as the sum of
    their squared logit errors stays within ``budget_rms``²; the rest, most sensitive first."""
    if budget_rms < 0:
        raise ConfigError(f"sensitivity budget must be >= 0, got {budget_rms}")
    order = sorted(sensitivity, key=lambda k: (sensitivity[k], k))
    total, n_int8 = 0.0, 0
    for name in order:
        if total + sensitivity[name] > budget_rms**2:
            break
        total += sensitivity[name]
        n_int8 += 1
    return order[n_int8:][::-1]


def gate_validation_fn(metric: GateMetric):
    """NNCF ``validation_fn``: the gate's checks on the compiled model's ``fracture_prob``.

    Items of the validation dataset are ``(global index, input)`` pairs numbered set after set as
    in ``metric``; NNCF may pass any subset of them (its ranking subset), and the metric judges
    the sets and studies those items belong to (``compress.gate_metric``).
    """

    def validate(compiled_model, data) -> float:
        port = next(o for o in compiled_model.outputs if "fracture_prob" in o.get_names())
        idx, probs = [], []
        for i, x in data:
            idx.append(int(i))
            probs.append(float(np.asarray(compiled_model(x)[port]).reshape(-1)[0]))
        return metric(np.asarray(idx), np.asarray(probs))

    return validate


def quantize_accuracy_control(ov_model, calib_inputs: np.ndarray, val_inputs: list[np.ndarray],
                              qcfg: QuantizeConfig, metric: GateMetric):
    """INT8 with NNCF's accuracy control: ops that make a gate check fail are given back to floating
    point until none fails on the validation items (``val_inputs``: one array per evaluation set,
    in ``metric``'s order).

    Used as the fallback when plain PTQ fails the gate; slower, and the result may keep more
    layers in FP32 (so is slower to run), which the report's latency column shows.
    """
    import nncf
    from nncf.quantization.advanced_parameters import AdvancedAccuracyRestorerParameters

    sizes = [len(v) for v in val_inputs]
    if sizes != [len(s.labels) for s in metric.sets] or not sum(sizes):
        raise ConfigError("accuracy control needs the evaluation items the gate metric describes")
    if all(len(set(np.asarray(s.labels).tolist())) < 2 for s in metric.sets):
        raise ConfigError("accuracy control needs validation images of both classes")
    scope = None
    if qcfg.ignored_types or qcfg.ignored_names:
        scope = nncf.IgnoredScope(types=qcfg.ignored_types, names=qcfg.ignored_names, validate=False)
    # NNCF hands validation_fn the raw items: (global index, one input). Slices are views, no copy.
    items = [v[i : i + 1] for v in val_inputs for i in range(len(v))]
    val_ds = nncf.Dataset(list(enumerate(items)), lambda it: it[1])
    restorer = AdvancedAccuracyRestorerParameters()
    if qcfg.ac_max_iterations > 0:
        restorer.max_num_iterations = qcfg.ac_max_iterations
    try:
        return nncf.quantize_with_accuracy_control(
            ov_model,
            calibration_dataset(calib_inputs),
            val_ds,
            gate_validation_fn(metric),
            max_drop=TOLERANCE,
            drop_type=nncf.DropType.ABSOLUTE,
            preset=_preset(qcfg.preset),
            subset_size=min(qcfg.subset_size, len(calib_inputs)),
            fast_bias_correction=qcfg.fast_bias_correction,
            ignored_scope=scope,
            advanced_accuracy_restorer_parameters=restorer,
        )
    finally:  # as in _ptq
        ovruntime.pin_signal_stack()
