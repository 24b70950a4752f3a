"""The training loop for the multi-task network (fracture/abnormality + body part).

Loss: BCE for the finding, weighted per body part as in MURA (w+ = N/(P+N), w- = P/(P+N)), plus
``lambda_body_part`` x cross-entropy for the body part (0 gives the single-task baseline).
Model selection on validation study-level AUC; operating points chosen on validation. At the end
the best checkpoint gets its calibration, operating points and figures, and ``run_manifest.json``
beside it: the schema-checked hand-over to ``mura-compress`` (:mod:`models.manifest`).
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

from models.datasources import DatasetSplit, Record, split_source
from models.errors import ConfigError
from models.fsutil import atomic_write_json, atomic_write_text
from models.metrics import evaluate_predictions
from models.nn.checkpoint import load_checkpoint, save_checkpoint
from models.nn.networks import create_model, list_models, model_defaults
from models.preprocess import PreprocessConfig
from trainer.data import Augment, DecodeCache, RecordDataset, collate_skip, loader_worker_init
from trainer.distributed import DistInfo, barrier, init_distributed, shutdown
from trainer.finalize import finalize
from trainer.localisation import box_loss, init_network, training_boxes
from trainer.predict import predict


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
    return split_source(cfg.data, cfg.val_fraction, cfg.seed, cfg.max_train_images)


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


@dataclass
class _Job:
    """What one training run holds while it runs, built once by :func:`_prepare`."""

    cfg: TrainConfig
    di: DistInfo
    out: Path
    device: torch.device
    amp_dtype: torch.dtype | None
    pre: PreprocessConfig
    train_split: DatasetSplit
    val_split: DatasetSplit
    test_split: DatasetSplit | None
    net: nn.Module
    boxes: dict | None = None
    cache: DecodeCache | None = None
    ds: RecordDataset | None = None
    dl: DataLoader | None = None
    sampler: DistributedSampler | None = None
    gen: torch.Generator | None = None
    model: nn.Module | None = None  # net, or its DDP wrapper
    opt: torch.optim.Optimizer | None = None
    sched: torch.optim.lr_scheduler.LambdaLR | None = None
    scaler: torch.amp.GradScaler | None = None
    w_pos: torch.Tensor | None = None
    w_neg: torch.Tensor | None = None

    @property
    def body_parts(self) -> list[str]:
        return self.train_split.body_parts


@dataclass
class _Progress:
    """Where the run stands: restored on --resume, saved in checkpoint_last.pt."""

    start_epoch: int = 0
    best: float = -1.0
    best_epoch: int = -1
    history: list[dict] = field(default_factory=list)


def _train(cfg: TrainConfig, di: DistInfo) -> dict:
    job = _prepare(cfg, di)
    progress = _resume(job)
    meta = _meta(job)
    tb = _tensorboard(job.out / "tensorboard") if di.is_main else None
    for epoch in range(progress.start_epoch, cfg.epochs):
        seen, loss_sum, train_time = _train_epoch(job, epoch)
        row = _validate_epoch(job, epoch, seen, loss_sum, train_time)
        progress.history.append(row)
        if di.is_main:
            _report_epoch(job, progress.history, row, tb)
        _save_epoch(job, progress, epoch, row, meta)
        if os.environ.get("MURA_TRAIN_DIE_AFTER_EPOCH") == str(epoch + 1):  # crash-test hook
            os._exit(137)
        if epoch + 1 - progress.best_epoch >= cfg.patience:
            if di.is_main:
                print(f"early stop: no validation improvement for {cfg.patience} epochs")
            break
    if tb is not None:
        tb.close()
    _trace(di, -1, None, job.net)
    if not di.is_main:
        return {}
    return finalize(job.out / "checkpoint_best.pt", job.val_split, job.test_split, cfg, job.out)


def _prepare(cfg: TrainConfig, di: DistInfo) -> _Job:
    """Data, network, loader and optimiser, in the order that fixes every random draw (resume
    and DDP rely on it: same seed on every rank, identical initial weights)."""
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    seed_everything(cfg.seed)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    train_split, val_split, test_split = split_data(cfg)
    size = cfg.input_size or model_defaults(cfg.arch).input_size
    defaults = model_defaults(cfg.arch)
    pre = PreprocessConfig(input_size=size, mean=defaults.mean, std=defaults.std, clahe=cfg.clahe,
                           clahe_clip_limit=cfg.clahe_clip_limit, clahe_tiles=cfg.clahe_tiles)
    device = torch.device(f"cuda:{di.local_rank}" if torch.cuda.is_available() else "cpu")
    amp_dtype = resolve_amp(cfg.amp, device)
    if amp_dtype == torch.float16 and device.type != "cuda" and di.is_main:
        print("--amp fp16 on a CPU: float16 autocast with loss scaling, as on CUDA, but much slower "
              "than float32 on most CPUs (use it to test the GPU path; --amp bf16 or off to train)")
    _write_run_files(cfg, di, out, [train_split, test_split], {"input_size": size, "device": str(device),
                                                               "amp_dtype": str(amp_dtype or "off")})
    net = create_model(cfg.arch, num_body_parts=len(train_split.body_parts), pretrained_weights=cfg.pretrained_weights,
                       pretrained=cfg.pretrained, cam_pool=cfg.cam_pool or None, cam_stride=cfg.cam_stride)
    if cfg.init_from:
        init_network(net, cfg)
    job = _Job(cfg, di, out, device, amp_dtype, pre, train_split, val_split, test_split,
               net.to(memory_format=torch.channels_last))
    weights = body_part_class_weights(train_split.records)
    job.w_pos = torch.tensor([weights[r.body_part][0] for r in train_split.records])
    job.w_neg = torch.tensor([weights[r.body_part][1] for r in train_split.records])
    _build_loader(job)
    _build_optimisation(job)
    return job


def _write_run_files(cfg: TrainConfig, di: DistInfo, out: Path, splits: list[DatasetSplit | None],
                     resolved: dict) -> None:
    """config.json (the run as resolved: input size, device, AMP) and data_problems.txt, on rank 0."""
    problems = [p for split in splits if split is not None for p in split.problems]
    if di.is_main:
        atomic_write_json(out / "config.json", {**asdict(cfg), "input_size": resolved["input_size"],
                                                "world_size": di.world, "device": resolved["device"],
                                                "amp_dtype": resolved["amp_dtype"]})
        atomic_write_text(out / "data_problems.txt", "".join(f"{p}\n" for p in problems))
    if problems and di.is_main:
        print(f"{len(problems)} data problems (skipped; listed in {out / 'data_problems.txt'})")


def _build_loader(job: _Job) -> None:
    """The training set (augmented, cached, with boxes for --box-loss) and its loader."""
    cfg, di = job.cfg, job.di
    job.cache = DecodeCache(cfg.cache_dir, job.pre) if cfg.cache_dir else None
    job.boxes = training_boxes(cfg, job.train_split) if cfg.box_loss > 0 else None
    job.ds = RecordDataset(job.train_split.records, job.pre, job.body_parts, Augment() if cfg.augment else None,
                           cfg.seed, job.cache, boxes=job.boxes)
    job.gen = torch.Generator().manual_seed(cfg.seed)
    job.sampler = DistributedSampler(job.ds, di.world, di.rank, shuffle=True, seed=cfg.seed, drop_last=True) \
        if di.enabled else None
    job.dl = DataLoader(job.ds, batch_size=cfg.batch_size, shuffle=job.sampler is None, sampler=job.sampler,
                        num_workers=cfg.workers, collate_fn=collate_skip, generator=job.gen,
                        drop_last=len(job.ds) > cfg.batch_size * di.world, persistent_workers=cfg.workers > 0,
                        pin_memory=torch.cuda.is_available(), worker_init_fn=loader_worker_init)


def _build_optimisation(job: _Job) -> None:
    """Network on its device (DDP-wrapped when distributed), AdamW, loss scaler, cosine schedule."""
    cfg = job.cfg
    job.net = job.net.to(job.device)  # channels_last (above) on every device: faster on CPU and with CUDA AMP
    job.w_pos, job.w_neg = job.w_pos.to(job.device), job.w_neg.to(job.device)
    job.model = torch.nn.parallel.DistributedDataParallel(job.net) if job.di.enabled else job.net
    job.opt = torch.optim.AdamW(job.net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    # Disabled (a no-op whose state is {}) unless float16 autocast: bf16 and fp32 need no scaling.
    job.scaler = torch.amp.GradScaler(job.device.type, enabled=job.amp_dtype == torch.float16)
    steps_per_epoch = max(len(job.dl), 1)
    job.sched = torch.optim.lr_scheduler.LambdaLR(
        job.opt, _lr_lambda(cfg.epochs * steps_per_epoch, int(cfg.warmup_epochs * steps_per_epoch)))


def _resume(job: _Job) -> _Progress:
    """With --resume and OUT/checkpoint_last.pt: weights, optimiser, schedule, scaler, RNG, history."""
    last_path = job.out / "checkpoint_last.pt"
    if not (job.cfg.resume and last_path.is_file()):
        return _Progress()
    ck = load_checkpoint(last_path)
    job.net.load_state_dict(ck["model"])  # every rank reads the same file
    job.opt.load_state_dict(ck["optimizer"])
    job.sched.load_state_dict(ck["scheduler"])
    if job.scaler.is_enabled() and ck.get("scaler"):  # older checkpoints and fp32/bf16 runs have none
        job.scaler.load_state_dict(ck["scaler"])
    job.gen.set_state(ck["rng"]["loader"])
    torch.set_rng_state(ck["rng"]["torch"])
    if job.di.is_main:
        print(f"resumed from {last_path} at epoch {ck['epoch'] + 1}")
    return _Progress(ck["epoch"] + 1, ck["best_metric"], ck["best_epoch"], ck["history"])


def _meta(job: _Job) -> dict:
    """What the checkpoints carry about the model: enough to rebuild it, resume it and derive its
    run manifest (models.manifest.manifest_from_meta)."""
    cfg, boxes = job.cfg, job.boxes
    return {
        "architecture": cfg.arch,
        "cam_pool": job.net.cam_pool,
        "cam_stride": cfg.cam_stride,
        "body_parts": job.body_parts,
        "task": job.train_split.task,
        "preprocess": job.pre.to_dict(),
        "provenance": {
            "initialisation": initialisation(cfg),
            "localisation": (f"CAM trained into {sum(map(len, boxes.values()))} fracture boxes on "
                             f"{len(boxes)} images (box loss weight {cfg.box_loss:g})" if boxes else "image labels only"),
            "training_data": job.train_split.summary(),
            "validation_data": job.val_split.summary(),
            "test_data": job.test_split.summary() if job.test_split else None,
            "data_source": cfg.data,
        },
    }


def _train_epoch(job: _Job, epoch: int) -> tuple[int, float, float]:
    """One pass over the training set: (images seen, summed loss, seconds)."""
    job.net.train()
    job.ds.set_epoch(epoch)
    if job.sampler is not None:
        job.sampler.set_epoch(epoch)
    t0, seen, loss_sum = time.time(), 0, 0.0
    bar = tqdm(job.dl, desc=f"epoch {epoch + 1}/{job.cfg.epochs}", leave=False, dynamic_ncols=True,
               disable=not job.di.is_main)
    losses = (nn.BCEWithLogitsLoss(reduction="none"), nn.CrossEntropyLoss())
    for batch in bar:
        if batch is None:
            continue
        n = len(batch[0])
        loss_sum += _step(job, epoch, batch, losses) * n
        seen += n
        bar.set_postfix(loss=f"{loss_sum / seen:.4f}")
    return seen, loss_sum, time.time() - t0


def _step(job: _Job, epoch: int, batch, losses: tuple[nn.Module, nn.Module]) -> float:
    """One optimisation step on one batch; returns its loss."""
    cfg, device, amp_dtype = job.cfg, job.device, job.amp_dtype
    bce, ce = losses
    x, y, bp, idx = batch[:4]
    _trace(job.di, epoch, idx)
    x, y, bp, idx = x.to(device), y.to(device), bp.to(device), idx.to(device)
    with (torch.autocast(device.type, dtype=amp_dtype) if amp_dtype is not None else contextlib.nullcontext()):
        logit, bp_logits, *cam = job.model(x.to(memory_format=torch.channels_last), with_cam=job.boxes is not None)
    logit, bp_logits = logit.float(), bp_logits.float()  # losses in float32
    w = torch.where(y > 0.5, job.w_pos[idx], job.w_neg[idx])
    loss = (bce(logit, y) * w).mean() * 2  # x2: the weights average 0.5
    if job.boxes is not None:
        loss = loss + cfg.box_loss * box_loss(cam[0].float(), batch[4].to(device))
    if cfg.lambda_body_part > 0 and len(job.body_parts) > 1:
        loss = loss + cfg.lambda_body_part * ce(bp_logits, bp)
    job.opt.zero_grad(set_to_none=True)
    job.scaler.scale(loss).backward()
    if cfg.grad_clip:
        job.scaler.unscale_(job.opt)  # clip the true gradients, not the scaled ones
        nn.utils.clip_grad_norm_(job.net.parameters(), cfg.grad_clip)
    job.scaler.step(job.opt)  # skips the step when fp16 gradients overflowed
    job.scaler.update()
    job.sched.step()
    return loss.item()


def _validate_epoch(job: _Job, epoch: int, seen: int, loss_sum: float, train_time: float) -> dict:
    """The epoch's row of metrics.csv: training loss and internal-validation figures."""
    probs, bps = predict(job.net, job.val_split.records, job.pre, job.body_parts, workers=job.cfg.workers,
                         cache=job.cache, dist_info=job.di)
    m = evaluate_predictions(job.val_split.records, probs, bps, job.body_parts)
    return {
        "epoch": epoch + 1,
        "train_loss": loss_sum / max(seen, 1),
        "val_image_auc": m["image"]["auc"],
        "val_study_auc": m["study"]["auc"],
        "val_study_kappa": m["study"]["kappa"],
        "val_body_part_acc": m.get("body_part_accuracy", float("nan")),
        "lr": job.sched.get_last_lr()[0],
        "images_per_s": seen / max(train_time, 1e-9),
    }


def _report_epoch(job: _Job, history: list[dict], row: dict, tb) -> None:
    """metrics.csv, tensorboard and one console line (rank 0)."""
    _write_history(job.out / "metrics.csv", history)
    if tb is not None:
        for k, v in row.items():
            if k != "epoch" and isinstance(v, float) and not math.isnan(v):
                tb.add_scalar(k, v, row["epoch"])
        tb.flush()
    print(" ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))


def _save_epoch(job: _Job, progress: _Progress, epoch: int, row: dict, meta: dict) -> None:
    """checkpoint_best.pt when validation improved, checkpoint_last.pt always (rank 0), then a barrier."""
    score = row["val_study_auc"] if not math.isnan(row["val_study_auc"]) else -row["train_loss"]
    if score > progress.best:
        progress.best, progress.best_epoch = score, epoch + 1
        if job.di.is_main:
            save_checkpoint(job.out / "checkpoint_best.pt", {"model": job.net.state_dict(), "meta": meta, "epoch": epoch})
    if job.di.is_main:
        save_checkpoint(job.out / "checkpoint_last.pt", {
            "model": job.net.state_dict(), "optimizer": job.opt.state_dict(), "scheduler": job.sched.state_dict(),
            "scaler": job.scaler.state_dict(), "epoch": epoch, "best_metric": progress.best,
            "best_epoch": progress.best_epoch, "history": progress.history,
            "meta": meta, "rng": {"torch": torch.get_rng_state(), "loader": job.gen.get_state()},
        })
    barrier(job.di)  # nobody races ahead of rank 0's checkpoint


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


def _write_history(path: Path, rows: list[dict]) -> None:
    import io

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]))
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(path, buf.getvalue())


def summary_json(path: str | Path) -> dict:
    return json.loads(Path(path).read_text())
