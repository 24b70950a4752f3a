"""Training throughput per backbone: the model step alone vs the whole pipeline with data loading.

    python bench/train_throughput.py [--size 224] [--backbones custom_cnn,efficientnet_b0]
                                     [--data mura:PATH] [--steps 6] [--rounds 3] [--workers 1]
                                     [--cache-dir DIR] [--same-priority] [--device auto|cpu|cuda]
                                     [--amp auto|off|fp16|bf16]

The pipeline runs the real RecordDataset (decode -> to_unit -> augment -> standardize) in a
DataLoader; without ``--data`` it first writes phantom MURA images of radiograph-like size
(768-1024 px). Two pipeline figures, because training sees two regimes:

* *first epoch*: every image decoded from its file (what ``cache_dir: ""`` costs every epoch);
* *later epochs*: images read from the warm decode cache (``cache_dir`` set, as in
  ``results/fracatlas/config.yaml``), the steady state of a training run.

Target: later-epoch pipeline >= 80 % of the model-alone rate. The model step and the
later-epoch pipeline are measured in ``--rounds`` interleaved rounds on the same network and
the medians reported, so a slow moment of the machine hits both and not only one of them.
Each pipeline measurement first drains what the loader prefetched while the model ran alone
and takes one untimed step, so it times the steady state, not a head start or a cold queue.
Loader workers run at lower CPU priority, as in mura-train (``--same-priority`` to compare).
Prints a Markdown table. On a GPU the step runs as in training: channels_last and, with
``--amp auto``, float16 autocast with gradient scaling.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import torch
from torch.utils.data import DataLoader, RandomSampler

from models.datasources import load_source
from models.nn.networks import create_model, list_models
from models.preprocess import PreprocessConfig
from trainer.data import Augment, DecodeCache, RecordDataset, collate_skip, loader_worker_init
from trainer.train import resolve_amp

TARGET = 0.80


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


def model_rate(step: Step, batch: int, size: int, k: int, steps: int) -> float:
    """Images/s of ``steps`` optimisation steps on one resident batch (no data loading at all)."""
    x = torch.randn(batch, 1, size, size, device=step.device)
    y = torch.randint(0, 2, (batch,), device=step.device).float()
    bp = torch.randint(0, k, (batch,), device=step.device)
    step(x, y, bp)  # warm-up (allocator, kernels chosen for this shape)
    step.sync()
    t = time.perf_counter()
    for _ in range(steps):
        step(x, y, bp)
    step.sync()
    return steps * batch / (time.perf_counter() - t)


class Loader:
    """An endless DataLoader stream over the dataset, as a training epoch reads it.

    Sampling with replacement never ends the iterator, so no measurement pays a worker restart
    or an epoch boundary that a long epoch would not.
    """

    def __init__(self, ds: RecordDataset, batch: int, workers: int, pin: bool, nice: bool = True):
        self.workers = workers
        self.prefetch = 2 if workers > 0 else 0
        sampler = RandomSampler(ds, replacement=True, num_samples=1 << 30,
                                generator=torch.Generator().manual_seed(0))
        self.dl = DataLoader(ds, batch_size=batch, sampler=sampler, num_workers=workers,
                             collate_fn=collate_skip, pin_memory=pin, prefetch_factor=self.prefetch or None,
                             worker_init_fn=loader_worker_init if nice else None)
        self.it: Iterator = iter(self.dl)

    def next(self):
        while (b := next(self.it)) is None:  # a batch of undecodable files only
            pass
        return b


def pipeline_rate(step: Step, loader: Loader, steps: int) -> float:
    """Images/s of ``steps`` steps fed by ``loader``, in its steady state."""
    for _ in range(loader.workers * loader.prefetch):
        loader.next()  # batches prefetched while something else ran: a head start, not throughput
    x, y, bp, _ = loader.next()
    step(x, y, bp)  # untimed: the loader refills its queue behind this step, as in an epoch
    step.sync()
    seen, t = 0, time.perf_counter()
    for _ in range(steps):
        x, y, bp, _ = loader.next()
        step(x, y, bp)
        seen += len(x)
    step.sync()
    return seen / (time.perf_counter() - t)


def warm_cache(cache: DecodeCache, split, cfg: PreprocessConfig) -> float:
    """Decode every image into ``cache`` once (the first epoch's side effect); returns seconds."""
    t = time.perf_counter()
    for r in split.records:
        with contextlib.suppress(Exception):  # undecodable files are the dataset's problem, not the bench's
            cache.get(r.path, cfg)
    return time.perf_counter() - t


def measure(name: str, a: argparse.Namespace, split, cache: DecodeCache, device: torch.device,
            amp: torch.dtype | None) -> dict[str, float]:
    cfg = PreprocessConfig(input_size=a.size)
    k = len(split.body_parts)
    step = Step(name, k, device, amp)
    pin = device.type == "cuda"

    def loader(c: DecodeCache | None) -> Loader:
        ds = RecordDataset(split.records, cfg, split.body_parts, Augment(), cache=c)
        return Loader(ds, a.batch, a.workers, pin, nice=not a.same_priority)

    # A new loader's workers start decoding at once; let that finish before anything is timed.
    warm = loader(cache)
    pipeline_rate(step, warm, 1)
    models, warms = [], []
    for _ in range(a.rounds):
        models.append(model_rate(step, a.batch, a.size, k, a.steps))
        warms.append(pipeline_rate(step, warm, a.steps))
    del warm  # stops its workers
    cold = loader(None)
    first = pipeline_rate(step, cold, a.steps)
    del cold
    return {"model": statistics.median(models), "first": first, "later": statistics.median(warms),
            "model_spread": max(models) / min(models) - 1, "later_spread": max(warms) / min(warms) - 1}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=224, help="input side in pixels")
    ap.add_argument("--batch", type=int, default=16, help="batch size")
    ap.add_argument("--steps", type=int, default=6, help="timed optimisation steps per measurement")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved model/pipeline rounds (medians reported)")
    ap.add_argument("--backbones", default=",".join(list_models()), help="comma-separated architectures")
    ap.add_argument("--data", default="", help="data source (default: phantom MURA written to a temp folder)")
    ap.add_argument("--workers", type=int, default=1, help="DataLoader workers for the pipeline measurement")
    ap.add_argument("--cache-dir", default="", help="decode cache for the later-epoch figure (default: a temp folder)")
    ap.add_argument("--same-priority", action="store_true",
                    help="run loader workers at the trainer's CPU priority (default: lower, as mura-train does)")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="auto = CUDA when present")
    ap.add_argument("--amp", default="auto", help="as mura-train --amp: auto (fp16 on CUDA, off on CPU), off, fp16, bf16")
    a = ap.parse_args()
    device = torch.device("cuda" if a.device == "cuda" or (a.device == "auto" and torch.cuda.is_available())
                          else "cpu")
    amp = resolve_amp(a.amp, device)
    tmp = tempfile.TemporaryDirectory()
    if not a.data:
        from models.synth import write_mura

        write_mura(Path(tmp.name) / "mura", seed=0, n_patients=60, size_range=(768, 1024))
        a.data = f"mura:{Path(tmp.name) / 'mura'}"
    split = load_source(a.data, "train")
    cfg = PreprocessConfig(input_size=a.size)
    cache = DecodeCache(a.cache_dir or Path(tmp.name) / "cache", cfg)
    secs = warm_cache(cache, split, cfg)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"torch {torch.__version__}, {where}, amp {amp or 'off'}, channels_last, {a.size} px, batch {a.batch}, "
          f"{a.workers} loader workers ({'same' if a.same_priority else 'lower'} priority), data {a.data} ({len(split.records)} images; cache warmed in {secs:.1f} s)\n"
          f"medians of {a.rounds} interleaved rounds of {a.steps} steps (spread = max/min - 1); "
          f"target: later epochs >= {TARGET:.0%} of the model alone\n")
    print("| backbone | model step alone (img/s) | pipeline, first epoch: decode (img/s) | "
          "pipeline, later epochs: cache (img/s) | spread model / later | first / model | later / model |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name in a.backbones.split(","):
        r = measure(name, a, split, cache, device, amp)
        print(f"| {name} | {r['model']:.1f} | {r['first']:.1f} | {r['later']:.1f} | "
              f"{r['model_spread']:.0%} / {r['later_spread']:.0%} | {r['first'] / r['model']:.0%} | "
              f"{r['later'] / r['model']:.0%} |", flush=True)
    tmp.cleanup()


if __name__ == "__main__":
    main()
