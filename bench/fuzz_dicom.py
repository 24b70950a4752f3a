"""Fuzz campaign: mutated real DICOMs through the screener's decode door, in capped workers.

Seeds: every file of ``../shared/data/dicom`` and ``samples/dicom`` (and phantom studies the script
draws itself). Mutations, drawn from a fixed seed: byte flips, truncations, corrupted element
lengths, and edited header values (huge Rows/Columns, odd Bits Allocated, Samples per Pixel 0,
bad photometric, thousands of frames). Each mutant is decoded by
:func:`desktop.screening.support.decode_probe` in a worker process under the screener's memory ceiling
(:data:`desktop.screening.workers.WORKER_MEMORY_BYTES`) with a per-file timeout. The table counts: ok,
typed error by class, untyped (a bug), timeout, crash (the worker died), and the workers' peak RSS.
Target: 0 untyped, 0 crashes, 0 timeouts.

    python bench/fuzz_dicom.py --count 10000 --seed 1 [--workers 2] [--timeout 60]

Exit status 1 when the target is missed. CI runs a bounded count (tests/test_fuzz.py, slow).
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from desktop.screening.support import decode_probe, silence_library_warnings  # noqa: E402
from desktop.screening.workers import WORKER_MEMORY_BYTES, Workers  # noqa: E402

EDITS = (("Rows", 65535), ("Columns", 60000), ("BitsAllocated", 256), ("BitsAllocated", 12),
         ("SamplesPerPixel", 0), ("SamplesPerPixel", 3), ("PhotometricInterpretation", "HSV"),
         ("PhotometricInterpretation", ""), ("NumberOfFrames", 5000), ("PixelRepresentation", 1),
         ("BitsStored", 40), ("HighBit", 0), ("WindowWidth", "0.0001"), ("RescaleSlope", "1e300"))


def seeds(data: Path, tmp: Path) -> list[bytes]:
    files = sorted((data / "dicom").glob("*.dcm")) + sorted((REPO / "samples" / "dicom").glob("*.dcm"))
    try:
        from models.synth import write_dicom_studies

        write_dicom_studies(tmp / "phantom", seed=5, n_studies=4)
        files += sorted(p for p in (tmp / "phantom").rglob("*") if p.is_file() and p.suffix != ".csv"
                        and not p.name.startswith("."))
    except ImportError:  # the runtime-only install has no phantom generator: real seeds only
        pass
    return [p.read_bytes() for p in files]


def _edited(data: bytes, rng: random.Random) -> bytes:
    import io

    import pydicom

    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=True)
        for _ in range(rng.randint(1, 3)):
            key, value = rng.choice(EDITS)
            setattr(ds, key, value)
        buf = io.BytesIO()
        ds.save_as(buf)
        return buf.getvalue()
    except Exception:  # noqa: BLE001 - a seed pydicom cannot rewrite: flip bytes instead
        return _flipped(data, rng)


def _flipped(data: bytes, rng: random.Random) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 16)):
        b[rng.randrange(132, len(b))] = rng.randrange(256)
    return bytes(b)


def mutate(data: bytes, rng: random.Random) -> tuple[str, bytes]:
    kind = rng.choice(("flip", "truncate", "length", "edit"))
    if kind == "truncate":
        return kind, data[: rng.randint(132, max(133, len(data) - 1))]
    if kind == "length":  # a 16- or 32-bit length field of some element near a VR, made absurd
        b = bytearray(data)
        head = min(len(b) - 8, 4096)
        pos = rng.randrange(132, max(133, head))
        b[pos : pos + 4] = rng.choice((b"\xff\xff\xff\x7f", b"\xf0\xff\x00\x00", b"\x00\x00\x00\x00"))
        return kind, bytes(b)
    if kind == "edit":
        return kind, _edited(data, rng)
    return kind, _flipped(data, rng)


def run(count: int, seed: int, workers: int, timeout: float, data: Path, fast: bool = False) -> dict:
    """Decode ``count`` mutants; returns the outcome counts and the workers' peak RSS (MB)."""
    rng = random.Random(seed)
    counts: Counter = Counter()
    untyped: list[str] = []
    peak = 0.0
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        pool_seeds = seeds(data, tmp)
        paths = []
        for k in range(count):
            kind, blob = mutate(rng.choice(pool_seeds), rng)
            p = tmp / f"m{k:06d}_{kind}.dcm"
            p.write_bytes(blob)
            paths.append(str(p))
        pool = Workers(workers)
        try:
            for p in paths:
                try:
                    row = pool.submit(decode_probe, p, fast).result(timeout=timeout)
                except TimeoutError:
                    pool.kill()
                    counts["timeout"] += 1
                    continue
                except BrokenProcessPool:
                    pool.restart()
                    counts["crash"] += 1
                    continue
                peak = max(peak, float(row["rss_mb"]))
                counts["ok" if row["status"] == "ok" else f"{row['status']}:{row['error'].split(':')[0]}"] += 1
                if row["status"] == "untyped":
                    untyped.append(f"{Path(p).name}: {row['error']}")
        finally:
            pool.close()
    return {"counts": counts, "untyped": untyped, "peak_rss_mb": peak, "n_seeds": len(pool_seeds)}


def table(res: dict, count: int, seconds: float) -> str:
    c = res["counts"]
    lines = ["| outcome | mutants |", "| --- | --- |"]
    lines += [f"| {k} | {v} |" for k, v in sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))]
    bad = sum(v for k, v in c.items() if k.startswith("untyped") or k in ("timeout", "crash"))
    lines.append(f"\n{count} mutants of {res['n_seeds']} seeds in {seconds:.0f} s; untyped/timeout/crash: {bad}; "
                 f"peak worker RSS {res['peak_rss_mb']:.0f} MB (ceiling {WORKER_MEMORY_BYTES / 2**20:.0f} MB)")
    return "\n".join(lines + [f"  untyped: {u}" for u in res["untyped"][:20]])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds per file before it counts as a hang")
    ap.add_argument("--fast-decode", action="store_true", help="through the --fast-decode path")
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data"))
    a = ap.parse_args(argv)
    silence_library_warnings()  # pydicom's remarks on the mutants are not the campaign's output
    t0 = time.time()
    res = run(a.count, a.seed, a.workers, a.timeout, Path(a.data), a.fast_decode)
    print(table(res, a.count, time.time() - t0))
    bad = sum(v for k, v in res["counts"].items() if k.startswith("untyped") or k in ("timeout", "crash"))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
