"""Training throughput per backbone: the model step alone vs the whole pipeline with data loading.

    python bench/train_throughput.py [--size 224] [--backbones custom_cnn,efficientnet_b0]
                                     [--data mura:PATH] [--steps 6] [--workers 1] [--cache-dir DIR]
                                     [--device auto|cpu|cuda] [--amp auto|off|fp16|bf16]

The pipeline number runs the real RecordDataset (decode -> to_unit -> augment -> standardize) in a
DataLoader; without ``--data`` it first writes phantom MURA images of radiograph-like size. Target:
pipeline >= 80 % of the model-alone rate. Prints a Markdown table. On a GPU the step runs as in
training: channels_last and, with ``--amp auto``, float16 autocast with gradient scaling.
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from models.networks import create_model, list_models
from models.preprocess import PreprocessConfig
from trainer.data import Augment, DecodeCache, RecordDataset, collate_skip
from trainer.datasets import load_source
from trainer.train import resolve_amp


class Step:
    """One training step as the trainer does it (autocast, GradScaler, channels_last) on ``device``."""

    def __init__(self, name: str, k: int, device: torch.device, amp: torch.dtype | None):
        self.device, self.amp = device, amp
        self.net = create_model(name, k).to(device=device, memory_format=torch.channels_last).train()
        self.opt = torch.optim.AdamW(self.net.parameters(), 1e-4)
        self.scaler = torch.amp.GradScaler(device.type, enabled=amp == torch.float16)

    def __call__(self, x: torch.Tensor, y: torch.Tensor, bp: torch.Tensor) -> None:
        x = x.to(self.device, non_blocking=True).to(memory_format=torch.channels_last)
        y, bp = y.to(self.device).float(), bp.to(self.device)
        ctx = torch.autocast(self.device.type, dtype=self.amp) if self.amp else contextlib.nullcontext()
        with ctx:
            logit, bpl = self.net(x)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logit.float(), y) + \
            torch.nn.functional.cross_entropy(bpl.float(), bp)
        self.opt.zero_grad()
        self.scaler.scale(loss).backward()
        self.scaler.step(self.opt)
        self.scaler.update()

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


def model_rate(name: str, size: int, batch: int, steps: int, k: int, device: torch.device,
               amp: torch.dtype | None) -> float:
    step = Step(name, k, device, amp)
    x = torch.randn(batch, 1, size, size, device=device)
    y = torch.randint(0, 2, (batch,), device=device).float()
    bp = torch.randint(0, k, (batch,), device=device)
    step(x, y, bp)  # warm-up
    step.sync()
    t = time.perf_counter()
    for _ in range(steps):
        step(x, y, bp)
    step.sync()
    return steps * batch / (time.perf_counter() - t)


def pipeline_rate(name: str, size: int, batch: int, steps: int, split, workers: int, cache_dir: str | None,
                  device: torch.device, amp: torch.dtype | None) -> float:
    cfg = PreprocessConfig(input_size=size)
    step = Step(name, len(split.body_parts), device, amp)
    cache = DecodeCache(cache_dir, cfg) if cache_dir else None
    ds = RecordDataset(split.records, cfg, split.body_parts, Augment(), cache=cache)
    dl = DataLoader(ds, batch_size=batch, shuffle=True, num_workers=workers, collate_fn=collate_skip,
                    persistent_workers=workers > 0, pin_memory=device.type == "cuda")
    it = iter(dl)
    seen, t = 0, None
    for i in range(steps + 1):
        try:
            b = next(it)
        except StopIteration:
            it = iter(dl)
            b = next(it)
        x, y, bp, _ = b
        step(x, y, bp)
        if i == 0:
            step.sync()
            t = time.perf_counter()  # first batch = warm-up (worker start, first decode)
        else:
            seen += len(x)
    step.sync()
    return seen / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=224, help="input side in pixels")
    ap.add_argument("--batch", type=int, default=16, help="batch size")
    ap.add_argument("--steps", type=int, default=6, help="timed optimisation steps per measurement")
    ap.add_argument("--backbones", default=",".join(list_models()), help="comma-separated architectures")
    ap.add_argument("--data", default="", help="data source (default: phantom MURA written to a temp folder)")
    ap.add_argument("--workers", type=int, default=1, help="DataLoader workers for the pipeline measurement")
    ap.add_argument("--cache-dir", default="", help="decode cache (warm it by running twice)")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="auto = CUDA when present")
    ap.add_argument("--amp", default="auto", help="as mura-train --amp: auto (fp16 on CUDA, off on CPU), off, fp16, bf16")
    a = ap.parse_args()
    device = torch.device("cuda" if a.device == "cuda" or (a.device == "auto" and torch.cuda.is_available())
                          else "cpu")
    amp = resolve_amp(a.amp, device)
    tmp = None
    if not a.data:
        from trainer.synth import write_mura

        tmp = tempfile.TemporaryDirectory()
        write_mura(Path(tmp.name) / "mura", seed=0, n_patients=60, size_range=(768, 1024))
        a.data = f"mura:{Path(tmp.name) / 'mura'}"
    split = load_source(a.data, "train")
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"torch {torch.__version__}, {where}, amp {amp or 'off'}, channels_last, {a.size} px, batch {a.batch}, "
          f"{a.workers} loader workers, data {a.data}\n")
    print("| backbone | model step alone (img/s) | whole pipeline (img/s) | pipeline / model |")
    print("| --- | --- | --- | --- |")
    for name in a.backbones.split(","):
        m = model_rate(name, a.size, a.batch, a.steps, len(split.body_parts), device, amp)
        p = pipeline_rate(name, a.size, a.batch, a.steps, split, a.workers, a.cache_dir or None, device, amp)
        print(f"| {name} | {m:.1f} | {p:.1f} | {p / m:.0%} |", flush=True)


if __name__ == "__main__":
    main()
