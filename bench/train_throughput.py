"""Training throughput per backbone: the model step alone vs the whole pipeline with data loading.

    python bench/train_throughput.py [--size 224] [--backbones custom_cnn,efficientnet_b0]
                                     [--data mura:PATH] [--steps 6] [--workers 1] [--cache-dir DIR]

The pipeline number runs the real RecordDataset (decode -> to_unit -> augment -> standardize) in a
DataLoader; without ``--data`` it first writes phantom MURA images of radiograph-like size. Target:
pipeline >= 80 % of the model-alone rate. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from models.networks import create_model, list_models
from models.preprocess import PreprocessConfig
from trainer.data import Augment, DecodeCache, RecordDataset, collate_skip
from trainer.datasets import load_source


def model_rate(name: str, size: int, batch: int, steps: int, k: int) -> float:
    net = create_model(name, k).to(memory_format=torch.channels_last).train()
    opt = torch.optim.AdamW(net.parameters(), 1e-4)
    x = torch.randn(batch, 1, size, size).to(memory_format=torch.channels_last)
    y = torch.randint(0, 2, (batch,)).float()
    bp = torch.randint(0, k, (batch,))

    def step():
        logit, bpl = net(x)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logit, y) + torch.nn.functional.cross_entropy(bpl, bp)
        opt.zero_grad()
        loss.backward()
        opt.step()

    step()  # warm-up
    t = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * batch / (time.perf_counter() - t)


def pipeline_rate(name: str, size: int, batch: int, steps: int, split, workers: int, cache_dir: str | None) -> float:
    cfg = PreprocessConfig(input_size=size)
    net = create_model(name, len(split.body_parts)).to(memory_format=torch.channels_last).train()
    opt = torch.optim.AdamW(net.parameters(), 1e-4)
    cache = DecodeCache(cache_dir, cfg) if cache_dir else None
    ds = RecordDataset(split.records, cfg, split.body_parts, Augment(), cache=cache)
    dl = DataLoader(ds, batch_size=batch, shuffle=True, num_workers=workers, collate_fn=collate_skip,
                    persistent_workers=workers > 0, pin_memory=torch.cuda.is_available())
    it = iter(dl)
    seen, t = 0, None
    for i in range(steps + 1):
        try:
            b = next(it)
        except StopIteration:
            it = iter(dl)
            b = next(it)
        x, y, bp, _ = b
        logit, bpl = net(x.to(memory_format=torch.channels_last))
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logit, y.float()) + torch.nn.functional.cross_entropy(bpl, bp)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i == 0:
            t = time.perf_counter()  # first batch = warm-up (worker start, first decode)
        else:
            seen += len(x)
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
    a = ap.parse_args()
    tmp = None
    if not a.data:
        from trainer.synth import write_mura

        tmp = tempfile.TemporaryDirectory()
        write_mura(Path(tmp.name) / "mura", seed=0, n_patients=60, size_range=(768, 1024))
        a.data = f"mura:{Path(tmp.name) / 'mura'}"
    split = load_source(a.data, "train")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {a.size} px, batch {a.batch}, "
          f"{a.workers} loader workers, data {a.data}\n")
    print("| backbone | model step alone (img/s) | whole pipeline (img/s) | pipeline / model |")
    print("| --- | --- | --- | --- |")
    for name in a.backbones.split(","):
        m = model_rate(name, a.size, a.batch, a.steps, len(split.body_parts))
        p = pipeline_rate(name, a.size, a.batch, a.steps, split, a.workers, a.cache_dir or None)
        print(f"| {name} | {m:.1f} | {p:.1f} | {p / m:.0%} |", flush=True)


if __name__ == "__main__":
    main()
