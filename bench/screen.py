"""Batch screening throughput: the whole pipeline beside the engine's raw images/s, as a Markdown table.

Why: the screener is meant to hide decoding and I/O behind inference (target: pipeline ≥ 90 % of
the engine's raw images/s for the same model). Whether it can depends on the ratio of decode cost
to inference cost on the clinic PC, so the table shows all of them, measured in one run:

- raw engine: preprocessed inputs already in memory, the same AsyncRunner (THROUGHPUT hint, the
  plugin's optimal number of requests, batch 1) the screener uses;
- decode only: the screener's worker pool decoding + preprocessing every file, no inference;
- pipeline: ``desktop.screening.run.screen`` over the folder (discovery, decode, inference, thumbnails,
  SQLite commits), for each ``--workers`` value;
- the same two with ``--fast-decode`` (JPEG 2000 / baseline JPEG decoded at a reduced resolution,
  long side >= 2x the input), and what that costs in scores: the largest |Δprobability| per
  image and the share of images and studies whose verdict (at the card's operating points) is the
  same as with the exact decode, over the whole folder;
- per transfer syntax, the milliseconds one process spends on a file (decode + preprocess +
  thumbnail source, as a screening worker does), exact and fast;
- with ``--cluster-scaling``: the same whole run on a local Dask cluster (``mura-screen
  --cluster local:N``) of 1 and then 2 worker processes, each worker's engine built before the
  clock starts, and the speed-up from 1 to 2 (needs the ``cluster`` extra).

Data: ``--n`` phantom DICOMs (models/synth's generator) of 1–2k px in mixed transfer
syntaxes (explicit/implicit little endian, deflate, RLE, JPEG-LS, JPEG 2000 lossless and lossy,
8-bit baseline JPEG),
grouped into studies of 1–4 images, written to ``--data DIR`` (reused when it already holds
them) or a temporary folder. A few distinct renders are encoded once per syntax and written
under new UIDs, since rendering and pydicom's pure-Python RLE encoder are slow.
Model: ``--model BUNDLE``, or a one-epoch custom_cnn at ``--input-size`` compressed to INT8
(needs the dev venv: torch, nncf). Only timings mean anything here, not the scores.

    .venv/bin/python bench/screen.py                     # 500 files, 224 px INT8 model
    .venv/bin/python bench/screen.py --n 60 --bases 4    # quick look
    .venv/bin/python bench/screen.py --model runs/x/bundle --data /tmp/screen-bench --workers 0,1,2
    .venv/bin/python bench/screen.py --n 200 --no-fast --cluster-scaling   # + Dask local:1 vs local:2
"""

from __future__ import annotations

import sys
from pathlib import Path

_REPO = Path(__file__).resolve().parents[1]
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _REPO / "bench"]
sys.path.insert(0, str(_REPO))

import argparse  # noqa: E402
import io  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

SYNTAXES = {  # name: (UID, encoding plugin or None for native)
    "explicit LE": ("1.2.840.10008.1.2.1", None),
    "implicit LE": ("1.2.840.10008.1.2", None),
    "deflate": ("1.2.840.10008.1.2.1.99", None),
    "RLE": ("1.2.840.10008.1.2.5", "pydicom"),
    "JPEG-LS lossless": ("1.2.840.10008.1.2.4.80", "pyjpegls"),
    "JPEG 2000 lossless": ("1.2.840.10008.1.2.4.90", "pylibjpeg"),
    "JPEG 2000": ("1.2.840.10008.1.2.4.91", "pylibjpeg"),
    "JPEG baseline": ("1.2.840.10008.1.2.4.50", "pillow"),  # 8-bit, quality 90, encoded here
}
PARTS = ("elbow", "finger", "forearm", "hand", "humerus", "shoulder", "wrist")


def _encode(base: np.ndarray, name: str, seed: int):
    """One base image as a dataset in one transfer syntax (UIDs filled in later), or None."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import PYDICOM_IMPLEMENTATION_UID

    uid, plugin = SYNTAXES[name]
    raw = np.rint(base * 4095).astype(np.uint16)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.1"
    ds.PatientName, ds.PatientID = "BENCH^PHANTOM", f"B{seed:05d}"
    ds.Modality, ds.StudyDescription = "DX", "bench phantom"
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.set_pixel_data(raw, "MONOCHROME2", 12, generate_instance_uid=False)
    ds.WindowCenter, ds.WindowWidth = "2048", "4096"
    try:
        if name == "JPEG baseline":  # pydicom has no JPEG encoder: Pillow's, encapsulated
            from PIL import Image
            from pydicom.encaps import encapsulate

            u8 = np.rint(base * 255).astype(np.uint8)
            ds.set_pixel_data(u8, "MONOCHROME2", 8, generate_instance_uid=False)
            ds.WindowCenter, ds.WindowWidth = "128", "256"
            buf = io.BytesIO()
            Image.fromarray(u8).save(buf, format="JPEG", quality=90)
            ds.file_meta.TransferSyntaxUID = uid
            ds.PixelData = encapsulate([buf.getvalue()])
            ds["PixelData"].VR = "OB"
        elif plugin is None:
            ds.file_meta.TransferSyntaxUID = uid
        else:
            kw = {"j2k_cr": [20]} if name == "JPEG 2000" else {}
            ds.compress(uid, raw, encoding_plugin=plugin, generate_instance_uid=False, **kw)
    except Exception as e:  # noqa: BLE001 - an encoder missing here only narrows the mix
        print(f"  (skipping {name}: {type(e).__name__}: {e})", file=sys.stderr)
        return None
    return ds


def make_data(root: Path, n: int, bases: int, size: tuple[int, int], seed: int = 0) -> dict[str, int]:
    """Write ``n`` DICOM files under ``root`` (see the module docstring); returns files per syntax."""
    from pydicom.uid import generate_uid

    from models.synth import render_radiograph

    rng = np.random.default_rng(seed)
    encoded: list[tuple[str, object]] = []
    t0 = time.perf_counter()
    for b in range(bases):
        h, w = (int(x) for x in rng.integers(size[0], size[1] + 1, size=2))
        img = render_radiograph(rng, PARTS[b % len(PARTS)], bool(b % 2), (h, w))
        for name in SYNTAXES:
            ds = _encode(img, name, b)
            if ds is not None:
                encoded.append((name, ds))
    print(f"  encoded {len(encoded)} base files in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
    counts: dict[str, int] = {}
    i = 0
    study = 0
    while i < n:
        study += 1
        study_uid = generate_uid()
        for k in range(min(int(rng.integers(1, 5)), n - i)):
            name, ds = encoded[i % len(encoded)]  # every syntax, evenly
            ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, generate_uid()
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
            ds.InstanceNumber = k + 1
            buf = io.BytesIO()
            ds.save_as(buf, enforce_file_format=True)
            p = root / f"study_{study:04d}" / f"im{k + 1}.dcm"
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(buf.getvalue())
            counts[name] = counts.get(name, 0) + 1
            i += 1
    return counts


def make_bundle(work: Path, input_size: int) -> Path:
    """A one-epoch custom_cnn compressed to INT8 (timings only: its scores mean nothing)."""
    from compress.pipeline import CompressConfig, run
    from models.synth import write_mura
    from trainer.train import TrainConfig, train

    write_mura(work / "mura", seed=1, n_patients=24, size_range=(96, 128))  # both classes in val
    train(TrainConfig(data=f"mura:{work / 'mura'}", out=str(work / "train"), arch="custom_cnn",
                      input_size=input_size, epochs=1, batch_size=16, augment=False))
    out = work / "bundle"
    run(CompressConfig(checkpoint=str(work / "train" / "checkpoint_best.pt"), out=str(out),
                       calib_data=f"mura:{work / 'mura'}", val_data=[f"mura:{work / 'mura'}"],
                       budget=1.0, calib_size=32, accuracy_control=False, latency_iters=3))
    return out


def raw_engine_rate(engine, files: list[str], n: int) -> tuple[float, int]:
    """(images/s, requests) of the AsyncRunner alone, cycling through inputs preprocessed before."""
    from desktop.screening.prepare import prepare_image

    preps = [prepare_image(f, engine.cfg) for f in files[:32]]
    preps = [p for p in preps if p.x is not None]
    runner = engine.async_runner()
    for p in preps[: runner.n_requests * 2]:  # warm-up
        runner.submit(p.x, p.placement, 0)
    runner.wait()
    t0 = time.perf_counter()
    for i in range(n):
        p = preps[i % len(preps)]
        runner.submit(p.x, p.placement, i)
        if i % 64 == 0:
            runner.completed()
    runner.wait()
    return n / (time.perf_counter() - t0), runner.n_requests


def decode_rate(files: list[str], cfg, workers: int, fast: bool = False) -> float:
    """Images/s of decoding + preprocessing alone, with the screener's pool (0: this process)."""
    from desktop.screening.prepare import REPORT_THUMB_SIZE as THUMB_SIZE
    from desktop.screening.prepare import prepare_image
    from desktop.screening.workers import Workers

    pool = Workers(workers)
    try:
        pool.submit(prepare_image, files[0], cfg).result()  # start the workers before timing
        if workers > 1:
            list(f.result() for f in [pool.submit(prepare_image, files[0], cfg) for _ in range(workers)])
        t0 = time.perf_counter()
        futs = [pool.submit(prepare_image, f, cfg, THUMB_SIZE, fast) for f in files]
        bad = sum(f.result().error is not None for f in futs)
        dt = time.perf_counter() - t0
    finally:
        pool.close()
    if bad:
        print(f"  warning: {bad} files failed to decode", file=sys.stderr)
    return len(files) / dt


def pipeline_rate(src: Path, engine, workers: int, fast: bool = False):
    """(images/s of the whole screen() run, seconds of it spent in discovery, the ScreenResult)."""
    from desktop.screening.discovery import discover
    from desktop.screening.run import screen

    t0 = time.perf_counter()
    discover(src)
    t_disc = time.perf_counter() - t0
    res = screen(src, engine, workers=workers, fast_decode=fast)
    return res.n_scored_images / res.seconds, t_disc, res


def cluster_rate(src: Path, engine, model: Path, n_workers: int, batch_images: int = 8,
                 runs: int = 2) -> float:
    """Images/s of the whole run on a local Dask cluster of ``n_workers`` processes, the best of
    ``runs`` (the first warms each worker's inference requests up); the cluster's start and the
    workers' engine builds are not counted: an archive run pays them once."""
    from desktop.screening.cluster import (
        ClusterSpec,
        cluster_screen,
        local_inference_threads,
        open_cluster,
    )
    from desktop.screening.cluster_tasks import EngineSpec

    spec = EngineSpec(str(Path(model).resolve()), engine.bundle.model_id,
                      num_threads=local_inference_threads(n_workers))
    with open_cluster(ClusterSpec(local=n_workers)) as client:
        screen = cluster_screen(client, spec, batch_images)
        results = [screen(src, engine) for _ in range(runs)]  # in-memory states: all re-scored
    return max(r.n_scored_images / r.seconds for r in results)


def _cluster_rows(src: Path, engine, model: Path, raw: float) -> str:
    """The Dask rows, local:1 and local:2; returns the line that says the scaling between them."""
    rates = {}
    for n in (1, 2):
        rates[n] = cluster_rate(src, engine, model, n)
        print(f"| Dask local cluster (--cluster local:{n}, whole run) | {n} {'process' if n == 1 else 'processes'} | "
              f"{rates[n]:.1f} | {100 * rates[n] / raw:.0f} % |", flush=True)
    return (f"Dask local cluster, 1 -> 2 worker processes: {rates[2] / rates[1]:.2f}x the images/s "
            f"on {os.cpu_count()} CPUs\n")


def agreement(exact, fast, thresholds: dict[str, float]) -> tuple[float, float, float, int, str]:
    """(max |Δp| per image, image verdict agreement, study verdict agreement, images compared,
    the exact run's image verdicts counted) of two ScreenResults of the same folder. The counts
    say whether agreement means anything: a model that calls every image the same agrees
    trivially."""
    from collections import Counter

    from models.engine import verdict_for

    pe = {p: v for r in exact.results for p, v in r.image_probs}
    pf = {p: v for r in fast.results for p, v in r.image_probs}
    common = sorted(pe.keys() & pf.keys())
    dmax = max((abs(pe[p] - pf[p]) for p in common), default=float("nan"))
    img = sum(verdict_for(pe[p], thresholds) == verdict_for(pf[p], thresholds) for p in common)
    se = {r.study.key: r.verdict for r in exact.results}
    sf = {r.study.key: r.verdict for r in fast.results}
    keys = se.keys() & sf.keys()
    study = sum(se[k] == sf[k] for k in keys)
    counts = Counter(verdict_for(pe[p], thresholds) for p in common)
    spread = ", ".join(f"{k} {n}" for k, n in sorted(counts.items()))
    if common:
        ps = np.array([pe[p] for p in common])
        spread += f"; p from {ps.min():.3f} to {ps.max():.3f}"
    return dmax, img / max(len(common), 1), study / max(len(keys), 1), len(common), spread


def per_syntax_ms(files: list[str], cfg, per: int = 3) -> dict[str, tuple[float, float]]:
    """{syntax: (exact ms, fast ms)} of prepare_image in this process, best of ``per`` files."""
    import pydicom
    from pydicom.uid import UID

    from desktop.screening.prepare import prepare_image

    by: dict[str, list[str]] = {}
    for f in files:
        ts = UID(str(pydicom.dcmread(f, stop_before_pixels=True).file_meta.TransferSyntaxUID))
        name = next((k for k, (uid, _) in SYNTAXES.items() if uid == ts), ts.name)
        if len(by.setdefault(name, [])) < per:
            by[name].append(f)
    out = {}
    for name, fs in by.items():
        ms = []
        for fast in (False, True):
            best = float("inf")
            for f in fs:
                t0 = time.perf_counter()
                prepare_image(f, cfg, fast_decode=fast)
                best = min(best, time.perf_counter() - t0)
            ms.append(1000 * best)
        out[name] = (ms[0], ms[1])
    return out


def _inputs(a: argparse.Namespace, work: Path, lo: int, hi: int) -> tuple[Path, list[str], Path]:
    """The DICOM files (made if the folder lacks them) and the bundle (made if absent)."""
    src = Path(a.data) if a.data else work / "data"
    files = sorted(str(p) for p in src.rglob("*.dcm")) if src.exists() else []
    if len(files) < a.n:
        print(f"writing {a.n} phantom DICOMs to {src} …", file=sys.stderr)
        counts = make_data(src, a.n, a.bases, (lo, hi))
        print("  per syntax: " + ", ".join(f"{k} {v}" for k, v in counts.items()), file=sys.stderr)
        files = sorted(str(p) for p in src.rglob("*.dcm"))
    if a.model is None or not Path(a.model).exists():
        print(f"making a {a.input_size} px INT8 custom_cnn bundle …", file=sys.stderr)
        model = make_bundle(work / "model", a.input_size)
        if a.model is not None:  # kept for the next run
            shutil.copytree(model, a.model)
            model = Path(a.model)
    else:
        model = Path(a.model)
    return src, files, model


def _fast_rows(src: Path, files: list[str], engine, workers: list[int], raw: float, exact: dict) -> None:
    """The --fast-decode rows and its agreement with the exact decode."""
    fast_dec, fast_res = {}, {}
    for w in workers:
        fast_dec[w] = decode_rate(files, engine.cfg, w, fast=True)
        print(f"| decode + preprocess only, --fast-decode | {w} | {fast_dec[w]:.1f} | "
              f"{100 * fast_dec[w] / raw:.0f} % |", flush=True)
    for w in workers:
        r, _, fast_res[w] = pipeline_rate(src, engine, w, fast=True)
        bound = min(raw, fast_dec[w])
        print(f"| pipeline (whole run), --fast-decode | {w} | {r:.1f} | {100 * r / raw:.0f} % "
              f"(= {100 * r / bound:.0f} % of min(raw, decode)) |", flush=True)
    w = workers[-1]
    dmax, img, study, n_cmp, spread = agreement(exact[w], fast_res[w], engine.thresholds)
    print(f"\n--fast-decode vs exact decode on these {n_cmp} images ({w} workers): max "
          f"|Δprobability| {dmax:.4f}; same verdict at the card's operating points for "
          f"{100 * img:.1f} % of images and {100 * study:.1f} % of studies "
          f"(thresholds {engine.thresholds}; exact image verdicts: {spread})")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=500, help="DICOM files (default 500)")
    ap.add_argument("--bases", type=int, default=8, help="distinct renders, each encoded once per syntax")
    ap.add_argument("--size", default="1000,2000", help="min,max side in px (default 1000,2000)")
    ap.add_argument("--data", default=None, help="folder for the files (reused if it has them)")
    ap.add_argument("--model", default=None,
                    help="bundle to use; made there if absent (default: a throw-away one)")
    ap.add_argument("--input-size", type=int, default=224, help="input size of the made bundle")
    ap.add_argument("--workers", default=None,
                    help="comma list of decode-process counts to run the pipeline with "
                    "(default: 0 and one per core)")
    ap.add_argument("--no-fast", action="store_true", help="skip the --fast-decode rows")
    ap.add_argument("--cluster-scaling", action="store_true",
                    help="also time the run on a local Dask cluster of 1 and 2 worker processes")
    a = ap.parse_args(argv)

    from desktop.screening.workers import default_workers
    from models.engine import Engine
    from models.ovruntime import cpu_description

    lo, hi = (int(x) for x in a.size.split(","))
    workers = ([int(x) for x in a.workers.split(",")] if a.workers
               else sorted({0, default_workers()}))
    with tempfile.TemporaryDirectory(prefix="bench-screen-") as tmp:
        work = Path(tmp)
        src, files, model = _inputs(a, work, lo, hi)
        engine = Engine(model, performance_hint="THROUGHPUT")
        n = len(files)
        print(f"measuring on {n} files, {os.cpu_count()} CPUs …", file=sys.stderr)
        raw, n_req = raw_engine_rate(engine, files, max(n, 200))
        # rows are printed as they are measured: a long run that is stopped still reports
        print(f"\n{n} DICOM files, {lo}–{hi} px, model {engine.bundle.model_id} "
              f"({engine.cfg.input_size} px, {engine.artifact}, {n_req} async requests, "
              f"THROUGHPUT), {os.cpu_count()} CPUs\nCPU: {cpu_description()}\n")
        print("| measure | workers | images/s | % of raw engine |")
        print("| --- | --- | --- | --- |")
        print(f"| raw engine (inputs in memory) | – | {raw:.1f} | 100 % |", flush=True)
        dec = {}
        for w in workers:
            dec[w] = decode_rate(files, engine.cfg, w)
            print(f"| decode + preprocess only | {w} | {dec[w]:.1f} | {100 * dec[w] / raw:.0f} % |",
                  flush=True)
        exact = {}
        for w in workers:
            r, t_disc, exact[w] = pipeline_rate(src, engine, w)
            bound = min(raw, dec[w])
            print(f"| pipeline (whole run) | {w} | {r:.1f} | {100 * r / raw:.0f} % "
                  f"(= {100 * r / bound:.0f} % of min(raw, decode); discovery {t_disc:.1f}s) |",
                  flush=True)
        scaling = _cluster_rows(src, engine, model, raw) if a.cluster_scaling else ""
        if not a.no_fast:
            _fast_rows(src, files, engine, workers, raw, exact)
        print(f"\n{scaling}" if scaling else "", end="")
        if a.no_fast:
            return 0
        print("\n| transfer syntax | ms per file, exact | ms per file, --fast-decode |")
        print("| --- | --- | --- |")
        for name, (ms_e, ms_f) in per_syntax_ms(files, engine.cfg).items():
            print(f"| {name} | {ms_e:.0f} | {ms_f:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
