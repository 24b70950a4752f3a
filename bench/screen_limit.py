"""Screening at the CPU's limit: a real folder's images/s beside what the CPU allows, as a Markdown table.

Why (issue 18 §1): the clinic waits for a worklist, and the screener should spend the cores on the
work itself (decode, preprocess, inference), not on its own bookkeeping. For each folder, in the
same run:

- **CPU per image**, each stage timed alone in this process with ``time.process_time`` (all
  threads): decoding (``models.imageio.decode_for_model``), preprocessing (scope check,
  ``to_unit``, ``standardize``) and inference (the screener's AsyncRunner, THROUGHPUT hint, CPU
  seconds over a stream of inputs);
- **the CPU-bound limit**: cores ÷ (decode + preprocess + inference CPU seconds per image);
  and the same **with the cores busy**: each stage timed again while another process decodes the
  folder on the other core(s), as the screener's own workers do (shared caches, memory bandwidth
  and clock make the same work dearer then; the first limit cannot show that);
- **the screener**: ``desktop.screening.outputs.screen_to_folder`` over the folder with an output
  folder (state database, worklist, failures, report: everything a clinic run does) and the
  default decode workers: wall images/s, its ratio to the limit (target ≥ 80 %), and the share of
  its CPU time (parent + workers) spent beyond the per-image work (overhead: state, pictures,
  report, IPC; target ≤ 15 %);
- **start-up**: a run of the first 8 files alone (starting the decode workers' fork server, or
  spawning them, with their imports; the report's fixed part), and the rate and overhead once
  started: the whole run less that one. Every run starts its workers afresh, as a new
  ``mura-screen`` process does.

Rounds are interleaved (each round measures every folder's stages and run once); the table shows
medians. Folders: ``--fracatlas`` (real JPEG radiographs, ../shared/data/fracatlas/images, the
first ``--n`` by name), ``--dicom`` (a folder of DICOM files, e.g. the phantom syntax mix that
``bench/screen.py --data DIR`` writes), or any ``--folder``. Model: ``--model`` (default: the
default bundle, the shipped reference model). Decoding: as ``mura-screen`` decodes (the codecs
the model's card validated at reduced resolution; ``--exact-decode``: every file in full), the
same in the limit and in the run.

    .venv/bin/python bench/screen_limit.py --n 200 --rounds 3
    .venv/bin/python bench/screen.py --n 200 --data /tmp/mix --no-fast   # writes the DICOM mix
    .venv/bin/python bench/screen_limit.py --dicom /tmp/mix --n 200
"""

from __future__ import annotations

import sys
from pathlib import Path

_REPO = Path(__file__).resolve().parents[1]
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _REPO / "bench"]
sys.path.insert(0, str(_REPO))

import argparse  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass  # noqa: E402

START_FILES = 8  # the small run whose cost is counted as start-up
ISA_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "avx512_bf16", "amx_bf16")


def isa() -> str:
    """The CPU model and the ISA extensions INT8/BF16 speed depends on."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown CPU"
    model = next((ln.split(":", 1)[1].strip() for ln in info.splitlines() if ln.startswith("model name")), "?")
    flags = set(next((ln.split(":", 1)[1].split() for ln in info.splitlines() if ln.startswith("flags")), []))
    return f"{model}; {os.cpu_count()} cores; " + (" ".join(f for f in ISA_FLAGS if f in flags) or "no AVX2")


@dataclass
class Round:
    decode: float  # CPU s per image
    preprocess: float
    inference: float
    run_wall: float  # s, the whole screen_to_folder
    run_cpu: float  # CPU s, parent + workers
    n: int
    start_wall: float = 0.0  # s, a run of START_FILES files: start-up (workers, report) + those files
    start_cpu: float = 0.0
    busy_per_image: float = 0.0  # CPU s per image, the same stages timed beside a second decode loop

    @property
    def per_image(self) -> float:
        return self.decode + self.preprocess + self.inference

    @property
    def limit(self) -> float:
        return (os.cpu_count() or 1) / self.per_image

    @property
    def busy_limit(self) -> float:
        """The limit with each stage timed while another process decodes on the other core(s):
        what the work costs when the screener keeps every core busy (caches, memory bandwidth,
        clock shared), which the limit timed alone cannot show."""
        return (os.cpu_count() or 1) / self.busy_per_image

    @property
    def rate(self) -> float:
        return self.n / self.run_wall

    @property
    def overhead(self) -> float:
        return max(0.0, 1 - self.n * self.per_image / self.run_cpu)

    @property
    def steady_rate(self) -> float:
        """Files/s once started: the whole run less a START_FILES-file run (worker processes
        spawning and importing, the report's fixed part), over the files beyond those."""
        return (self.n - START_FILES) / max(1e-9, self.run_wall - self.start_wall)

    @property
    def steady_overhead(self) -> float:
        return max(0.0, 1 - (self.n - START_FILES) * self.per_image / max(1e-9, self.run_cpu - self.start_cpu))


def stage_cpu(files: list[str], engine) -> tuple[float, float, float, int]:
    """(decode, preprocess, inference) CPU seconds per file, each stage alone, and the number
    of images that reached the model. Inference is spread over all files: a file refused before
    the model (out of scope, not a radiograph) costs its decode and nothing more, in the
    screener as here."""
    from models.imageio import decode_for_model
    from models.preprocess import standardize, to_unit
    from models.scope import image_refusal

    cfg, dec, pre, inputs = engine.cfg, 0.0, 0.0, []
    min_side, codecs = decoding(engine)
    for f in files:
        t0 = time.process_time()
        pixels, colour = decode_for_model(f, min_side=min_side, codecs=codecs)
        t1 = time.process_time()
        if image_refusal(pixels, colour) is None:
            unit, placement = to_unit(pixels, cfg)
            inputs.append((standardize(unit, cfg), placement))
        t2 = time.process_time()
        dec, pre = dec + t1 - t0, pre + t2 - t1
    runner = engine.async_runner()
    for x, pl in inputs[: 2 * runner.n_requests]:  # warm-up: compiled kernels, thread pool
        runner.submit(x, pl, 0)
    runner.wait()
    t0 = time.process_time()
    for i, (x, pl) in enumerate(inputs):
        runner.submit(x, pl, i)
        if i % 32 == 0:
            runner.completed()
    runner.wait()
    inf = (time.process_time() - t0) / len(files)
    return dec / len(files), pre / len(files), inf, len(inputs)


#: How the bench decodes: "default" as mura-screen does (the codecs the card validated decoded
#: reduced), or "exact" (every file in full, --exact-decode). Set by main.
DECODE = "default"


def decoding(engine) -> tuple[int | None, frozenset[str]]:
    """(min_side, codecs) of the run's decoding: what the screener's workers pass to
    ``decode_for_model``, so the limit and the screener time the same work."""
    from desktop.screening.decoding import choose_fast_decode
    from desktop.screening.prepare import fast_decode_min_side
    from desktop.screening.state import decode_codecs

    codecs = decode_codecs(choose_fast_decode(engine.bundle.card, exact=DECODE == "exact"))
    return (fast_decode_min_side(engine.cfg) if codecs else None), codecs


def decoding_name(engine) -> str:
    from models.reduction import codec_names

    codecs = decoding(engine)[1]
    return f"{codec_names(codecs)} reduced, the rest exact" if codecs else "exact"


def busy_elsewhere(files: list[str]) -> subprocess.Popen:
    """A process decoding ``files`` in a loop until killed, on the core(s) this one leaves."""
    code = ("import sys\nfrom models.imageio import decode_for_model\n"
            "while True:\n    for f in sys.argv[1:]:\n        decode_for_model(f)\n")
    return subprocess.Popen([sys.executable, "-c", code, *files], cwd=_REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def busy_stage_cpu(files: list[str], engine) -> float:
    """:func:`stage_cpu`'s decode + preprocess + inference per file, timed beside
    :func:`busy_elsewhere` (started first and given a second to warm up)."""
    others = [busy_elsewhere(files) for _ in range(max(1, (os.cpu_count() or 1) - 1))]
    try:
        time.sleep(1.0)
        dec, pre, inf, _ = stage_cpu(files, engine)
    finally:
        for p in others:
            p.kill()
            p.wait()
    return dec + pre + inf


def _cpu_now() -> float:
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def run_once(folder: Path, engine, out: Path) -> tuple[float, float, int]:
    """(wall s, CPU s of parent + decode workers, images scored) of one whole screening run
    (every file of the folder is read and decoded; the rate counts files)."""
    from desktop.screening.outputs import screen_to_folder

    codecs = decoding(engine)[1]
    c0, t0 = _cpu_now(), time.perf_counter()
    run = screen_to_folder(folder, engine, out, restart=True, fast_decode=codecs)
    wall = time.perf_counter() - t0
    _stop_fork_server()
    return wall, _cpu_now() - c0, run.result.n_scored_images  # workers and fork server reaped: counted


def _stop_fork_server() -> None:
    """Stop (and reap) the decode workers' fork server, if one runs.

    Two reasons: each run then pays the workers' start-up as a fresh ``mura-screen`` does (the
    server outlives a pool, so later runs in this process would start their workers almost
    free), and its CPU time reaches ``RUSAGE_CHILDREN``: the workers are the server's children,
    not ours, so their CPU is counted only once the server has reaped them and been reaped.
    ``ForkServer._stop`` is private (CPython's own tests use it); there is no public way.
    """
    from multiprocessing import forkserver

    forkserver._forkserver._stop()  # type: ignore[attr-defined]


def folder_files(folder: Path, n: int, tmp: Path, name: str) -> Path:
    """The first ``n`` images (by name) of ``folder``, linked into a folder of their own."""
    from desktop.screening.discovery import discover

    files = sorted(ref.path for st in discover(folder).studies for ref in st.images)[:n]
    sub = tmp / name
    sub.mkdir()
    for i, f in enumerate(files):
        (sub / f"{i:05d}_{Path(f).name}").symlink_to(Path(f).resolve())
    return sub


def measure(folders: dict[str, Path], engine, rounds: int, tmp: Path) -> dict[str, list[Round]]:
    out: dict[str, list[Round]] = {k: [] for k in folders}
    run_once(next(iter(folders.values())), engine, tmp / "warm")  # start-up costs out of the rows
    for r in range(rounds):
        for name, folder in folders.items():
            files = sorted(str(p) for p in folder.iterdir())
            dec, pre, inf, _ = stage_cpu(files, engine)
            busy = busy_stage_cpu(files, engine)
            wall, cpu, _ = run_once(folder, engine, tmp / f"out-{name}")
            start = tmp / f"start-{name}"
            if not start.is_dir():
                start.mkdir()
                for f in files[:START_FILES]:
                    (start / Path(f).name).symlink_to(Path(f).resolve())
            s_wall, s_cpu, _ = run_once(start, engine, tmp / f"out-start-{name}")
            out[name].append(Round(dec, pre, inf, wall, cpu, len(files), s_wall, s_cpu, busy))
            print(f"[round {r + 1}/{rounds}] {name}: {len(files) / wall:.1f} files/s", file=sys.stderr, flush=True)
    return out


def table(results: dict[str, list[Round]]) -> str:
    def med(rs: list[Round], attr: str) -> float:
        return statistics.median(getattr(x, attr) for x in rs)

    lines = ["| folder | files | decode ms CPU | preprocess ms CPU | inference ms CPU | CPU-bound limit "
             "(files/s) | screener files/s | % of limit | overhead (% of CPU) | start-up s (wall / CPU) "
             "| once started: files/s | % of limit | overhead | limit, cores busy (files/s) "
             "| once started: % of it |",
             "| --- " * 15 + "|"]
    for name, rs in results.items():
        lines.append(f"| {name} | {rs[0].n} | {1000 * med(rs, 'decode'):.1f} | {1000 * med(rs, 'preprocess'):.1f} | "
                     f"{1000 * med(rs, 'inference'):.1f} | {med(rs, 'limit'):.0f} | {med(rs, 'rate'):.0f} | "
                     f"{100 * med(rs, 'rate') / med(rs, 'limit'):.0f} % | {100 * med(rs, 'overhead'):.0f} % | "
                     f"{med(rs, 'start_wall'):.2f} / {med(rs, 'start_cpu'):.2f} | {med(rs, 'steady_rate'):.0f} | "
                     f"{100 * med(rs, 'steady_rate') / med(rs, 'limit'):.0f} % | {100 * med(rs, 'steady_overhead'):.0f} % | "
                     f"{med(rs, 'busy_limit'):.0f} | {100 * med(rs, 'steady_rate') / med(rs, 'busy_limit'):.0f} % |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--fracatlas", default=str(_REPO.parent / "shared" / "data" / "fracatlas" / "images"),
                    help="FracAtlas images folder ('' to skip)")
    ap.add_argument("--dicom", default="", help="a folder of DICOM files (e.g. bench/screen.py --data DIR)")
    ap.add_argument("--folder", action="append", default=[], help="any other folder (repeatable)")
    ap.add_argument("--n", type=int, default=200, help="images per folder (default 200)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    ap.add_argument("--model", default=None, help="bundle (default: the default bundle)")
    ap.add_argument("--exact-decode", action="store_true",
                    help="decode every file in full (default: as mura-screen, the codecs the card validated reduced)")
    a = ap.parse_args(argv)
    global DECODE
    DECODE = "exact" if a.exact_decode else "default"

    from desktop.launch import runtime_env

    runtime_env()  # what mura-screen sets before numpy loads, here and in its workers
    from models.engine import Engine
    from models.reference import require_default_bundle

    engine = Engine(a.model or require_default_bundle().path, performance_hint="THROUGHPUT")
    named = {"FracAtlas JPEG": a.fracatlas, "DICOM": a.dicom} | {Path(f).name: f for f in a.folder}
    with tempfile.TemporaryDirectory(prefix="screen-limit-") as t:
        tmp = Path(t)
        folders = {k: folder_files(Path(v), a.n, tmp, f"src{i}") for i, (k, v) in enumerate(named.items())
                   if v and Path(v).is_dir()}
        if not folders:
            raise SystemExit("no folder to measure (is ../shared/data there? else give --folder)")
        results = measure(folders, engine, a.rounds, tmp)
    print(f"\n{isa()}\nmodel {engine.bundle.model_id} ({engine.cfg.input_size} px, {engine.artifact}); "
          f"medians of {a.rounds} interleaved rounds; limit = cores ÷ CPU s per image "
          f"(timed alone; 'cores busy': beside a decode loop on the other cores); decoding: "
          f"{decoding_name(engine)} in the limit and the screener alike\n")
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
