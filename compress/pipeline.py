"""Checkpoint -> ONNX -> OpenVINO IR -> NNCF INT8 -> validation gate -> bundle.

:func:`run` is one linear pass: read what the trainer handed over (the run manifest and the
weights, :mod:`compress.trained`), decode the calibration and evaluation images, export, quantize,
gate (retrying with NNCF accuracy control when plain PTQ fails), fit the indications, check the
reduced-resolution decode against the gate's numbers (:mod:`compress.reduced_decode`), then write
the report and the bundle, once. Until then the card lives in memory: the engines that the gate
runs read the model files, not ``card.json``. The card is built from the manifest and the gate's results
(:func:`models.card.card_from_manifest`, :func:`models.card.gated_card`), nothing from code here.
"""

from __future__ import annotations

import datetime as _dt
import json
import sys
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import numpy as np

from compress.evalset import EvalSet, build_evalset
from compress.export import check_export, convert_to_openvino, export_onnx, torch_outputs
from compress.gate_metric import TOLERANCE, GateMetric, SetReference
from compress.indications import fit_indications
from compress.quantize import (
    QuantizeConfig,
    quantize_accuracy_control,
    quantize_openvino,
)
from compress.reduced_decode import check_reduced_decode
from compress.reduced_decode import write_report as write_reduced_report
from compress.sources import resolve_split
from compress.trained import load_trained
from compress.validate import (
    cam_correlation,
    compare_set,
    draw_roc_png,
    gate,
    markdown_report,
    score,
    score_inputs,
)
from models import ovruntime
from models.card import Bundle, BundleFacts, card_from_manifest, gated_card, write_bundle
from models.engine import Engine
from models.errors import ConfigError
from models.fsutil import atomic_write_json, atomic_write_text
from models.nn.networks import INPUT_NAME
from models.preprocess import PreprocessConfig

PRECISION = "f32"  # INFERENCE_PRECISION_HINT for every OpenVINO run of the gate and the runtime
# What each device runs when the gate covers it: the GPU plugin's native f16 made explicit (and
# validated), the CPU in f32. AUTO picks one of them at run time with these same hints.
DEVICE_PRECISION = {"CPU": PRECISION, "GPU": "f16"}
ARTIFACTS = {"openvino_int8": "model.xml", "openvino_fp32": "model_fp32.xml",
             "openvino_fp16": "model_fp16.xml", "onnx": "model.onnx"}


@dataclass
class CompressConfig:
    checkpoint: str
    out: str
    calib_data: str  # source spec; its train split is sampled
    val_data: list[str] = field(default_factory=list)  # MURA: the valid split
    name: str = ""
    version: str = "0.1.0"
    budget: float = 0.005  # largest |ΔAUC| FP32 -> INT8 on any set, image or study level
    min_agreement: float = 0.99  # share of decisions at each card threshold that INT8 must keep
    calib_size: int = 300
    max_eval_images: int = 0
    seed: int = 0
    quant: QuantizeConfig = field(default_factory=QuantizeConfig)
    accuracy_control: bool = True  # retry with NNCF accuracy control when plain PTQ fails the gate
    ac_size: int = 0  # images per evaluation set that accuracy control judges (0 = all: the gate's sets)
    latency_iters: int = 20
    devices: list[str] = field(default_factory=lambda: ["CPU"])  # OpenVINO devices the gate covers


@dataclass
class References:
    """FP32's side of every comparison, scored once: each INT8 candidate is judged against it."""

    fp32: Engine
    ref: list[np.ndarray]  # OpenVINO FP32 probabilities per evaluation set
    mirror: list[np.ndarray]  # FP32 on the mirrored images: its own noise (compress.decisions)
    extra: list[dict]  # torch FP32 and OpenVINO bf16, for the report
    bf16_hint: str
    bf16_used: str


@dataclass
class GateOutcome:
    results: list[dict]  # one row per set (and per extra device)
    int8_scores: list[np.ndarray]
    passed: bool
    reasons: list[str]


def _versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0]}
    for pkg in ("mura-fracture", "torch", "timm", "onnx", "onnxruntime", "openvino", "nncf", "numpy"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out


def _log(msg: str) -> None:
    print(f"[compress] {msg}", flush=True)


def run(cfg: CompressConfig) -> tuple[bool, dict]:
    """Returns (gate passed, card). The bundle is written either way, once, marked with the verdict."""
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    trained = load_trained(cfg.checkpoint)
    net = trained.network()
    devices = check_devices(cfg.devices)
    pre = PreprocessConfig.from_dict(trained.manifest["preprocessing"])
    calib, evalsets = _decode(cfg, trained.manifest["data"], pre)
    fp32_model, export_check = _export(net, out, calib, pre.input_size, cfg.seed)
    quant = _quantize(cfg, out, fp32_model, calib)
    card = card_from_manifest(trained.manifest, _facts(cfg, out))
    bundle = Bundle(root=out, card=card)  # in memory; card.json is written once, below
    refs = _references(bundle, net, evalsets)
    outcome = _gate(cfg, bundle, evalsets, refs, devices)
    quant["ptq_gate"] = {"verdict": "passed" if outcome.passed else "failed", "reasons": outcome.reasons}
    if not outcome.passed and cfg.accuracy_control and evalsets:
        quant, outcome = _fallback(cfg, fp32_model, calib, evalsets, refs, bundle, devices, quant, outcome)
    int8 = Engine(bundle, artifact="openvino_int8", precision=PRECISION)
    indications = fit_indications(card, int8, evalsets, trained.manifest["data"]["source"] or cfg.calib_data)
    reduced, reduced_rows = check_reduced_decode(int8, evalsets, budget=cfg.budget,
                                                 min_agreement=cfg.min_agreement, seed=cfg.seed)
    md = _write_report(cfg, out, net, bundle, evalsets, refs, outcome, quant, export_check, calib)
    write_reduced_report(out, reduced, reduced_rows)
    _log(f"reduced-resolution decode: {'validated' if reduced['passed'] else 'not validated'} "
         f"({reduced['n_reduced']} of {reduced['n_images']} images reduced as stored, "
         f"{reduced['n_jpeg2000']} as JPEG 2000)")
    card = gated_card(card, validation=_validation(cfg, devices, outcome), gate_results=outcome.results,
                      quantization=quant, indications=indications, reduced_decode=reduced)
    write_bundle(out, card)
    print(md)
    for reason in outcome.reasons:
        _log(reason)
    return outcome.passed, card


def _decode(cfg: CompressConfig, data: dict, pre: PreprocessConfig) -> tuple[EvalSet, list[EvalSet]]:
    """The calibration set (sampled from the train part) and each evaluation set, preprocessed once;
    ``data`` is the run manifest's (its source and split keep training images out)."""
    t0 = time.time()
    calib = build_evalset(resolve_split(cfg.calib_data, "calibration", data), pre, limit=cfg.calib_size,
                          seed=cfg.seed)
    evalsets = [build_evalset(resolve_split(spec, "validation", data), pre, limit=cfg.max_eval_images,
                              seed=cfg.seed) for spec in cfg.val_data]
    _log(f"decoded {len(calib.inputs)} calibration and {sum(len(e.inputs) for e in evalsets)} "
         f"evaluation images in {time.time() - t0:.1f}s")
    return calib, evalsets


def _export(net, out: Path, calib: EvalSet, s: int, seed: int) -> tuple[object, dict]:
    """ONNX, OpenVINO FP32 and FP16 IR, checked against torch: the FP32 model and the max |diff| table."""
    onnx_path = export_onnx(net, out / ARTIFACTS["onnx"], s)
    fp32_model = convert_to_openvino(onnx_path, out / ARTIFACTS["openvino_fp32"])
    convert_to_openvino(onnx_path, out / ARTIFACTS["openvino_fp16"], fp16=True)  # half-size weights, e.g. for iGPUs
    rng = np.random.default_rng(seed)
    real = calib.inputs[:4] if len(calib.inputs) else rng.standard_normal((2, 1, s, s), dtype=np.float32)
    export_check = check_export(net, onnx_path, out / ARTIFACTS["openvino_fp32"],
                                {"random": rng.standard_normal((2, 1, s, s), dtype=np.float32), "real": real})
    _log(f"exported ONNX (opset 17) and OpenVINO FP32 IR; max |diff| vs torch "
         f"{max(v for d in export_check.values() for v in d.values()):.2e}")
    return fp32_model, export_check


def _quantize(cfg: CompressConfig, out: Path, fp32_model, calib: EvalSet) -> dict:
    """Plain NNCF PTQ of the FP32 model into ``model.xml``; returns how, for the card and report."""
    import openvino as ov

    t0 = time.time()
    sens_info: dict = {}
    int8_model = quantize_openvino(fp32_model, calib.inputs, cfg.quant, info=sens_info)
    ov.save_model(int8_model, str(out / ARTIFACTS["openvino_int8"]), compress_to_fp16=False)
    subset = min(cfg.quant.subset_size, len(calib.inputs))
    _log(f"NNCF INT8 ({cfg.quant.preset} preset, {subset} calibration images) in {time.time() - t0:.1f}s")
    if sens_info:
        _log(f"sensitivity budget {cfg.quant.fp_sensitivity_budget} (RMS logit): kept "
             f"{len(sens_info['kept_fp'])} of {sens_info['quantized_ops']} quantized ops in floating "
             f"point; predicted RMS logit error {sens_info['predicted_rms']:.4f} (all INT8: "
             f"{sens_info['all_int8_predicted_rms']:.4f})")
    quant = {"method": "ptq", "preset": cfg.quant.preset, "subset_size": subset,
             "fast_bias_correction": cfg.quant.fast_bias_correction,
             **({"sensitivity": sens_info} if sens_info else {})}
    return quant


def _facts(cfg: CompressConfig, out: Path) -> BundleFacts:
    """What compress adds to the manifest's card: names, files, data, versions."""
    return BundleFacts(name=cfg.name, version=cfg.version, input_name=INPUT_NAME,
                       cam_shape=_cam_shape(out / ARTIFACTS["openvino_fp32"]), artifacts=ARTIFACTS,
                       primary_artifact="openvino_int8", gate_data=cfg.val_data, calibration_data=cfg.calib_data,
                       software=_versions(), inference_precision=PRECISION)


def _references(bundle: Bundle, net, evalsets: list[EvalSet]) -> References:
    """FP32 (OpenVINO f32), its mirrored-image noise, torch FP32 and OpenVINO bf16, once."""
    fp32 = Engine(bundle, artifact="openvino_fp32", precision=PRECISION)
    bf16_hint = "bf16" if "BF16" in ovruntime.core().get_property("CPU", "OPTIMIZATION_CAPABILITIES") else PRECISION
    bf16 = Engine(bundle, artifact="openvino_fp32", precision=bf16_hint)
    ref = [score(fp32, es) for es in evalsets]
    mirror = [score_inputs(fp32, np.ascontiguousarray(es.inputs[..., ::-1])) for es in evalsets]
    # the torch net ends at the raw probability; the card's calibration makes it comparable
    extra = [{"torch_fp32": fp32.calibrate({"fracture_prob": _torch_scores(net, es)})["fracture_prob"],
              "ov_bf16": score(bf16, es)} for es in evalsets]
    return References(fp32, ref, mirror, extra, bf16_hint, _precision_used(bf16))


def _gate(cfg: CompressConfig, bundle: Bundle, evalsets: list[EvalSet], refs: References,
          devices: list[str]) -> GateOutcome:
    """INT8 (``model.xml`` as it is now) against FP32 on every set, on the CPU and each extra device."""
    int8 = Engine(bundle, artifact="openvino_int8", precision=PRECISION)
    tests = [score(int8, es) for es in evalsets]
    rows = zip(evalsets, refs.ref, refs.extra, refs.mirror, strict=True)
    res = [compare_set(es, r, t, bundle.thresholds, extra=x, seed=cfg.seed, ref_mirror=m)
           for (es, r, x, m), t in zip(rows, tests, strict=True)]
    for r, es in zip(res, evalsets, strict=True):
        r["cam_correlation"] = cam_correlation(refs.fp32, int8, es.inputs)
    for dev in devices[1:]:  # INT8 on another device, against the same CPU f32 reference
        on_dev = Engine(bundle, artifact="openvino_int8", device=dev, precision=DEVICE_PRECISION.get(dev))
        for es, r_, x, m in zip(evalsets, refs.ref, refs.extra, refs.mirror, strict=True):
            row = compare_set(es, r_, score(on_dev, es), bundle.thresholds, extra=x, seed=cfg.seed, ref_mirror=m)
            row["dataset"] = f"{es.name} @ {dev}"
            row["device"] = dev
            res.append(row)
    ok, why = gate(res, cfg.budget, cfg.min_agreement)
    return GateOutcome(res, tests, ok, why)


def _fallback(cfg: CompressConfig, fp32_model, calib: EvalSet, evalsets: list[EvalSet], refs: References,
              bundle: Bundle, devices: list[str], quant: dict, outcome: GateOutcome) -> tuple[dict, GateOutcome]:
    """Plain PTQ failed the gate: NNCF accuracy control, then the gate again if it produced a model."""
    # Said before the fallback starts: on a large network it ranks hundreds of ops for hours.
    for reason in outcome.reasons:
        _log(f"plain PTQ: {reason}")
    _log("plain PTQ failed the gate; retrying with NNCF accuracy control (--no-accuracy-control skips it)")
    quant = _accuracy_control(cfg, fp32_model, calib.inputs, evalsets, quant, bundle.root,
                              refs.ref, refs.mirror, bundle.thresholds, bundle.card.get("calibration") or {})
    if quant["method"] == "accuracy_control":
        outcome = _gate(cfg, bundle, evalsets, refs, devices)
    return quant, outcome


def _write_report(cfg: CompressConfig, out: Path, net, bundle: Bundle, evalsets: list[EvalSet],
                  refs: References, outcome: GateOutcome, quant: dict, export_check: dict,
                  calib: EvalSet) -> str:
    """validation.json, validation.md and roc.png; returns the Markdown report."""
    variants = _variants(cfg, net, bundle, out, bundle.preprocess.input_size, refs.bf16_used)
    note = (f"OpenVINO INFERENCE_PRECISION_HINT={PRECISION} for FP32 and for the non-quantized layers of "
            f"INT8; the 'OV bf16' column ran with hint {refs.bf16_hint!r} and OpenVINO used {refs.bf16_used!r} "
            "(the default on AVX-512 BF16 CPUs is bf16)")
    draw_roc_png(out / "roc.png", [{"title": es.name, "labels": es.labels, "series": {"FP32": r, "INT8": t}}
                                   for es, r, t in zip(evalsets, refs.ref, outcome.int8_scores, strict=True)])
    report = {"passed": outcome.passed, "budget": cfg.budget, "min_agreement": cfg.min_agreement,
              "reasons": outcome.reasons, "precision": note, "quantization": quant, "variants": variants,
              "export_check_max_abs_diff": export_check, "sets": outcome.results,
              "calibration": {"n": int(len(calib.inputs)), "source": calib.summary, "failed": calib.failed[:50]}}
    md = markdown_report(outcome.results, outcome.passed, cfg.budget, note, variants, quant, cfg.min_agreement)
    atomic_write_json(out / "validation.json", report)
    atomic_write_text(out / "validation.md", md)
    return md


def _validation(cfg: CompressConfig, devices: list[str], outcome: GateOutcome) -> dict:
    """The card's ``validation``: the verdict and what it was measured with."""
    return {"verdict": "passed" if outcome.passed else "failed", "precision": "int8",
            "inference_precision": PRECISION, "budget": cfg.budget,
            "min_agreement": cfg.min_agreement, "report": "validation.json",
            "devices": {d: {"inference_precision": DEVICE_PRECISION[d]} for d in devices if d in DEVICE_PRECISION},
            "reasons": outcome.reasons, "validated": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")}


def check_devices(devices: list[str]) -> list[str]:
    """Normalise the gate's device list (CPU first, always) and refuse devices this machine lacks,
    before minutes of export and quantization are spent."""
    wanted = ["CPU"] + [d.upper() for d in devices if d.upper() != "CPU"]
    available = ovruntime.core().available_devices
    for d in wanted:
        if d == "AUTO":
            continue
        if d not in DEVICE_PRECISION:
            raise ConfigError(f"gate device {d!r} is not supported; choose from CPU, GPU, AUTO")
        if not any(a.split(".")[0] == d for a in available):
            raise ConfigError(f"gate device {d!r} is not available on this machine "
                              f"(OpenVINO reports {available}); run the gate where the device is")
    return list(dict.fromkeys(wanted))


def _precision_used(engine: Engine) -> str:
    """What OpenVINO actually runs ("f32", "bf16"): a bf16 hint falls back to f32 without BF16 hardware."""
    t = engine.compiled_model.get_property("INFERENCE_PRECISION_HINT")
    return t.get_type_name() if hasattr(t, "get_type_name") else str(t)


def _torch_scores(net, es, batch_size: int = 16) -> np.ndarray:
    """The checkpoint net on the very inputs the engines see: separates export from quantization loss."""
    probs = [torch_outputs(net, es.inputs[i : i + batch_size])["fracture_prob"].reshape(-1)
             for i in range(0, len(es.inputs), batch_size)]
    return np.concatenate(probs) if probs else np.zeros(0)


def _accuracy_control(cfg: CompressConfig, fp32_model, calib_inputs: np.ndarray, evalsets: list,
                      quant: dict, out: Path, ref: list[np.ndarray], mirror: list[np.ndarray],
                      thresholds: dict[str, float], cal: dict) -> dict:
    """Re-quantize with NNCF accuracy control, its metric the gate itself on every evaluation set
    at image and study level (``compress.gate_metric``), so it stops exactly where the gate passes.
    ``ac_size`` caps the images taken from each set (stratified; 0 = all, the gate's own sets);
    the re-gate is then in-sample for those images, as the report says. On failure the PTQ model
    stays."""
    import openvino as ov

    from compress.evalset import stratified_sample
    from models.errors import MuraError

    t0 = time.time()
    sets, inputs = [], []
    for es, r, m in zip(evalsets, ref, mirror, strict=True):
        keep = {id(x) for x in stratified_sample(es.records, cfg.ac_size or len(es.records), cfg.seed)}
        idx = np.array([i for i, x in enumerate(es.records) if id(x) in keep], dtype=int)
        sets.append(SetReference(es.name, es.labels[idx], [es.study_ids[i] for i in idx],
                                 np.asarray(r, np.float64)[idx], np.asarray(m, np.float64)[idx]))
        inputs.append(es.inputs[idx])
    metric = GateMetric(tuple(sets), tuple(float(t) for t in thresholds.values()), cfg.budget, cfg.min_agreement,
                        calibration=(float(cal.get("slope", 1.0)), float(cal.get("intercept", 0.0))))
    q = dict(quant)
    try:
        model = quantize_accuracy_control(fp32_model, calib_inputs, inputs, cfg.quant, metric)
    except (MuraError, RuntimeError, ValueError) as e:
        _log(f"accuracy control failed ({e}); keeping the plain PTQ model")
        q["accuracy_control_error"] = str(e)
        return q
    ov.save_model(model, str(out / "model.xml"), compress_to_fp16=False)
    _log(f"plain PTQ failed the gate; NNCF accuracy control (the gate as its metric) in {time.time() - t0:.1f}s")
    if cfg.quant.ac_max_iterations > 0:
        q["max_reverted_ops"] = cfg.quant.ac_max_iterations
    q.update(method="accuracy_control", max_drop=TOLERANCE, drop_type="absolute",
             validation_data="; ".join(f"{s.name}: {len(s.labels)} images" for s in sets)
             + (" (stratified samples; also part of the gate sets)" if cfg.ac_size else " (the gate's sets)"),
             validation_metric="the gate's checks on every set, image and study level: ΔAUC within "
             f"±{cfg.budget} and firm decision flips <= {1 - cfg.min_agreement:.3f} (compress.gate_metric)")
    return q


def _variants(cfg: CompressConfig, net, bundle, out: Path, s: int, bf16_used: str) -> list[dict]:
    """Latency (batch 1, median) and file size per variant, for the report."""
    import torch

    x = np.zeros((1, 1, s, s), np.float32)

    def median_ms(fn) -> float:
        for _ in range(3):
            fn()
        ts = []
        for _ in range(max(cfg.latency_iters, 1)):
            t0 = time.perf_counter()
            fn()
            ts.append((time.perf_counter() - t0) * 1e3)
        return float(np.median(ts))

    def mb(*paths: Path) -> float:
        return sum(p.stat().st_size for p in paths) / 1e6

    xt = torch.from_numpy(x)
    with torch.no_grad():
        t_ms = median_ms(lambda: net.eval()(xt))
    rows = [{"name": "torch FP32", "precision": "f32", "latency_ms": t_ms,
             "size_mb": sum(p.numel() * p.element_size() for p in net.state_dict().values()) / 1e6}]
    for name, art, prec, xml in (("OpenVINO FP32", "openvino_fp32", PRECISION, "model_fp32"),
                                 ("OpenVINO bf16", "openvino_fp32", bf16_used, "model_fp32"),
                                 ("OpenVINO INT8", "openvino_int8", PRECISION, "model")):
        e = Engine(bundle, artifact=art, precision=prec)
        used = _precision_used(e)
        rows.append({"name": name, "precision": used, "latency_ms": median_ms(lambda e=e: e.infer(x)),
                     "size_mb": mb(out / f"{xml}.xml", out / f"{xml}.bin")})
    return rows


def _cam_shape(xml: Path) -> list[int]:
    m = ovruntime.core().read_model(str(xml))
    shape = next(o for o in m.outputs if "cam" in o.get_names()).get_partial_shape()
    return [d.get_length() for d in list(shape)[1:]]


def card_summary(card: dict) -> str:
    return json.dumps({k: card[k] for k in ("name", "version", "architecture", "thresholds", "validation")}, indent=2)
