"""What INT8 costs and buys for one trained model: several NNCF recipes side by side.

Why: the gate says pass/fail for one recipe; choosing the recipe (and knowing what EfficientNet's
SiLU and depthwise layers cost) needs the alternatives measured on the same data. For each recipe
the table gives the AUC change against OpenVINO f32 on every evaluation set, the share of
decisions kept at the worse of the model's two thresholds (as the gate counts), the largest
probability change, the quantization time, the THROUGHPUT-hint images/s with the speed-up over
OpenVINO f32, and how many weighted layers stayed in floating point.

    python bench/int8_study.py --checkpoint runs/fracatlas/efficientnet_b0/checkpoint_best.pt \\
        --calib fracatlas:../shared/data/fracatlas --val fracatlas:../shared/data/fracatlas \\
        --val folder:../shared/data/bone-fracture-binary

Evaluation sets are chosen as the compress gate chooses them (:mod:`compress.sources`): the
held-out part of the model's own training pool, external sets whole (without FracAtlas images
for FracAtlas models). ``--recipes`` picks a subset (``--list`` shows them).
"""

from __future__ import annotations

import sys
from pathlib import Path

_REPO = Path(__file__).resolve().parents[1]
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _REPO / "bench"]
sys.path.insert(0, str(_REPO))

import argparse  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from compress.quantize import QuantizeConfig  # noqa: E402
from models import ovruntime  # noqa: E402
from models.errors import ConfigError  # noqa: E402

# name -> (QuantizeConfig, accuracy control?)
RECIPES: dict[str, tuple[QuantizeConfig, bool]] = {
    "ptq-fast-bc": (QuantizeConfig(fast_bias_correction=True), False),
    "ptq": (QuantizeConfig(), False),  # the compress default: performance preset, full bias correction
    "ptq-mixed": (QuantizeConfig(preset="mixed"), False),
    "ptq-fp-se-gates": (QuantizeConfig(ignored_types=["Multiply"]), False),  # squeeze-excitation products
    "ptq-fp-depthwise": (QuantizeConfig(ignored_types=["GroupConvolution"]), False),
    "ptq-fp-last-conv": (QuantizeConfig(), False),  # + the last convolution (feeds both heads) kept FP
    "accuracy-control": (QuantizeConfig(), True),
    # the ops whose own INT8 error moves the fracture logit most stay FP, within 0.02 RMS logit
    # (mura-compress --fp-sensitivity-budget 0.02; the recipe EfficientNet-B0 needed)
    "ptq-fp-sensitive": (QuantizeConfig(fp_sensitivity_budget=0.02), False),
}


def ov_throughput(model, x: np.ndarray, seconds: float, precision: str = "f32") -> float:
    """Images/s with the THROUGHPUT hint and an AsyncInferQueue of the plugin's optimal size."""
    import openvino as ov

    cm = ovruntime.core().compile_model(model, "CPU", {"PERFORMANCE_HINT": "THROUGHPUT",
                                                       "INFERENCE_PRECISION_HINT": precision})
    n_req = int(cm.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
    q = ov.AsyncInferQueue(cm, n_req)
    for _ in range(2 * n_req):
        q.start_async({0: x})
    q.wait_all()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for _ in range(n_req):
            q.start_async({0: x})
        n += n_req
        q.wait_all()
    return n * len(x) / (time.perf_counter() - t0)


def _fp_ops(fp32, int8) -> str:
    """Weighted layers (convolutions, MatMul) left in floating point, of all in the FP32 model:
    NNCF's OpenVINO INT8 weights are an int8 Constant behind a Convert, FP ones a plain Constant."""
    kinds = ("Convolution", "GroupConvolution", "MatMul")
    total = sum(op.get_type_name() in kinds for op in fp32.get_ordered_ops())
    quantized = sum(op.get_type_name() in kinds and op.input_value(1).get_node().get_type_name() != "Constant"
                    for op in int8.get_ordered_ops())
    return f"{total - quantized} of {total}"


def scores(model, inputs: np.ndarray, batch: int = 16) -> np.ndarray:
    cm = ovruntime.core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    port = next(o for o in cm.outputs if "fracture_prob" in o.get_names())
    return np.concatenate([np.asarray(cm(inputs[i : i + batch])[port]).reshape(-1)
                           for i in range(0, len(inputs), batch)])


def _print_table(manifest: dict, s: int, batch: int, f32_ips: float, sets, ref, rows: list[dict]) -> None:
    """The recipes' table: ΔAUC, decision agreement and max Δp per set, speed against f32."""
    from models.metrics import roc_auc

    arch = manifest["model"]["architecture"]
    print(f"{arch} at {s} px; OpenVINO f32 reference: {f32_ips:.1f} img/s (THROUGHPUT hint, batch {batch}); "
          f"thresholds {', '.join(f'{k} = {float(v):.3f}' for k, v in manifest['thresholds'].items())}; "
          "agreement = the lowest share of kept decisions over those thresholds (the gate's)")
    for es, r in zip(sets, ref, strict=True):
        print(f"- {es.name}: {len(es.inputs)} images, image AUC f32 {roc_auc(es.labels, r):.4f}")
    head = "| recipe | " + " | ".join(f"ΔAUC / agreement / max Δp: {es.name}" for es in sets)
    print("\n" + head + " | quantize (s) | INT8 img/s | speed-up vs f32 | weighted layers in FP |")
    print("| --- | " + " | ".join("---" for _ in sets) + " | --- | --- | --- | --- |")
    for row in rows:
        cells = " | ".join(f"{row[es.name][0]:+.4f} / {row[es.name][1]:.3f} / {row[es.name][2]:.3f}" for es in sets)
        print(f"| {row['recipe']} | {cells} | {row['quantize_s']:.0f} | {row['ips']:.1f} | "
              f"{row['ips'] / f32_ips:.2f}x | {row['fp_ops']} |")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench/int8_study.py", description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", required=True, help="mura-train checkpoint (checkpoint_best.pt)")
    ap.add_argument("--calib", required=True, help="calibration source spec (mura:|folder:|fracatlas:|csv:)")
    ap.add_argument("--val", action="append", required=True, help="evaluation source spec (repeatable)")
    ap.add_argument("--recipes", default=",".join(RECIPES), help="comma-separated subset of the recipes")
    ap.add_argument("--calib-size", type=int, default=300)
    ap.add_argument("--max-eval-images", type=int, default=0, help="cap per evaluation set (0 = all)")
    ap.add_argument("--budget", type=float, default=0.005, help="accuracy control's max AUC drop")
    ap.add_argument("--min-agreement", type=float, default=0.99,
                    help="accuracy control's decision-agreement floor (the gate's)")
    ap.add_argument("--seconds", type=float, default=5.0, help="timed seconds per throughput figure")
    ap.add_argument("--batch", type=int, default=1, help="batch of the throughput requests")
    a = ap.parse_args(argv)
    names = [r for r in a.recipes.split(",") if r]
    if not names or any(r not in RECIPES for r in names):
        raise ConfigError(f"--recipes {a.recipes!r}: choose from {', '.join(RECIPES)}")

    from compress.evalset import build_evalset
    from compress.export import convert_to_openvino, export_onnx
    from compress.gate_metric import GateMetric, SetReference
    from compress.quantize import quantize_accuracy_control, quantize_openvino
    from compress.sources import resolve_split
    from compress.trained import load_trained
    from models.metrics import roc_auc
    from models.preprocess import PreprocessConfig

    trained = load_trained(a.checkpoint)  # the run manifest (derived for older checkpoints) + weights
    manifest = trained.manifest
    pre = PreprocessConfig.from_dict(manifest["preprocessing"])
    thresholds = [float(v) for v in manifest["thresholds"].values()]
    calib = build_evalset(resolve_split(a.calib, "calibration", manifest["data"]), pre,
                          limit=a.calib_size, seed=0)
    sets = [build_evalset(resolve_split(s, "validation", manifest["data"]), pre,
                          limit=a.max_eval_images, seed=0) for s in a.val]
    s = pre.input_size
    x = np.random.default_rng(0).standard_normal((a.batch, 1, s, s), dtype=np.float32)
    with tempfile.TemporaryDirectory(prefix="int8-study-") as tmp:
        fp32 = convert_to_openvino(export_onnx(trained.network(), Path(tmp) / "m.onnx", s),
                                   Path(tmp) / "m.xml")
        ref = [scores(fp32, es.inputs) for es in sets]
        f32_ips = ov_throughput(fp32, x, a.seconds)
        rows = []
        for name in names:
            qcfg, ac = RECIPES[name]
            if name == "ptq-fp-last-conv":
                convs = [op.get_friendly_name() for op in fp32.get_ordered_ops()
                         if op.get_type_name() in ("Convolution", "GroupConvolution")]
                qcfg = QuantizeConfig(ignored_names=convs[-1:])
            t0 = time.time()
            if ac:
                # accuracy control optimises the gate on every set (in-sample)
                metric = GateMetric(
                    tuple(SetReference(es.name, es.labels, es.study_ids, r,
                                       scores(fp32, np.ascontiguousarray(es.inputs[..., ::-1])))
                          for es, r in zip(sets, ref, strict=True)),
                    tuple(thresholds), a.budget, a.min_agreement)
                model = quantize_accuracy_control(fp32, calib.inputs, [es.inputs for es in sets], qcfg, metric)
            else:
                model = quantize_openvino(fp32, calib.inputs, qcfg)
            q_s = time.time() - t0
            row = {"recipe": name, "quantize_s": q_s, "ips": ov_throughput(model, x, a.seconds),
                   "fp_ops": _fp_ops(fp32, model)}
            for es, r in zip(sets, ref, strict=True):
                t = scores(model, es.inputs)
                row[es.name] = (roc_auc(es.labels, t) - roc_auc(es.labels, r),
                                min(float(np.mean((r >= v) == (t >= v))) for v in thresholds),
                                float(np.max(np.abs(t - r))))
            rows.append(row)
            print(f"[int8-study] {name} done in {time.time() - t0:.0f}s", file=sys.stderr, flush=True)

    _print_table(manifest, s, a.batch, f32_ips, sets, ref, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
