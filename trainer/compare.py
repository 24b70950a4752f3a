"""``mura-compare``: train/evaluate several backbones with one config and write a results table.

The table is laid out like the seed's (image accuracy and AUC on the test or internal-validation
set) plus study-level AUC and Cohen's kappa with 95 % bootstrap CIs, body-part accuracy, and the
AUC on an optional external set. Runs whose ``summary.json`` exists are reused, not retrained, so
an interrupted comparison resumes where it stopped.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from dataclasses import replace
from pathlib import Path

from models.datasources import external_records
from models.errors import MuraError
from models.fsutil import atomic_write_text
from models.metrics import evaluate_predictions
from models.nn.checkpoint import load_checkpoint, model_from_checkpoint
from models.preprocess import PreprocessConfig
from trainer.cli import build_parser as train_parser
from trainer.cli import resolve_config
from trainer.predict import predict
from trainer.train import train

COLUMNS = ["backbone", "pretrained", "multi_task", "eval_set", "image_accuracy", "image_auc", "study_auc",
           "study_auc_ci95", "study_kappa", "study_kappa_ci95", "body_part_accuracy", "external_auc", "epochs"]


def _fmt_ci(ci) -> str:
    return f"[{ci[0]:.3f}, {ci[1]:.3f}]" if ci and ci[0] == ci[0] else ""


def evaluate_external(checkpoint: Path, spec: str, train_spec: str = "") -> float:
    ck = load_checkpoint(checkpoint)
    meta = ck["meta"]
    records = external_records(spec, train_spec)
    probs, bps = predict(model_from_checkpoint(ck), records, PreprocessConfig.from_dict(meta["preprocess"]),
                         meta["body_parts"])
    return evaluate_predictions(records, probs, None, meta["body_parts"])["image"]["auc"]


def row_for(arch: str, run_dir: Path, cfg, external: str | None) -> dict:
    summary = json.loads((run_dir / "summary.json").read_text())
    m = summary["metrics"]
    name, res = ("test", m["test"]) if "test" in m else ("internal_validation", m["internal_validation"])
    ext = (evaluate_external(Path(summary["checkpoint"]), external, cfg.data) if external
           else float("nan"))
    return {
        "backbone": arch,
        "pretrained": "yes" if cfg.pretrained_weights or cfg.pretrained else "no",
        "multi_task": "yes" if cfg.lambda_body_part > 0 else "no",
        "eval_set": name,
        "image_accuracy": res["image"]["accuracy"],
        "image_auc": res["image"]["auc"],
        "study_auc": res["study"]["auc"],
        "study_auc_ci95": _fmt_ci(res["study"].get("auc_ci95")),
        "study_kappa": res["study"]["kappa"],
        "study_kappa_ci95": _fmt_ci(res["study"].get("kappa_ci95")),
        "body_part_accuracy": res.get("body_part_accuracy", float("nan")),
        "external_auc": ext,
        "epochs": summary.get("best_epoch", ""),
    }


def write_tables(rows: list[dict], out: Path) -> tuple[Path, Path]:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS)
    w.writeheader()
    w.writerows(rows)
    csv_path = atomic_write_text(out / "results.csv", buf.getvalue())
    lines = ["| Backbone | Pretrained | Multi-task | Set | Image acc. | Image AUC | Study AUC (95% CI) | "
             "Study kappa (95% CI) | Body-part acc. | External AUC | Best epoch |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        lines.append(
            f"| {r['backbone']} | {r['pretrained']} | {r['multi_task']} | {r['eval_set']} | "
            f"{100 * r['image_accuracy']:.2f} % | {r['image_auc']:.4f} | {r['study_auc']:.4f} {r['study_auc_ci95']} | "
            f"{r['study_kappa']:.4f} {r['study_kappa_ci95']} | {r['body_part_accuracy']:.4f} | "
            f"{r['external_auc']:.4f} | {r['epochs']} |")
    md_path = atomic_write_text(out / "results.md", "\n".join(lines) + "\n")
    return csv_path, md_path


def build_parser() -> argparse.ArgumentParser:
    ap = train_parser()
    ap.prog = "mura-compare"
    ap.description = ("Train and evaluate several backbones with one configuration and write results.md and "
                      "results.csv under --out (one sub-folder per backbone; finished runs are reused).")
    ap.add_argument("--archs", default="custom_cnn,efficientnet_b0,resnet50,densenet169",
                    help="comma-separated backbones to compare")
    ap.add_argument("--external", default=None, help="external test set (e.g. folder:PATH) scored with every model")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    archs = [a for a in args.archs.split(",") if a]
    external = args.external
    del args.archs, args.external
    try:
        base = resolve_config(args)
        out = Path(base.out)
        rows = []
        for arch in archs:
            cfg = replace(base, arch=arch, out=str(out / arch))
            run_dir = Path(cfg.out)
            if not (run_dir / "summary.json").is_file():
                print(f"== training {arch} -> {run_dir}", flush=True)
                train(cfg)
            else:
                print(f"== {arch}: reusing {run_dir / 'summary.json'}")
            rows.append(row_for(arch, run_dir, cfg, external))
        csv_path, md_path = write_tables(rows, out)
    except MuraError as e:
        print(f"mura-compare: error: {e}", file=sys.stderr)
        return 2
    print(md_path.read_text())
    print(f"tables: {md_path} {csv_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
