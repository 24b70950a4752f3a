"""Checkpoint -> ONNX -> OpenVINO IR -> NNCF INT8 -> validation gate -> bundle."""

from __future__ import annotations

import datetime as _dt
import json
import sys
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import numpy as np

from compress.evalset import build_evalset
from compress.export import check_export, convert_to_openvino, export_onnx, torch_outputs
from compress.gate_metric import TOLERANCE, GateMetric, SetReference
from compress.indications import fit_indications
from compress.quantize import (
    QuantizeConfig,
    quantize_accuracy_control,
    quantize_openvino,
)
from compress.sources import resolve_split
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
from models.card import CARD_SCHEMA_VERSION, INTENDED_USE, write_bundle
from models.engine import Engine
from models.errors import ConfigError
from models.fsutil import atomic_write_json, atomic_write_text
from models.labels import TASK_WORDS
from models.networks import INPUT_NAME
from models.preprocess import PreprocessConfig
from trainer.checkpoint import load_checkpoint, model_from_checkpoint

PRECISION = "f32"  # INFERENCE_PRECISION_HINT for every OpenVINO run of the gate and the runtime
# What each device runs when the gate covers it: the GPU plugin's native f16 made explicit (and
# validated), the CPU in f32. AUTO picks one of them at run time with these same hints.
DEVICE_PRECISION = {"CPU": PRECISION, "GPU": "f16"}


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
    """Returns (gate passed, card). The bundle is written either way, marked with the verdict."""
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    ck = load_checkpoint(cfg.checkpoint)
    meta = ck["meta"]
    net = model_from_checkpoint(ck)
    pre = PreprocessConfig.from_dict(meta["preprocess"])
    s = pre.input_size

    devices = check_devices(cfg.devices)
    t0 = time.time()
    source = meta.get("provenance", {}).get("data_source", "")
    calib_split = resolve_split(cfg.calib_data, "calibration", cfg.checkpoint, source)
    calib = build_evalset(calib_split, pre, limit=cfg.calib_size, seed=cfg.seed)
    evalsets = [build_evalset(resolve_split(spec, "validation", cfg.checkpoint, source), pre,
                              limit=cfg.max_eval_images, seed=cfg.seed)
                for spec in cfg.val_data]
    _log(f"decoded {len(calib.inputs)} calibration and {sum(len(e.inputs) for e in evalsets)} "
         f"evaluation images in {time.time() - t0:.1f}s")

    onnx_path = export_onnx(net, out / "model.onnx", s)
    fp32_model = convert_to_openvino(onnx_path, out / "model_fp32.xml")
    convert_to_openvino(onnx_path, out / "model_fp16.xml", fp16=True)  # half-size weights, e.g. for iGPUs
    rng = np.random.default_rng(cfg.seed)
    real = calib.inputs[:4] if len(calib.inputs) else rng.standard_normal((2, 1, s, s), dtype=np.float32)
    export_check = check_export(net, onnx_path, out / "model_fp32.xml",
                                {"random": rng.standard_normal((2, 1, s, s), dtype=np.float32), "real": real})
    _log(f"exported ONNX (opset 17) and OpenVINO FP32 IR; max |diff| vs torch "
         f"{max(v for d in export_check.values() for v in d.values()):.2e}")

    t0 = time.time()
    import openvino as ov

    sens_info: dict = {}
    int8_model = quantize_openvino(fp32_model, calib.inputs, cfg.quant, info=sens_info)
    ov.save_model(int8_model, str(out / "model.xml"), compress_to_fp16=False)
    _log(f"NNCF INT8 ({cfg.quant.preset} preset, {min(cfg.quant.subset_size, len(calib.inputs))} "
         f"calibration images) in {time.time() - t0:.1f}s")
    if sens_info:
        _log(f"sensitivity budget {cfg.quant.fp_sensitivity_budget} (RMS logit): kept "
             f"{len(sens_info['kept_fp'])} of {sens_info['quantized_ops']} quantized ops in floating "
             f"point; predicted RMS logit error {sens_info['predicted_rms']:.4f} (all INT8: "
             f"{sens_info['all_int8_predicted_rms']:.4f})")

    card = _card(cfg, meta, ck)
    bundle = write_bundle(out, card)  # provisional, "not_validated": lets the engines load it
    thresholds = bundle.thresholds
    fp32 = Engine(bundle, artifact="openvino_fp32", precision=PRECISION)
    bf16_hint = "bf16" if "BF16" in ovruntime.core().get_property("CPU", "OPTIMIZATION_CAPABILITIES") else PRECISION
    bf16 = Engine(bundle, artifact="openvino_fp32", precision=bf16_hint)
    bf16_used = _precision_used(bf16)
    ref = [score(fp32, es) for es in evalsets]
    # FP32's own noise: its score of each mirrored image (compress.decisions)
    mirror = [score_inputs(fp32, np.ascontiguousarray(es.inputs[..., ::-1])) for es in evalsets]
    # the torch net ends at the raw probability; the card's calibration makes it comparable
    extra = [{"torch_fp32": fp32.calibrate({"fracture_prob": _torch_scores(net, es)})["fracture_prob"],
              "ov_bf16": score(bf16, es)} for es in evalsets]

    def evaluate() -> tuple[list[dict], list[np.ndarray], bool, list[str]]:
        int8 = Engine(write_bundle(out, card), artifact="openvino_int8", precision=PRECISION)
        tests = [score(int8, es) for es in evalsets]
        res = [compare_set(es, r, t, thresholds, extra=x, seed=cfg.seed, ref_mirror=m)
               for es, r, t, x, m in zip(evalsets, ref, tests, extra, mirror, strict=True)]
        for r, es in zip(res, evalsets, strict=True):
            r["cam_correlation"] = cam_correlation(fp32, int8, es.inputs)
        for dev in devices[1:]:  # INT8 on another device, against the same CPU f32 reference
            on_dev = Engine(write_bundle(out, card), artifact="openvino_int8", device=dev,
                            precision=DEVICE_PRECISION.get(dev))
            for es, r_, x, m in zip(evalsets, ref, extra, mirror, strict=True):
                row = compare_set(es, r_, score(on_dev, es), thresholds, extra=x, seed=cfg.seed, ref_mirror=m)
                row["dataset"] = f"{es.name} @ {dev}"
                row["device"] = dev
                res.append(row)
        ok, why = gate(res, cfg.budget, cfg.min_agreement)
        return res, tests, ok, why

    results, int8_scores, passed, reasons = evaluate()
    quant = {"method": "ptq", "preset": cfg.quant.preset, "subset_size": min(cfg.quant.subset_size, len(calib.inputs)),
             "fast_bias_correction": cfg.quant.fast_bias_correction,
             **({"sensitivity": sens_info} if sens_info else {}),
             "ptq_gate": {"verdict": "passed" if passed else "failed", "reasons": reasons}}
    if not passed and cfg.accuracy_control and evalsets:
        # Said before the fallback starts: on a large network it ranks hundreds of ops for hours.
        for reason in reasons:
            _log(f"plain PTQ: {reason}")
        _log("plain PTQ failed the gate; retrying with NNCF accuracy control (--no-accuracy-control skips it)")
        quant = _accuracy_control(cfg, fp32_model, calib.inputs, evalsets, quant, out,
                                  ref, mirror, thresholds, card.get("calibration") or {})
        if quant["method"] == "accuracy_control":
            results, int8_scores, passed, reasons = evaluate()
    card["quantization"] = quant
    card["indications"] = fit_indications(
        card, Engine(write_bundle(out, card), artifact="openvino_int8", precision=PRECISION), evalsets,
        source or cfg.calib_data)

    variants = _variants(cfg, net, bundle, out, s, bf16_used)
    note = (f"OpenVINO INFERENCE_PRECISION_HINT={PRECISION} for FP32 and for the non-quantized layers of "
            f"INT8; the 'OV bf16' column ran with hint {bf16_hint!r} and OpenVINO used {bf16_used!r} "
            "(the default on AVX-512 BF16 CPUs is bf16)")
    draw_roc_png(out / "roc.png", [{"title": es.name, "labels": es.labels,
                                    "series": {"FP32": r, "INT8": t}}
                                   for es, r, t in zip(evalsets, ref, int8_scores, strict=True)])
    report = {"passed": passed, "budget": cfg.budget, "min_agreement": cfg.min_agreement, "reasons": reasons, "precision": note,
              "quantization": quant, "variants": variants,
              "export_check_max_abs_diff": export_check, "sets": results,
              "calibration": {"n": int(len(calib.inputs)), "source": calib.summary, "failed": calib.failed[:50]}}
    md = markdown_report(results, passed, cfg.budget, note, variants, quant, cfg.min_agreement)
    atomic_write_json(out / "validation.json", report)
    atomic_write_text(out / "validation.md", md)
    card["validation"] = {"verdict": "passed" if passed else "failed", "precision": "int8",
                          "inference_precision": PRECISION, "budget": cfg.budget,
                          "min_agreement": cfg.min_agreement, "report": "validation.json",
                          "devices": {d: {"inference_precision": DEVICE_PRECISION[d]}
                                      for d in devices if d in DEVICE_PRECISION},
                          "reasons": reasons, "validated": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")}
    for r in results:
        card["metrics"][f"gate:{r['dataset']}"] = r
    write_bundle(out, card)
    print(md)
    for reason in reasons:
        _log(reason)
    return passed, card


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


def _card(cfg: CompressConfig, meta: dict, ck: dict) -> dict:
    task = meta["task"]
    k = len(meta["body_parts"])
    s = int(meta["preprocess"]["input_size"])
    cam = _cam_shape(Path(cfg.out) / "model_fp32.xml")
    metrics = {name: _card_metrics(name, m) for name, m in meta.get("metrics", {}).items()}
    prov = meta["provenance"]
    return {
        "calibration": meta.get("calibration", {"method": "none", "slope": 1.0, "intercept": 0.0}),
        "licences": licences(meta),
        "schema_version": CARD_SCHEMA_VERSION,
        "name": cfg.name or f"{meta['architecture']}-{task}",
        "version": cfg.version,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "architecture": meta["architecture"],
        "task": {"name": task, "positive_label": "abnormal" if task == "abnormality" else "fractured",
                 "negative_label": "normal" if task == "abnormality" else "not fractured",
                 "display_word": TASK_WORDS[task]},
        "intended_use": INTENDED_USE,
        "input": {"name": INPUT_NAME, "shape": [-1, 1, s, s], "dtype": "float32",
                  "preprocessing": meta["preprocess"]},
        "outputs": {"fracture_prob": {"shape": [-1]}, "body_part_prob": {"shape": [-1, k]},
                    "cam": {"shape": [-1, *cam]}},
        "body_parts": meta["body_parts"],
        "thresholds": meta.get("thresholds", {"suspicious": 0.3, "likely": 0.5}),
        "metrics": metrics,
        "validation": {"verdict": "not_validated", "precision": "int8", "inference_precision": PRECISION},
        "provenance": {"training_data": prov["training_data"], "validation_data": prov["validation_data"],
                       "test_data": prov.get("test_data"), "gate_data": cfg.val_data,
                       "calibration_data": cfg.calib_data, "checkpoint_epoch": int(ck.get("epoch", -1)) + 1,
                       "initialisation": prov.get("initialisation", "unknown")},
        "artifacts": {"openvino_int8": "model.xml", "openvino_fp32": "model_fp32.xml",
                      "openvino_fp16": "model_fp16.xml", "onnx": "model.onnx"},
        "primary_artifact": "openvino_int8",
        "software": _versions(),
        "files": {},
    }


def _card_metrics(name: str, m: dict) -> dict:
    """What the card says a model scored on one set at training time (calibrated probabilities)."""
    out = {"dataset": name, "n_images": m["n_images"], "n_studies": m["n_studies"],
           "image_auc": m["image"]["auc"], "study_auc": m["study"]["auc"],
           "study_kappa": m["study"]["kappa"], "study_accuracy": m["study"]["accuracy"],
           "source": "torch FP32, at training time"}
    for key in ("auc_ci95", "ece", "ece_uncalibrated"):
        if key in m["study"]:
            v = m["study"][key]
            out[f"study_{key}"] = list(v) if isinstance(v, tuple) else v  # JSON has no tuples
    if "auc_ci95" in m["image"]:
        out["image_auc_ci95"] = list(m["image"]["auc_ci95"])
    if "operating_points" in m:
        out["operating_points"] = {k: {"threshold": v["threshold"], "sensitivity": v["sensitivity"],
                                       "specificity": v["specificity"]} for k, v in m["operating_points"].items()}
    if "per_body_part" in m:
        out["per_body_part"] = {bp: {"n_studies": v["n_studies"], "auc": v.get("auc"), "auc_ci95": list(v.get("auc_ci95") or [])}
                                for bp, v in m["per_body_part"].items()}
    return out


DATA_LICENCES = {
    "fracatlas": "FracAtlas (Abedeen et al., Scientific Data 2023), CC BY 4.0",
    "mura": "MURA v1.1 (Stanford AIMI), research use agreement: no clinical or commercial use",
}


def licences(meta: dict) -> dict:
    """The licences a bundle inherits: of its initial weights and of its training data."""
    from models.pretrained import IMAGENET_PACKAGES, weights_licence

    prov = meta.get("provenance", {})
    init = str(prov.get("initialisation", "random"))
    arch = meta.get("architecture", "")
    if "imagenet" in init.lower() and arch in IMAGENET_PACKAGES:
        weights = weights_licence(arch)
    elif "imagenet" in init.lower():
        weights = f"ImageNet weights ({init}): see their source's licence"
    else:
        weights = "none: trained from random initialisation by this project"
    kind = str(prov.get("data_source", "")).partition(":")[0]
    data = DATA_LICENCES.get(kind, "see the training data's own terms")
    if "phantom" in str(prov.get("training_data", "")).lower():
        data = "phantom images made by mura-synth (no real data)"
    return {"weights": weights, "training_data": data}


def _cam_shape(xml: Path) -> list[int]:
    m = ovruntime.core().read_model(str(xml))
    shape = next(o for o in m.outputs if "cam" in o.get_names()).get_partial_shape()
    return [d.get_length() for d in list(shape)[1:]]


def card_summary(card: dict) -> str:
    return json.dumps({k: card[k] for k in ("name", "version", "architecture", "thresholds", "validation")}, indent=2)
