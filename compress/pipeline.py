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
from compress.export import check_export, convert_to_openvino, export_onnx
from compress.quantize import QuantizeConfig, quantize_openvino
from compress.validate import compare_set, gate, markdown_report, score
from models.card import CARD_SCHEMA_VERSION, INTENDED_USE, write_bundle
from models.engine import Engine
from models.fsutil import atomic_write_json, atomic_write_text
from models.labels import TASK_WORDS
from models.networks import INPUT_NAME
from models.preprocess import PreprocessConfig
from trainer.checkpoint import load_checkpoint, model_from_checkpoint
from trainer.datasets import load_source

PRECISION = "f32"  # INFERENCE_PRECISION_HINT for every OpenVINO run of the gate and the runtime


@dataclass
class CompressConfig:
    checkpoint: str
    out: str
    calib_data: str  # source spec; its train split is sampled
    val_data: list[str] = field(default_factory=list)  # MURA: the valid split
    name: str = ""
    version: str = "0.1.0"
    budget: float = 0.01
    calib_size: int = 300
    max_eval_images: int = 0
    seed: int = 0
    quant: QuantizeConfig = field(default_factory=QuantizeConfig)


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

    t0 = time.time()
    calib_split = load_source(cfg.calib_data, "train")
    calib = build_evalset(calib_split, pre, limit=cfg.calib_size, seed=cfg.seed)
    evalsets = [build_evalset(load_source(spec, "valid"), pre, limit=cfg.max_eval_images, seed=cfg.seed)
                for spec in cfg.val_data]
    _log(f"decoded {len(calib.inputs)} calibration and {sum(len(e.inputs) for e in evalsets)} "
         f"evaluation images in {time.time() - t0:.1f}s")

    onnx_path = export_onnx(net, out / "model.onnx", s)
    fp32_model = convert_to_openvino(onnx_path, out / "model_fp32.xml")
    rng = np.random.default_rng(cfg.seed)
    real = calib.inputs[:4] if len(calib.inputs) else rng.standard_normal((2, 1, s, s), dtype=np.float32)
    export_check = check_export(net, onnx_path, out / "model_fp32.xml",
                                {"random": rng.standard_normal((2, 1, s, s), dtype=np.float32), "real": real})
    _log(f"exported ONNX (opset 17) and OpenVINO FP32 IR; max |diff| vs torch "
         f"{max(v for d in export_check.values() for v in d.values()):.2e}")

    t0 = time.time()
    import openvino as ov

    int8_model = quantize_openvino(fp32_model, calib.inputs, cfg.quant)
    ov.save_model(int8_model, str(out / "model.xml"), compress_to_fp16=False)
    _log(f"NNCF INT8 ({cfg.quant.preset} preset, {min(cfg.quant.subset_size, len(calib.inputs))} "
         f"calibration images) in {time.time() - t0:.1f}s")

    card = _card(cfg, meta, ck)
    bundle = write_bundle(out, card)  # provisional, "not_validated": lets the engines load it
    thresholds = bundle.thresholds
    fp32 = Engine(bundle, artifact="openvino_fp32", precision=PRECISION)
    int8 = Engine(bundle, artifact="openvino_int8", precision=PRECISION)
    results = []
    for es in evalsets:
        results.append(compare_set(es, score(fp32, es), score(int8, es), thresholds))
    passed, reasons = gate(results, cfg.budget)
    note = (f"OpenVINO INFERENCE_PRECISION_HINT={PRECISION} for FP32 and for the non-quantized layers of "
            "INT8 (on AVX-512 BF16 CPUs the default would be bf16)")
    report = {"passed": passed, "budget": cfg.budget, "reasons": reasons, "precision": note,
              "export_check_max_abs_diff": export_check, "sets": results,
              "calibration": {"n": int(len(calib.inputs)), "source": calib.summary, "failed": calib.failed[:50]}}
    atomic_write_json(out / "validation.json", report)
    atomic_write_text(out / "validation.md", markdown_report(results, passed, cfg.budget, note))
    card["validation"] = {"verdict": "passed" if passed else "failed", "precision": "int8",
                          "inference_precision": PRECISION, "budget": cfg.budget, "report": "validation.json",
                          "reasons": reasons, "validated": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")}
    for r in results:
        card["metrics"][f"gate:{r['dataset']}"] = r
    write_bundle(out, card)
    print(markdown_report(results, passed, cfg.budget, note))
    for reason in reasons:
        _log(reason)
    return passed, card


def _card(cfg: CompressConfig, meta: dict, ck: dict) -> dict:
    task = meta["task"]
    k = len(meta["body_parts"])
    s = int(meta["preprocess"]["input_size"])
    cam = _cam_shape(Path(cfg.out) / "model_fp32.xml")
    metrics = {}
    for name, m in meta.get("metrics", {}).items():
        metrics[name] = {"dataset": name, "n_images": m["n_images"], "n_studies": m["n_studies"],
                         "image_auc": m["image"]["auc"], "study_auc": m["study"]["auc"],
                         "study_kappa": m["study"]["kappa"], "study_accuracy": m["study"]["accuracy"],
                         "source": "torch FP32, at training time"}
    prov = meta["provenance"]
    return {
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
                       "calibration_data": cfg.calib_data, "checkpoint_epoch": int(ck.get("epoch", -1)) + 1},
        "artifacts": {"openvino_int8": "model.xml", "openvino_fp32": "model_fp32.xml", "onnx": "model.onnx"},
        "primary_artifact": "openvino_int8",
        "software": _versions(),
        "files": {},
    }


def _cam_shape(xml: Path) -> list[int]:
    import openvino as ov

    m = ov.Core().read_model(str(xml))
    shape = next(o for o in m.outputs if "cam" in o.get_names()).get_partial_shape()
    return [d.get_length() for d in list(shape)[1:]]


def card_summary(card: dict) -> str:
    return json.dumps({k: card[k] for k in ("name", "version", "architecture", "thresholds", "validation")}, indent=2)
