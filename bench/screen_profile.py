"""Where a screening run's CPU goes, per file: the work timed alone against each part of the screener.

Why (issue 18 §1): ``bench/screen_limit.py`` says how far the screener is from the CPU-bound
limit; this says where the difference is spent, so the next change aims at the right part. For
one folder (default: the first ``--n`` FracAtlas images), after a warm-up run:

- **work alone**: decode, preprocess and inference CPU per file, each timed alone
  (``bench/screen_limit.stage_cpu``, the decoding mura-screen uses);
- **decode workers**: their CPU per file (the fork server's children, counted once it is stopped),
  and of it the time spent inside ``prepare_image`` (timed in the workers themselves), the fork
  server's own start (its imports, timed alone: once per run, so dear for short runs) and the rest:
  the process pool's task handling, the result's pickling, the slot copy, the workers' forks;
- **the screener's process**, split by thread: the main thread (scheduling, report pictures,
  SQLite, discovery, the report), OpenVINO's threads (threads Python did not start: inference)
  and Python's other threads (the process pool's queue threads);
- the total against the work alone: the overhead the limit does not include.

Medians of ``--rounds`` runs. Linux/macOS (per-thread CPU through psutil).

    .venv/bin/python bench/screen_profile.py --n 1000
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

_REPO = Path(__file__).resolve().parents[1]
if str(_REPO) not in sys.path:
    sys.path.insert(0, str(_REPO))


def timed_prepare(*args):
    """``prepare_image`` with its own thread CPU time attached (runs in a decode worker)."""
    from desktop.screening import prepare

    t0 = time.thread_time()
    pr = prepare.prepare_image(*args)
    pr.__dict__["cpu_s"] = time.thread_time() - t0
    return pr


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def server_start_cpu() -> float:
    """CPU seconds of starting the decode workers' fork server alone (its imports): every run
    pays it once, whatever its length."""
    from bench.screen_limit import _stop_fork_server
    from desktop.screening.workers import prestart

    kids0 = _children_cpu()
    prestart()
    _stop_fork_server()
    return _children_cpu() - kids0


def one_run(folder: Path, engine, out: Path) -> dict[str, float]:
    """CPU seconds of one screening run by part (see the module docstring)."""
    import psutil

    from bench.screen_limit import _stop_fork_server, decoding
    from bench.screen_profile import timed_prepare  # by module name: the workers unpickle it so
    from desktop.screening import pipeline
    from desktop.screening.outputs import screen_to_folder

    inside: list[float] = []
    release = pipeline._Scheduler.release

    def counted(self, i, k, pr=None):
        if pr is not None:
            inside.append(pr.__dict__.get("cpu_s", 0.0))
        return release(self, i, k, pr)

    me = psutil.Process()
    main_id = threading.get_native_id()
    threads0 = {t.id: t.user_time + t.system_time for t in me.threads()}
    own0, kids0 = me.cpu_times(), _children_cpu()
    pipeline.prepare_image, pipeline._Scheduler.release = timed_prepare, counted
    try:
        t0 = time.perf_counter()
        screen_to_folder(folder, engine, out, restart=True, fast_decode=decoding(engine)[1])
        wall = time.perf_counter() - t0
        threads1 = {t.id: t.user_time + t.system_time for t in me.threads()}
        own1 = me.cpu_times()
    finally:
        from desktop.screening import prepare

        pipeline.prepare_image, pipeline._Scheduler.release = prepare.prepare_image, release
    _stop_fork_server()  # its children (the workers) are counted once it is reaped
    python_ids = {t.native_id for t in threading.enumerate()}
    d = {tid: v - threads0.get(tid, 0.0) for tid, v in threads1.items()}
    process = (own1.user + own1.system) - (own0.user + own0.system)
    main = d.pop(main_id, 0.0)
    native = sum(v for tid, v in d.items() if tid not in python_ids)  # OpenVINO's thread pool
    return {"wall": wall, "workers": _children_cpu() - kids0, "inside": sum(inside), "main": main,
            "openvino": native, "python threads": process - main - native, "server": server_start_cpu()}


def table(alone: tuple[float, float, float], runs: list[dict[str, float]], n: int) -> str:
    def med(key: str) -> float:
        return 1000 * statistics.median(r[key] for r in runs) / n

    dec, pre, inf = (1000 * x for x in alone)
    work = dec + pre + inf
    total = med("workers") + med("main") + med("openvino") + med("python threads")
    rows = [("work alone: decode + preprocess", dec + pre, ""), ("work alone: inference", inf, ""),
            ("decode workers, all", med("workers"), f"{med('workers') - dec - pre:+.2f} vs alone"),
            ("  of it inside prepare_image", med("inside"), f"{med('inside') - dec - pre:+.2f} vs alone"),
            ("  the fork server's start (imports; once per run)", med("server"), ""),
            ("  task handling, pickling, slots, forks", med("workers") - med("inside") - med("server"), ""),
            ("OpenVINO threads", med("openvino"), f"{med('openvino') - inf:+.2f} vs alone"),
            ("screener main thread", med("main"), "all overhead"),
            ("screener's other Python threads (pool queues)", med("python threads"), "all overhead"),
            ("total", total, f"overhead {100 * (1 - work / total):.0f} % of the CPU")]
    lines = ["| part | ms CPU per file | |", "| --- | --- | --- |"]
    lines += [f"| {name} | {v:.2f} | {note} |" for name, v, note in rows]
    wall = statistics.median(r["wall"] for r in runs)
    lines.append(f"\n{n} files in {wall:.2f} s ({n / wall:.0f} files/s); cores busy "
                 f"{100 * total * n / 1000 / wall / _cores():.0f} %")
    return "\n".join(lines)


def _cores() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--folder", default=str(_REPO.parent / "shared" / "data" / "fracatlas" / "images"))
    ap.add_argument("--n", type=int, default=1000, help="files (the first by name; default 1000)")
    ap.add_argument("--rounds", type=int, default=3, help="measured runs (median; default 3)")
    ap.add_argument("--model", default=None, help="bundle (default: the default bundle)")
    a = ap.parse_args(argv)

    from desktop.launch import runtime_env

    runtime_env()
    from bench.screen_limit import decoding_name, folder_files, isa, stage_cpu
    from models.engine import Engine
    from models.reference import require_default_bundle

    if not Path(a.folder).is_dir():
        raise SystemExit(f"{a.folder}: no such folder (is ../shared/data there? else give --folder)")
    engine = Engine(a.model or require_default_bundle().path, performance_hint="THROUGHPUT")
    with tempfile.TemporaryDirectory(prefix="screen-profile-") as t:
        tmp = Path(t)
        folder = folder_files(Path(a.folder), a.n, tmp, "src")
        files = sorted(str(p) for p in folder.iterdir())
        dec, pre, inf, _ = stage_cpu(files, engine)
        one_run(folder, engine, tmp / "out")  # warm-up
        runs = [one_run(folder, engine, tmp / "out") for _ in range(a.rounds)]
    print(f"\n{isa()}\nmodel {engine.bundle.model_id}; {len(files)} files of {a.folder}; decoding: "
          f"{decoding_name(engine)}; medians of {a.rounds} runs\n")
    print(table((dec, pre, inf), runs, len(files)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
