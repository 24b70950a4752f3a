"""``mura-train``: a thin argparse CLI over :func:`trainer.train.train`, with an optional YAML config.

Precedence: defaults < ``--config run.yaml`` < command-line flags. The resolved config is saved as
``OUT/config.json`` beside the outputs.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields
from pathlib import Path

from models.errors import ConfigError, MuraError
from models.nn.networks import list_models
from models.trust import AUC_FLOOR, BANNER
from trainer.train import TrainConfig, train

_HELP = {
    "data": "training data: mura:PATH (MURA v1.1 root; its valid split becomes the test set), "
    "folder:PATH ({split}/{fractured,not fractured}/ images), fracatlas:PATH (dataset.csv + images/, "
    "split by blocks of consecutive ids) or csv:PATH (path,label[,body_part]"
    "[,study_id][,patient_id])",
    "out": "output folder (checkpoints, metrics.csv, config.json, summary.json and run_manifest.json, "
    "the hand-over to mura-compress)",
    "arch": f"architecture: {', '.join(list_models())}",
    "input_size": "square input side in pixels (0 = the architecture's default, 224)",
    "epochs": "maximum number of epochs",
    "batch_size": "images per optimisation step",
    "lr": "peak learning rate of AdamW (cosine schedule after warm-up)",
    "weight_decay": "AdamW weight decay",
    "warmup_epochs": "linear warm-up length in epochs (fractions allowed)",
    "lambda_body_part": "weight of the body-part cross-entropy (0 = single-task baseline)",
    "val_fraction": "fraction of patients held out for internal validation (patient-level split)",
    "patience": "early stopping: epochs without validation study-AUC improvement",
    "grad_clip": "gradient norm clipping (0 = off)",
    "seed": "random seed (split, initialisation, augmentation, shuffling)",
    "workers": "DataLoader worker processes (0 = decode in the main process)",
    "augment": "radiograph augmentation on/off (true/false)",
    "pretrained_weights": "local ImageNet state dict to initialise the backbone (no downloads)",
    "pretrained": "ImageNet weights from timm's hub (needs the network; fails at once, naming "
    "--pretrained-weights PATH, when the hub cannot be reached)",
    "amp": "mixed precision: auto (float16 + gradient scaling on CUDA, off on CPU), off, fp16 (float16 + "
    "gradient scaling; on a CPU only to test the GPU path, it is slow there) or bf16 (CPU with AVX-512 "
    "BF16, or GPU)",
    "clahe": "contrast-limited adaptive histogram equalisation in the shared preprocessing (true/false); "
    "stored in the checkpoint, so the runtime applies it too",
    "clahe_clip_limit": "CLAHE clip limit: fraction of a tile's pixels one grey-level bin may hold "
    "(scikit-image's convention; 0.01 = OpenCV clipLimit 2.56)",
    "clahe_tiles": "CLAHE tiles per image side",
    "cam_pool": "how the fracture CAM is pooled into the logit: mean, max or lse (default: the "
    "architecture's, lse)",
    "cam_stride": "stride of the fracture CAM: 32 (the backbone's own) or 16 (last stages dilated, same "
    "weights; a twice finer heatmap at about 1.5x the compute); timm architectures only",
    "box_loss": "weight of the loss that moves the fracture CAM into the annotated fracture boxes "
    "(0 = off; FracAtlas sources bring their boxes.csv)",
    "boxes": "boxes.csv (image_id,x,y,width,height in image pixels) for --box-loss; default: the "
    "FracAtlas source's own",
    "init_from": "a mura-train checkpoint whose whole network starts this run (fine-tuning; same "
    "architecture and body parts)",
    "sensitivity_target": "study-level sensitivity of the 'suspicious' operating point",
    "calibrate": "fit Platt scaling (slope and intercept of the fracture logit) on internal validation; the card carries it and the engine applies it (default true)",
    "max_train_images": "cap on training images, for smoke runs (0 = all)",
    "cache_dir": "folder for decoded, resized images keyed by file content and input size (empty = off); "
    "later epochs and runs skip decoding",
    "resume": "resume from OUT/checkpoint_last.pt if it exists (true/false)",
}


def _bool(s: str) -> bool:
    if s.lower() in ("1", "true", "yes", "on"):
        return True
    if s.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {s!r}")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="mura-train",
        description="Train a multi-task fracture/abnormality + body-part model on radiographs.",
    )
    ap.add_argument("--config", help="YAML file with any of the options below (flags override it)")
    for f in fields(TrainConfig):
        if f.name == "extra":
            continue
        typ = {bool: _bool, int: int, float: float}.get(type(f.default), str)
        flag = {"nargs": "?", "const": True} if typ is _bool else {}  # "--resume" = "--resume true"
        ap.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, type=typ, default=None,
                        help=_HELP.get(f.name), **flag)
    return ap


def resolve_config(args: argparse.Namespace) -> TrainConfig:
    values: dict = {}
    if args.config:
        import yaml

        p = Path(args.config)
        if not p.is_file():
            raise ConfigError(f"config file not found: {p}")
        loaded = yaml.safe_load(p.read_text()) or {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{p}: expected a mapping of option: value")
        known = {f.name for f in fields(TrainConfig)}
        unknown = sorted(set(loaded) - known)
        if unknown:
            raise ConfigError(f"{p}: unknown options {unknown}")
        values.update(loaded)
    values.update({k: v for k, v in vars(args).items() if k != "config" and v is not None})
    return TrainConfig(**values)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        cfg = resolve_config(args)
        summary = train(cfg)
    except MuraError as e:
        print(f"mura-train: error: {e}", file=sys.stderr)
        return 2
    print("\n".join(closing_lines(summary, cfg.out)))
    return 0


def closing_lines(summary: dict, out: str) -> list[str]:
    """Where the outputs are and whether the model is any good: the last thing a long run says."""
    lines = [f"[train] done: best checkpoint {summary.get('checkpoint')} (epoch {summary.get('best_epoch')}); "
             f"plots and summary.json in {out}"]
    val = (summary.get("metrics") or {}).get("internal_validation")
    if not val:
        return lines + ["[train] no internal validation figures: the model's quality is unknown"]
    study = val["study"]
    ci = tuple(study.get("auc_ci95") or (None, None))
    ci_txt = f" (95 % CI {ci[0]:.2f}–{ci[1]:.2f})" if None not in ci else ""
    lines.append(f"[train] internal validation: study AUC {study['auc']:.3f}{ci_txt} on {val['n_studies']} studies")
    if study["auc"] < AUC_FLOOR:
        lines.append(f"[train] WARNING: {BANNER}: validation AUC {study['auc']:.2f} is below {AUC_FLOOR:.2f}")
    lines.append(f"[train] next: mura-compress --checkpoint {summary.get('checkpoint')} --out BUNDLE ...")
    return lines


if __name__ == "__main__":
    sys.exit(main())
