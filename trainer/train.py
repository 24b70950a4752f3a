"""The training loop for the multi-task network (fracture/abnormality + body part).

Loss: BCE for the finding, weighted per body part as in MURA (w+ = N/(P+N), w- = P/(P+N)), plus
``lambda_body_part`` x cross-entropy for the body part (0 gives the single-task baseline).
Model selection on validation study-level AUC; operating points chosen on validation.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from models.errors import ConfigError
from models.fsutil import atomic_write_json, atomic_write_text
from models.metrics import (
    aggregate_studies,
    binary_metrics,
    bootstrap_ci,
    cohen_kappa,
    confusion,
    confusion_matrix,
    expected_calibration_error,
    roc_auc,
    threshold_for_sensitivity,
    threshold_for_specificity,
    youden_threshold,
)
from models.networks import create_model, list_models, model_defaults
from models.plots import draw_reliability_png
from models.preprocess import PreprocessConfig
from trainer.calibration import apply_platt, fit_calibration, operating_points, study_ece
from trainer.checkpoint import load_checkpoint, save_checkpoint
from trainer.data import Augment, DecodeCache, RecordDataset, collate_skip, loader_worker_init
from trainer.datasets import DatasetSplit, Record, group_split, load_source
from trainer.distributed import DistInfo, barrier, gather_rows, init_distributed, shutdown
from trainer.localisation import box_loss, init_network, training_boxes
from trainer.plots import body_part_indices, write_evaluation_plots


@dataclass
class TrainConfig:
    """Every knob of a run; saved as ``config.json`` beside the outputs."""

    data: str = ""  # mura:PATH | folder:PATH | csv:PATH
    out: str = "runs/train"
    arch: str = "efficientnet_b0"
    input_size: int = 0  # 0 = the architecture's default
    epochs: int = 10
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_epochs: float = 0.5
    lambda_body_part: float = 0.3
    val_fraction: float = 0.15
    patience: int = 5
    grad_clip: float = 1.0
    seed: int = 0
    workers: int = 0
    augment: bool = True
    pretrained_weights: str | None = None
    pretrained: bool = False  # ImageNet weights from timm's hub (needs the network)
    amp: str = "auto"  # auto (fp16 on CUDA, off on CPU) | off | fp16 | bf16
    clahe: bool = False  # CLAHE in the shared preprocessing (the runtime applies it too)
    clahe_clip_limit: float = 0.01
    clahe_tiles: int = 8
    cam_pool: str = ""  # "" = architecture default; mean | max | lse
    cam_stride: int = 32  # 16: a twice finer CAM (dilated last stages, same weights)
    box_loss: float = 0.0  # weight of the CAM-in-the-fracture-boxes loss (trainer.localisation)
    boxes: str = ""  # boxes.csv (x, y, width, height per image id); "" = the FracAtlas source's own
    init_from: str = ""  # a mura-train checkpoint whose whole network starts this run (fine-tuning)
    sensitivity_target: float = 0.9
    calibrate: bool = True  # Platt scaling fitted on internal validation (trainer.calibration)
    max_train_images: int = 0  # 0 = all; for smoke runs
    resume: bool = False
    cache_dir: str = ""  # decoded-image cache ("" = off); shared safely between runs
    extra: dict = field(default_factory=dict)

    def validate(self) -> None:
        if not self.data:
            raise ConfigError("no training data given (--data mura:PATH | folder:PATH | csv:PATH)")
        if self.arch not in list_models():
            raise ConfigError(f"unknown architecture {self.arch!r}; choose one of {', '.join(list_models())}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ConfigError(f"epochs and batch_size must be >= 1, got {self.epochs}, {self.batch_size}")
        if self.pretrained and self.pretrained_weights:
            raise ConfigError("give either --pretrained (timm hub) or --pretrained-weights PATH, not both")
        if self.box_loss < 0:
            raise ConfigError(f"box_loss must be >= 0, got {self.box_loss}")
        if str(self.amp).lower() not in AMP_MODES:
            raise ConfigError(f"unknown --amp {self.amp!r}; choose one of {', '.join(AMP_MODES)}")


AMP_MODES = ("auto", "off", "fp16", "bf16", "on", "true", "false")


def resolve_amp(mode: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``--amp`` on this device, or None for full float32.

    auto: float16 on CUDA (with a GradScaler: fp16 gradients underflow), off on CPU, where float32
    is what the resume test and the CPU timings assume. bf16 has float32's range (no scaler) and
    runs on CPUs with AVX-512 BF16 and on recent GPUs. fp16 on a CPU is allowed but only on
    request (``--amp fp16``; the trainer says it is slow there): it runs the very code a CUDA run
    does, autocast plus GradScaler, so that path can be tested and resumed on any machine.
    """
    m = str(mode).lower()
    if m in ("off", "false"):
        return None
    if m == "auto":
        return torch.float16 if device.type == "cuda" else None
    if m == "bf16":
        return torch.bfloat16
    return torch.float16


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def body_part_class_weights(records: list[Record]) -> dict[str, tuple[float, float]]:
    """MURA's per-body-part weights: (w_pos, w_neg) = (N/(P+N), P/(P+N))."""
    out = {}
    for bp in sorted({r.body_part for r in records}):
        labels = [r.label for r in records if r.body_part == bp]
        p, n = sum(labels), len(labels) - sum(labels)
        out[bp] = (n / (p + n), p / (p + n)) if p and n else (0.5, 0.5)
    return out


def initialisation(cfg: TrainConfig) -> str:
    """Where the weights came from, through a chain of --init-from: the card's licence depends on it
    (a fine-tuned ImageNet model is still under the ImageNet weights' licence)."""
    if cfg.init_from:
        parent = load_checkpoint(cfg.init_from)["meta"].get("provenance", {}).get("initialisation", "unknown")
        return f"checkpoint {Path(cfg.init_from).as_posix()}, itself initialised from {parent}"
    if cfg.pretrained:
        return "ImageNet (timm hub)"
    return f"ImageNet ({Path(cfg.pretrained_weights).name})" if cfg.pretrained_weights else "random"


def split_data(cfg: TrainConfig) -> tuple[DatasetSplit, DatasetSplit, DatasetSplit | None]:
    """(train, internal validation, test): MURA's official valid split is the test set."""
    full = load_source(cfg.data, "train")
    train, val = group_split(full.records, cfg.val_fraction, cfg.seed)
    if cfg.max_train_images:
        train = random.Random(cfg.seed).sample(train, min(cfg.max_train_images, len(train)))
    test = load_source(cfg.data, "valid") if cfg.data.startswith("mura:") else None
    train_split = full.subset(train, f"{full.name} (train part)")
    train_split.problems = full.problems  # reported once, with the training data
    return train_split, full.subset(val, f"{full.name} (internal val)"), test


@torch.no_grad()
def predict(net: nn.Module, records: list[Record], pre: PreprocessConfig, body_parts: list[str],
            batch_size: int = 32, workers: int = 0, cache: DecodeCache | None = None,
            dist_info: DistInfo | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Fracture probability and body-part probabilities per record (nan for undecodable files).

    Under DDP each rank scores its shard and the results are gathered, so all ranks agree.
    """
    dist_info = dist_info or DistInfo()
    net.eval()
    ds = RecordDataset(records, pre, body_parts, cache=cache)
    mine = np.arange(len(records))[dist_info.rank :: dist_info.world]  # this rank's shard
    dl = DataLoader(torch.utils.data.Subset(ds, mine.tolist()), batch_size=batch_size, shuffle=False,
                    num_workers=workers, collate_fn=collate_skip)
    probs = np.full(len(records), np.nan, dtype=np.float64)
    bps = np.full((len(records), len(body_parts)), np.nan, dtype=np.float64)
    device = next(net.parameters()).device
    for batch in dl:
        if batch is None:
            continue
        x, _, _, idx = batch
        logit, bp = net(x.to(device).to(memory_format=torch.channels_last))
        slope, intercept = getattr(net, "calibration", (1.0, 0.0))  # as the exported network does
        probs[idx.numpy()] = torch.sigmoid(logit.float() * slope + intercept).cpu().numpy()
        bps[idx.numpy()] = torch.softmax(bp, 1).float().cpu().numpy()
    probs, bps = gather_rows(dist_info, len(records), mine, probs[mine], bps[mine])
    return probs, bps


def evaluate_predictions(records: list[Record], probs: np.ndarray, bps: np.ndarray | None,
                         body_parts: list[str], threshold: float = 0.5, ci: bool = False) -> dict:
    """Image- and study-level metrics (study = mean of its images' probabilities).

    ``ci`` adds 95 % bootstrap intervals, study-level calibration (ECE) and a per-body-part table
    (study level, with AUC and kappa intervals). With body-part probabilities: the body-part
    accuracy and confusion matrix (per image; rows = truth, ``body_part_confusion``).
    """
    ok = ~np.isnan(probs)
    recs = [r for r, k in zip(records, ok, strict=True) if k]
    p = probs[ok]
    y = np.array([r.label for r in recs])
    out = {"n_images": int(len(recs)), "n_failed": int((~ok).sum())}
    out["image"] = {**binary_metrics(y, p, threshold), "confusion": confusion(y, p >= threshold)}
    ids, ys, ps = aggregate_studies([r.study_id for r in recs], y, p)
    out["n_studies"] = len(ids)
    out["study"] = {**binary_metrics(ys, ps, threshold), "confusion": confusion(ys, ps >= threshold)}
    if bps is not None and len(body_parts) > 1 and len(recs):
        true_bp, pred_bp = body_part_indices(recs, bps[ok], body_parts)
        out["body_part_accuracy"] = float((pred_bp == true_bp).mean())
        known = true_bp >= 0
        out["body_part_confusion"] = {
            "labels": list(body_parts),
            "matrix": confusion_matrix(true_bp[known], pred_bp[known], len(body_parts)).tolist(),
            "n_unknown_part": int((~known).sum()),
        }
    if ci and len(recs):
        out["image"]["auc_ci95"] = bootstrap_ci(roc_auc, y, p)
        out["study"]["auc_ci95"] = bootstrap_ci(roc_auc, ys, ps)
        out["study"]["kappa_ci95"] = bootstrap_ci(lambda a, b: cohen_kappa(a, b >= threshold), ys, ps)
        out["study"]["ece"] = expected_calibration_error(ys, ps)
        parts = {}
        for bp in sorted({r.body_part for r in recs}):
            sel = [i for i, r in enumerate(recs) if r.body_part == bp]
            sid, sy, sp = aggregate_studies([recs[i].study_id for i in sel], y[sel], p[sel])
            parts[bp] = {"n_studies": len(sid), **binary_metrics(sy, sp, threshold),
                         "auc_ci95": bootstrap_ci(roc_auc, sy, sp, n=500),
                         "kappa_ci95": bootstrap_ci(lambda a, b: cohen_kappa(a, b >= threshold), sy, sp, n=500)}
        out["per_body_part"] = parts
    return out


def choose_thresholds(records: list[Record], probs: np.ndarray, sensitivity: float,
                      specificity: float = 0.95) -> dict[str, float]:
    """Operating points on validation *studies*.

    'likely': the stricter of Youden's point and the ``specificity`` point (few false alarms);
    'suspicious': the ``sensitivity`` point, never above 'likely' (few misses).
    """
    ok = ~np.isnan(probs)
    recs = [r for r, k in zip(records, ok, strict=True) if k]
    _, ys, ps = aggregate_studies([r.study_id for r in recs], [r.label for r in recs], probs[ok])
    if ys.min() == ys.max():
        return {"suspicious": 0.3, "likely": 0.5}
    likely = min(max(youden_threshold(ys, ps), threshold_for_specificity(ys, ps, specificity)), 1.0)
    sus = min(threshold_for_sensitivity(ys, ps, sensitivity), likely)
    return {"suspicious": float(sus), "likely": float(likely)}


def _lr_lambda(total_steps: int, warmup_steps: int):
    def f(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / max(warmup_steps, 1)
        prog = (step - warmup_steps) / max(total_steps - warmup_steps, 1)
        return 0.5 * (1 + math.cos(math.pi * min(prog, 1.0)))

    return f


def train(cfg: TrainConfig) -> dict:
    """Run one training job; returns the summary also written to ``summary.json``."""
    cfg.validate()
    di = init_distributed()
    try:
        return _train(cfg, di)
    finally:
        shutdown(di)


def _train(cfg: TrainConfig, di: DistInfo) -> dict:
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    seed_everything(cfg.seed)  # same seed on every rank: identical initial weights
    torch.set_num_threads(max(1, torch.get_num_threads()))
    train_split, val_split, test_split = split_data(cfg)
    body_parts = train_split.body_parts
    size = cfg.input_size or model_defaults(cfg.arch).input_size
    defaults = model_defaults(cfg.arch)
    pre = PreprocessConfig(input_size=size, mean=defaults.mean, std=defaults.std, clahe=cfg.clahe,
                           clahe_clip_limit=cfg.clahe_clip_limit, clahe_tiles=cfg.clahe_tiles)
    device = torch.device(f"cuda:{di.local_rank}" if torch.cuda.is_available() else "cpu")
    amp_dtype = resolve_amp(cfg.amp, device)
    if amp_dtype == torch.float16 and device.type != "cuda" and di.is_main:
        print("--amp fp16 on a CPU: float16 autocast with loss scaling, as on CUDA, but much slower "
              "than float32 on most CPUs (use it to test the GPU path; --amp bf16 or off to train)")
    problems = train_split.problems + (test_split.problems if test_split else [])
    if di.is_main:
        atomic_write_json(out / "config.json", {**asdict(cfg), "input_size": size, "world_size": di.world,
                                                "device": str(device), "amp_dtype": str(amp_dtype or "off")})
        atomic_write_text(out / "data_problems.txt", "".join(f"{p}\n" for p in problems))
    if problems and di.is_main:
        print(f"{len(problems)} data problems (skipped; listed in {out / 'data_problems.txt'})")

    net = create_model(cfg.arch, num_body_parts=len(body_parts), pretrained_weights=cfg.pretrained_weights,
                       pretrained=cfg.pretrained, cam_pool=cfg.cam_pool or None,
                       cam_stride=cfg.cam_stride)
    if cfg.init_from:
        init_network(net, cfg)
    net = net.to(memory_format=torch.channels_last)
    weights = body_part_class_weights(train_split.records)
    w_pos = torch.tensor([weights[r.body_part][0] for r in train_split.records])
    w_neg = torch.tensor([weights[r.body_part][1] for r in train_split.records])

    cache = DecodeCache(cfg.cache_dir, pre) if cfg.cache_dir else None
    boxes = training_boxes(cfg, train_split) if cfg.box_loss > 0 else None
    ds = RecordDataset(train_split.records, pre, body_parts, Augment() if cfg.augment else None, cfg.seed, cache,
                       boxes=boxes)
    gen = torch.Generator().manual_seed(cfg.seed)
    sampler = DistributedSampler(ds, di.world, di.rank, shuffle=True, seed=cfg.seed, drop_last=True) \
        if di.enabled else None
    dl = DataLoader(ds, batch_size=cfg.batch_size, shuffle=sampler is None, sampler=sampler,
                    num_workers=cfg.workers, collate_fn=collate_skip, generator=gen,
                    drop_last=len(ds) > cfg.batch_size * di.world, persistent_workers=cfg.workers > 0,
                    pin_memory=torch.cuda.is_available(), worker_init_fn=loader_worker_init)
    net = net.to(device)  # channels_last (above) on every device: faster on CPU and with CUDA AMP
    w_pos, w_neg = w_pos.to(device), w_neg.to(device)
    model = torch.nn.parallel.DistributedDataParallel(net) if di.enabled else net
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    # Disabled (a no-op whose state is {}) unless float16 autocast: bf16 and fp32 need no scaling.
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    steps_per_epoch = max(len(dl), 1)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, _lr_lambda(cfg.epochs * steps_per_epoch, int(cfg.warmup_epochs * steps_per_epoch)))
    start_epoch, best, best_epoch, history = 0, -1.0, -1, []
    last_path, best_path = out / "checkpoint_last.pt", out / "checkpoint_best.pt"
    if cfg.resume and last_path.is_file():
        ck = load_checkpoint(last_path)
        net.load_state_dict(ck["model"])  # every rank reads the same file
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        if scaler.is_enabled() and ck.get("scaler"):  # older checkpoints and fp32/bf16 runs have none
            scaler.load_state_dict(ck["scaler"])
        start_epoch, best, best_epoch, history = ck["epoch"] + 1, ck["best_metric"], ck["best_epoch"], ck["history"]
        gen.set_state(ck["rng"]["loader"])
        torch.set_rng_state(ck["rng"]["torch"])
        if di.is_main:
            print(f"resumed from {last_path} at epoch {start_epoch}")

    meta = {
        "architecture": cfg.arch,
        "cam_pool": net.cam_pool,
        "cam_stride": cfg.cam_stride,
        "body_parts": body_parts,
        "task": train_split.task,
        "preprocess": pre.to_dict(),
        "provenance": {
            "initialisation": initialisation(cfg),
            "localisation": (f"CAM trained into {sum(map(len, boxes.values()))} fracture boxes on "
                             f"{len(boxes)} images (box loss weight {cfg.box_loss:g})" if boxes else "image labels only"),
            "training_data": train_split.summary(),
            "validation_data": val_split.summary(),
            "test_data": test_split.summary() if test_split else None,
            "data_source": cfg.data,
        },
    }
    tb = _tensorboard(out / "tensorboard") if di.is_main else None
    bce = nn.BCEWithLogitsLoss(reduction="none")
    ce = nn.CrossEntropyLoss()
    for epoch in range(start_epoch, cfg.epochs):
        net.train()
        ds.set_epoch(epoch)
        if sampler is not None:
            sampler.set_epoch(epoch)
        t0, seen, loss_sum = time.time(), 0, 0.0
        bar = tqdm(dl, desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False, dynamic_ncols=True,
                   disable=not di.is_main)
        for batch in bar:
            if batch is None:
                continue
            x, y, bp, idx = batch[:4]
            _trace(di, epoch, idx)
            x, y, bp, idx = x.to(device), y.to(device), bp.to(device), idx.to(device)
            with (torch.autocast(device.type, dtype=amp_dtype) if amp_dtype is not None
                  else contextlib.nullcontext()):
                logit, bp_logits, *cam = model(x.to(memory_format=torch.channels_last), with_cam=boxes is not None)
            logit, bp_logits = logit.float(), bp_logits.float()  # losses in float32
            w = torch.where(y > 0.5, w_pos[idx], w_neg[idx])
            loss = (bce(logit, y) * w).mean() * 2  # x2: the weights average 0.5
            if boxes is not None:
                loss = loss + cfg.box_loss * box_loss(cam[0].float(), batch[4].to(device))
            if cfg.lambda_body_part > 0 and len(body_parts) > 1:
                loss = loss + cfg.lambda_body_part * ce(bp_logits, bp)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if cfg.grad_clip:
                scaler.unscale_(opt)  # clip the true gradients, not the scaled ones
                nn.utils.clip_grad_norm_(net.parameters(), cfg.grad_clip)
            scaler.step(opt)  # skips the step when fp16 gradients overflowed
            scaler.update()
            sched.step()
            seen += len(x)
            loss_sum += loss.item() * len(x)
            bar.set_postfix(loss=f"{loss_sum / seen:.4f}")
        train_time = time.time() - t0
        probs, bps = predict(net, val_split.records, pre, body_parts, workers=cfg.workers, cache=cache,
                             dist_info=di)
        m = evaluate_predictions(val_split.records, probs, bps, body_parts)
        row = {
            "epoch": epoch + 1,
            "train_loss": loss_sum / max(seen, 1),
            "val_image_auc": m["image"]["auc"],
            "val_study_auc": m["study"]["auc"],
            "val_study_kappa": m["study"]["kappa"],
            "val_body_part_acc": m.get("body_part_accuracy", float("nan")),
            "lr": sched.get_last_lr()[0],
            "images_per_s": seen / max(train_time, 1e-9),
        }
        history.append(row)
        if di.is_main:
            _write_history(out / "metrics.csv", history)
            if tb is not None:
                for k, v in row.items():
                    if k != "epoch" and isinstance(v, float) and not math.isnan(v):
                        tb.add_scalar(k, v, epoch + 1)
                tb.flush()
            print(" ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))
        score = row["val_study_auc"] if not math.isnan(row["val_study_auc"]) else -row["train_loss"]
        improved = score > best
        if improved:
            best, best_epoch = score, epoch + 1
            if di.is_main:
                save_checkpoint(best_path, {"model": net.state_dict(), "meta": meta, "epoch": epoch})
        if di.is_main:
            save_checkpoint(last_path, {
                "model": net.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                "scaler": scaler.state_dict(),
                "epoch": epoch, "best_metric": best, "best_epoch": best_epoch, "history": history,
                "meta": meta, "rng": {"torch": torch.get_rng_state(), "loader": gen.get_state()},
            })
        barrier(di)  # nobody races ahead of rank 0's checkpoint
        if os.environ.get("MURA_TRAIN_DIE_AFTER_EPOCH") == str(epoch + 1):  # crash-test hook
            os._exit(137)
        if epoch + 1 - best_epoch >= cfg.patience:
            if di.is_main:
                print(f"early stop: no validation improvement for {cfg.patience} epochs")
            break

    if tb is not None:
        tb.close()
    _trace(di, -1, None, net)
    if not di.is_main:
        return {}
    return finalize(best_path, val_split, test_split, cfg, out)


def _tensorboard(logdir: Path):
    """A SummaryWriter, or None when tensorboard is not installed (metrics.csv has it all too)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(logdir))


def _trace(di: DistInfo, epoch: int, idx, net: nn.Module | None = None) -> None:
    """Test hook (MURA_TRAIN_TRACE_DIR): which samples each rank saw, and its final weights."""
    d = os.environ.get("MURA_TRAIN_TRACE_DIR")
    if not d:
        return
    path = Path(d) / f"rank{di.rank}.jsonl"
    rec = {"epoch": epoch, "idx": idx.tolist()} if net is None else {
        "final": float(sum(p.double().sum().item() * (i + 1) for i, p in enumerate(net.parameters())))}
    with path.open("a") as f:
        f.write(json.dumps(rec) + "\n")


def finalize(best_path: Path, val_split: DatasetSplit, test_split: DatasetSplit | None,
             cfg: TrainConfig, out: Path) -> dict:
    """Reload the best model, choose thresholds on validation, score val (and test), save card data."""
    from trainer.checkpoint import model_from_checkpoint

    ck = load_checkpoint(best_path)
    meta = ck["meta"]
    net = model_from_checkpoint(ck).to(memory_format=torch.channels_last)
    net.calibration = (1.0, 0.0)  # fitted afresh below, on the raw outputs
    pre = PreprocessConfig.from_dict(meta["preprocess"])
    bp_names = meta["body_parts"]
    raw, bps = predict(net, val_split.records, pre, bp_names, workers=cfg.workers)
    calibration = fit_calibration(val_split.records, raw, cfg.calibrate)
    cal = (calibration["slope"], calibration["intercept"])
    probs = apply_platt(raw, *cal)
    thresholds = choose_thresholds(val_split.records, probs, cfg.sensitivity_target)
    sets = [("internal_validation", val_split.records, probs, bps, raw)]
    if test_split is not None:
        tp, tb = predict(net, test_split.records, pre, bp_names, workers=cfg.workers)
        sets.append(("test", test_split.records, apply_platt(tp, *cal), tb, tp))
    metrics = {}
    for name, recs, pr, bp, rw in sets:
        metrics[name] = evaluate_predictions(recs, pr, bp, bp_names, thresholds["likely"], ci=True)
        metrics[name]["study"]["ece_uncalibrated"] = study_ece(recs, rw)
        metrics[name]["operating_points"] = operating_points(recs, pr, thresholds)
        write_evaluation_plots(out / "plots" / name, recs, pr, bp, bp_names, thresholds["likely"],
                               f"{meta['architecture']} {name.replace('_', ' ')}")
        ok = ~np.isnan(rw)
        draw_reliability_png(out / "plots" / name / "reliability_uncalibrated.png",
                             [{"title": f"{name.replace('_', ' ')}: before calibration", "labels":
                               np.array([r.label for r in recs])[ok], "probs": rw[ok]}])
    meta = {**meta, "calibration": calibration, "thresholds": thresholds, "metrics": metrics,
            "best_epoch": int(ck["epoch"]) + 1}
    save_checkpoint(best_path, {"model": ck["model"], "meta": meta, "epoch": ck["epoch"]})
    summary = {"checkpoint": str(best_path), **{k: meta[k] for k in ("architecture", "thresholds", "calibration", "metrics", "best_epoch")}}
    atomic_write_json(out / "summary.json", summary)
    for name, m in metrics.items():
        print(f"[{name}] image AUC {m['image']['auc']:.4f}  study AUC {m['study']['auc']:.4f}  "
              f"study kappa {m['study']['kappa']:.4f}  study acc {m['study']['accuracy']:.4f}  "
              f"({m['n_images']} images, {m['n_studies']} studies)")
    return summary


def _write_history(path: Path, rows: list[dict]) -> None:
    import io

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]))
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(path, buf.getvalue())


def summary_json(path: str | Path) -> dict:
    return json.loads(Path(path).read_text())
