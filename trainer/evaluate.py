"""``mura-evaluate``: score a checkpoint on a data source, image and study level (torch FP32)."""

from __future__ import annotations

import argparse
import sys

from models.datasources import load_source
from models.errors import MuraError
from models.metrics import evaluate_predictions
from models.nn.checkpoint import load_checkpoint, model_from_checkpoint
from models.preprocess import PreprocessConfig
from trainer.plots import write_evaluation_plots
from trainer.predict import predict


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="mura-evaluate",
        description="Evaluate a mura-train checkpoint: image- and study-level AUC, accuracy, sensitivity, "
        "specificity and Cohen's kappa (a study's probability is the mean of its images').",
    )
    ap.add_argument("--checkpoint", required=True, help="checkpoint_best.pt written by mura-train")
    ap.add_argument("--data", required=True, help="mura:PATH (its valid split) | folder:PATH | csv:PATH")
    ap.add_argument("--split", default="valid", choices=["train", "valid"], help="MURA split to score (default valid)")
    ap.add_argument("--threshold", type=float, default=None,
                    help="decision threshold (default: the checkpoint's 'likely' operating point, else 0.5)")
    ap.add_argument("--json", default=None, help="also write the metrics to this JSON file")
    ap.add_argument("--plots", default=None, metavar="DIR",
                    help="also write roc.png, confusion.png, reliability.png and body_part_confusion.png "
                    "(image and study level) into this folder")
    return ap


def format_confusion(labels: list[str], matrix: list[list[int]]) -> str:
    """A plain-text confusion matrix (rows = true body part, columns = predicted)."""
    w = max([len(x) for x in labels] + [max((len(str(v)) for row in matrix for v in row), default=1), 6])
    lines = ["body-part confusion (rows = true, columns = predicted, images):",
             " " * (w + 2) + " ".join(f"{x:>{w}}" for x in labels)]
    lines += [f"{lab:>{w}}  " + " ".join(f"{v:>{w}}" for v in row) for lab, row in zip(labels, matrix, strict=True)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    try:
        ck = load_checkpoint(a.checkpoint)
        meta = ck["meta"]
        split = load_source(a.data, a.split)
        net = model_from_checkpoint(ck)
        pre = PreprocessConfig.from_dict(meta["preprocess"])
        probs, bps = predict(net, split.records, pre, meta["body_parts"])
        th = a.threshold if a.threshold is not None else meta.get("thresholds", {}).get("likely", 0.5)
        m = evaluate_predictions(split.records, probs, bps, meta["body_parts"], th, ci=True)
        if a.plots:
            write_evaluation_plots(a.plots, split.records, probs, bps, meta["body_parts"], th,
                                   f"{meta['architecture']} on {split.name}")
    except MuraError as e:
        print(f"mura-evaluate: error: {e}", file=sys.stderr)
        return 2
    print(f"{split.name}: {m['n_images']} images ({m['n_failed']} undecodable), {m['n_studies']} studies; "
          f"threshold {th:.4f}")
    print(f"{'level':<10} {'n':>5} {'AUC':>7} {'AUC 95% CI':>17} {'acc':>7} {'sens':>7} {'spec':>7} {'kappa':>7}")
    rows = [("image", m["image"]), ("study", m["study"])]
    rows += [(f"  {bp}", x) for bp, x in m["per_body_part"].items()]
    for name, x in rows:
        lo, hi = x.get("auc_ci95", (float("nan"), float("nan")))
        ci = f"[{lo:.3f}, {hi:.3f}]" if lo == lo else ""
        print(f"{name:<10} {x['n']:>5} {x['auc']:>7.4f} {ci:>17} {x['accuracy']:>7.4f} {x['sensitivity']:>7.4f} "
              f"{x['specificity']:>7.4f} {x['kappa']:>7.4f}")
    print(f"study-level calibration: ECE {m['study']['ece']:.4f}")
    if "body_part_accuracy" in m:
        print(f"body-part accuracy {m['body_part_accuracy']:.4f}")
        print(format_confusion(m["body_part_confusion"]["labels"], m["body_part_confusion"]["matrix"]))
    if a.plots:
        print(f"figures written to {a.plots}")
    if a.json:
        from models.fsutil import atomic_write_json

        atomic_write_json(a.json, {"dataset": split.summary(), "metrics": m})
    return 0


if __name__ == "__main__":
    sys.exit(main())
