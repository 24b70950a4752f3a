"""``mura-compress``: export, quantize, validate and bundle a trained checkpoint."""

from __future__ import annotations

import argparse
import sys

from compress.pipeline import CompressConfig, run
from compress.quantize import QuantizeConfig
from models.errors import MuraError
from models.trust import BANNER, model_warnings, performance_lines


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="mura-compress",
        description="Export a checkpoint to ONNX and OpenVINO IR, quantize it to INT8 with NNCF, check "
        "that INT8 keeps the AUC of FP32 on every evaluation set, and write a self-describing bundle. "
        "Exits 1 when the gate fails (the bundle is then marked 'failed').",
    )
    ap.add_argument("--checkpoint", required=True, help="checkpoint_best.pt written by mura-train")
    ap.add_argument("--out", required=True, help="bundle folder to write")
    ap.add_argument("--calib-data", required=True,
                    help="calibration source (mura:PATH | folder:PATH | csv:PATH); its training images are sampled")
    ap.add_argument("--val-data", action="append", default=[],
                    help="evaluation set for the gate, repeatable (MURA: the valid split; folder: all splits)")
    ap.add_argument("--budget", type=float, default=0.005,
                    help="largest allowed |ΔAUC| FP32 -> INT8 on any set, image or study level (default 0.005)")
    ap.add_argument("--min-agreement", type=float, default=0.99,
                    help="at each card threshold, INT8 may flip at most 1 - this share of the cases as decisions "
                         "FP32 holds firmly, i.e. further from the threshold than its own change on the "
                         "mirrored image (default 0.99); borderline flips are reported, not gated")
    ap.add_argument("--calib-size", type=int, default=300, help="calibration images, stratified by body part and label")
    ap.add_argument("--max-eval-images", type=int, default=0, help="cap per evaluation set (0 = all)")
    ap.add_argument("--preset", choices=["performance", "mixed"], default="performance", help="NNCF quantization preset")
    ap.add_argument("--fast-bias-correction", action="store_true",
                    help="NNCF's fast bias correction (quicker to quantize, little memory; may shift "
                    "probabilities). The full one keeps per-layer activations: DenseNet169 at 128 px with "
                    "300 images needed more than 24 GiB (results/fracatlas/README.md)")
    ap.add_argument("--ignore-type", action="append", default=[], help="op type kept in floating point (repeatable)")
    ap.add_argument("--fp-sensitivity-budget", type=float, default=0.0, metavar="RMS",
                    help="keep the ops whose INT8 quantization moves the fracture logit most in floating "
                    "point, so that the predicted RMS logit error (from one-op-at-a-time INT8 on "
                    "calibration images) stays within RMS; 0 = off (default). 0.02 was needed for "
                    "FracAtlas EfficientNet-B0 (see results/fracatlas/README.md); costs a second NNCF "
                    "run and one inference pass per quantized op")
    ap.add_argument("--sensitivity-images", type=int, default=128,
                    help="calibration images the --fp-sensitivity-budget analysis runs on (default 128)")
    ap.add_argument("--no-accuracy-control", action="store_true",
                    help="when plain INT8 PTQ fails the gate, stop there instead of retrying with NNCF "
                    "accuracy control (which reverts the costliest layers to floating point)")
    ap.add_argument("--accuracy-control-size", type=int, default=0,
                    help="images of each --val-data set that accuracy control judges (stratified); "
                         "default 0 = all of them, exactly the gate's sets (its metric is the gate)")
    ap.add_argument("--accuracy-control-iterations", type=int, default=0, metavar="N",
                    help="accuracy control reverts at most N ops to floating point (each costs a "
                         "validation pass and often a re-ranking); 0 = no bound (default). The gate "
                         "judges the result either way")
    ap.add_argument("--device", action="append", default=[], choices=["CPU", "GPU", "AUTO"],
                    help="OpenVINO device the gate also runs INT8 on (repeatable; CPU always): GPU runs "
                    "with an explicit f16 precision hint, which the card then records as validated")
    ap.add_argument("--name", default="", help="model name in the card (default: ARCH-TASK)")
    ap.add_argument("--version", default="0.1.0", help="model version in the card")
    ap.add_argument("--seed", type=int, default=0, help="seed for sampling calibration images")
    return ap


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    cfg = CompressConfig(
        checkpoint=a.checkpoint, out=a.out, calib_data=a.calib_data, val_data=a.val_data, name=a.name,
        version=a.version, budget=a.budget, min_agreement=a.min_agreement, calib_size=a.calib_size, max_eval_images=a.max_eval_images,
        seed=a.seed, quant=QuantizeConfig(preset=a.preset, fast_bias_correction=a.fast_bias_correction,
                                          subset_size=a.calib_size, ignored_types=a.ignore_type,
                                          fp_sensitivity_budget=a.fp_sensitivity_budget,
                                          sensitivity_images=a.sensitivity_images,
                                          ac_max_iterations=a.accuracy_control_iterations),
        accuracy_control=not a.no_accuracy_control, devices=["CPU", *a.device], ac_size=a.accuracy_control_size,
    )
    try:
        passed, card = run(cfg)
    except MuraError as e:
        print(f"mura-compress: error: {e}", file=sys.stderr)
        return 2
    print("\n".join(closing_lines(card, a.out, passed)))
    return 0 if passed else 1


def closing_lines(card: dict, out: str, passed: bool) -> list[str]:
    """Where the bundle is, the gate's verdict and, apart from it, whether the model is any good."""
    lines = [f"[compress] gate {'PASSED' if passed else 'FAILED'}; bundle: {out} (card.json, "
             f"{', '.join((card.get('artifacts') or {}).values())}, validation.md)"]
    lines += [f"[compress] {line}" for line in performance_lines(card)[:-1]]
    lines += [f"[compress] WARNING: {BANNER}: {w}" for w in model_warnings(card)]
    ind = card.get("indications") or {}
    if "min_body_part_confidence" in ind:
        lines.append(f"[compress] scope: images whose top body part is below "
                     f"{ind['min_body_part_confidence']:.2f} are refused ({ind['confidence_fitted_on']})")
    elif ind.get("confidence_check"):
        lines.append(f"[compress] scope: confidence check {ind['confidence_check']}")
    return lines


if __name__ == "__main__":
    sys.exit(main())
