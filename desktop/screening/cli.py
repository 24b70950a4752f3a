"""``mura-screen``: screen a folder of studies and write a worklist sorted by suspicion (Qt-free).

Every decodable image gets a score; every file that cannot be used is listed with its reason and
the run goes on. Exit status: 0 every image was scored, 1 some images failed to decode (or a
study's DICOM outputs could not be written), 2 fatal error. Files that are not images at all
(notes, CSVs) are listed but are not failures. Patient names and IDs are never printed, logged or
written to any output (the DICOM outputs excepted: the PACS needs their patient module).

Decoding and preprocessing run in worker processes while inference runs on OpenVINO
asynchronous requests (:mod:`desktop.screening.pipeline`), so both cores stay busy; the images/s of the
run are printed at the end. With ``--out DIR`` every study is committed to ``DIR/screen.sqlite``
as soon as all its images are scored (:mod:`desktop.screening.state`); running the same command
again resumes: finished studies whose files are unchanged are not re-scored. worklist.csv,
failures.csv and report.html are regenerated from the database at the end. Without ``--out``
the state lives in memory and nothing is written. ``--dicom-out`` also writes a Secondary
Capture per image and a Comprehensive SR per DICOM study under ``DIR/dicom/<study>/``
(:mod:`desktop.screening.dicom_export`). ``--fast-decode`` decodes JPEG 2000 and baseline
JPEG at a reduced resolution, never below twice the model's input size: faster, with slightly
different scores; it is the default for a model whose card validated it, ``--exact-decode``
forces full decodes (:mod:`desktop.screening.decoding`); the state, worklist and report record
it, and a run never resumes with the other decoding. Without ``--model`` the default bundle of
:mod:`models.reference` is used (the shipped reference model in a checkout, the installed model
in the clinic app), and stderr says which.

``--watch`` keeps running on a folder a PACS exports into and screens each study once its files
have settled, on the same state (:mod:`desktop.screening.watch`); ``--cluster`` spreads the
scoring of a large archive over a Dask cluster, with the same state and outputs
(:mod:`desktop.screening.cluster`, imported only then: the single-PC path never loads Dask).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import TextIO

from desktop.screening.decoding import choose_fast_decode, decoding_text
from desktop.screening.discovery import GROUPINGS
from desktop.screening.outputs import ScreenRun, format_table, screen_to_folder
from desktop.screening.render import plural
from desktop.screening.run import export_error_rows
from desktop.screening.state import DECODE_EXACT, mode_codecs
from desktop.screening.support import EPILOG, dispatch, silence_library_warnings
from desktop.screening.watch import DEFAULT_POLL_S, DEFAULT_SETTLE_S, WatchOptions, watch_folder
from desktop.screening.workers import prestart
from models.engine import Engine
from models.errors import ConfigError, MuraError
from models.reference import require_default_bundle
from models.trust import BANNER, model_warnings, performance_lines

LOG_NAME = "screen.log"  # library warnings of a run (none with --anonymize: they name paths)


def _hms(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60:02d}:{s % 60:02d}"


class ProgressLine:
    """One ``\r``-rewritten stderr line: studies, images, images/s and ETA.

    The rate counts only images this process scored, so a resumed run's ETA is not flattered by
    the studies it took from the database. No study keys or paths: they may identify patients.
    """

    def __init__(self, stream: TextIO | None = None, min_interval: float = 0.2) -> None:
        self.stream = sys.stderr if stream is None else stream  # looked up now: tests redirect it
        self.min_interval = min_interval
        self.t0 = time.time()
        self.last = 0.0

    def __call__(self, done: int, total: int, images_done: int, images_total: int,
                 images_worked: int | None = None) -> None:
        now = time.time()
        if done < total and now - self.last < self.min_interval:
            return
        self.last = now
        elapsed = max(now - self.t0, 1e-9)
        rate = (images_done if images_worked is None else images_worked) / elapsed
        left = images_total - images_done
        eta = "--:--" if rate <= 0 else _hms(left / rate)
        self.stream.write(f"\rstudies {done}/{total}  images {images_done}/{images_total}  "
                          f"{rate:.1f} images/s  ETA {eta}   ")
        if done >= total:
            self.stream.write("\n")
        self.stream.flush()


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="mura-screen",
        description="Screen every study under a folder (DICOM by content, PNG, JPEG) with a model bundle and "
        "write a worklist sorted by suspicion. With --out, results are committed per study to "
        "OUT/screen.sqlite and rerunning the same command resumes. Research use only — not for "
        "diagnostic use.",
        epilog=EPILOG,
    )
    ap.add_argument("src", help="folder (searched recursively) or a single file")
    ap.add_argument("--model", default=None,
                    help="model bundle folder (card.json + model files); default: "
                    "$MURA_DEFAULT_MODEL, else the installed app's model, else the shipped "
                    "reference model models/reference/fracatlas-lite0 (research use only); the "
                    "one used is named on stderr")
    ap.add_argument("--out", default=None,
                    help="output folder: screen.sqlite (resumable state), worklist.csv, failures.csv, "
                    "report.html (default: nothing written, nothing resumable)")
    ap.add_argument("--restart", action="store_true",
                    help="discard the state in --out (needed when the model or source differs)")
    ap.add_argument("--anonymize", action="store_true",
                    help="replace study keys, file paths and descriptions in CSV and HTML outputs by "
                    "salted hashes (patient names/IDs are never written either way)")
    ap.add_argument("--no-progress", action="store_true", help="do not print the progress line on stderr")
    ap.add_argument("--device", default="CPU", help="OpenVINO device: CPU, GPU or AUTO (default CPU)")
    ap.add_argument("--backend", choices=["openvino", "onnxruntime"], default="openvino", help="inference backend")
    ap.add_argument("--top", type=int, default=10, help="rows of the worklist to print (default 10)")
    ap.add_argument("--workers", type=int, default=None,
                    help="decode processes (default: one per CPU core; 0 decodes in the main "
                    "process). Inference runs alongside on OpenVINO asynchronous requests")
    ap.add_argument("--dicom-out", action="store_true",
                    help="also write, per DICOM study, a Secondary Capture per image (heatmap, "
                    "score, 'not for diagnostic use' burned in) and a Comprehensive SR under "
                    "OUT/dicom/<study>/, ready to send back to the PACS (needs --out)")
    ap.add_argument("--fast-decode", action="store_true",
                    help="decode JPEG 2000 at a lower resolution level and baseline JPEG by DCT "
                    "scaling, never below twice the model's input size: several times faster on "
                    "those files, scores slightly different from an exact decode (see "
                    "bench/screen.py). The default for a model whose card validated it "
                    "(mura-screen --card: reduced_decode); recorded in the state, worklist and "
                    "report, and a run never resumes with the other setting")
    ap.add_argument("--exact-decode", action="store_true",
                    help="decode every file at full resolution, also for a model whose card "
                    "validated the reduced decode (the default for every other model)")
    ap.add_argument("--group-by", choices=GROUPINGS, default="auto",
                    help="how plain images (PNG/JPEG, no DICOM study) become studies: 'auto' (default) "
                    "makes each file its own study unless the folders follow MURA's "
                    "patientNNNNN/studyN_* layout; 'folder' makes every folder one study. DICOM is "
                    "always grouped by Study Instance UID")
    _add_modes(ap)
    return ap


def _add_modes(ap: argparse.ArgumentParser) -> None:
    """--watch (a folder a PACS exports into) and --cluster (an archive larger than one PC)."""
    ap.add_argument("--watch", action="store_true",
                    help="keep running: screen each new or changed study once its files have not "
                    "changed for --settle seconds, and rewrite the outputs after each batch (needs "
                    "--out; Ctrl+C or SIGTERM stops it cleanly, exit status 0)")
    ap.add_argument("--settle", type=float, default=DEFAULT_SETTLE_S, metavar="SECONDS",
                    help=f"with --watch: how long a study's files must stay unchanged before it is "
                    f"screened (default {DEFAULT_SETTLE_S:g})")
    ap.add_argument("--poll", action="store_true",
                    help="with --watch: look for changes by scanning every --poll-interval seconds "
                    "instead of the system's file events (automatic on a network share, whose "
                    "changes made by other machines raise no local event)")
    ap.add_argument("--poll-interval", type=float, default=DEFAULT_POLL_S, metavar="SECONDS",
                    help=f"with --watch, when polling: seconds between scans (default {DEFAULT_POLL_S:g})")
    ap.add_argument("--cluster", default=None, metavar="ADDRESS",
                    help="score on a Dask cluster (the optional extra mura-fracture[cluster]): "
                    "'local:N' starts N worker processes on this PC (loopback only); "
                    "tcp://HOST:PORT or a scheduler .json file joins a running scheduler, whose "
                    "workers must see the folder and the model at the same paths. Same state and "
                    "outputs as without it; --workers is then ignored")
    ap.add_argument("--cluster-batch", type=int, default=64, metavar="IMAGES",
                    help="with --cluster: images per task (whole studies; default 64)")


def model_quality_lines(card: dict) -> list[str]:
    """The red-banner warnings (if any), then the validated performance: printed by every run."""
    warnings = model_warnings(card)
    lines = [f"WARNING: {BANNER}: {w}" for w in warnings]
    return lines + ["Validated performance: " + "; ".join(performance_lines(card))]


def resolve_model(model: str | None) -> str:
    """``--model`` as given, else the default bundle, announced on stderr (and in the log).

    A screener that silently picked a model would put unexplained scores on a worklist; saying
    which bundle (and that it is a research model) costs one line. No default at all is a
    :class:`~models.errors.NoModelError` naming ``--model``.
    """
    if model:
        return model
    found = require_default_bundle()
    notice = found.notice("mura-screen")
    print(notice, file=sys.stderr)
    logging.getLogger("mura.screen").info(notice)
    return str(found.path)


def _check(a: argparse.Namespace) -> None:
    if a.workers is not None and a.workers < 0:
        raise ConfigError(f"--workers {a.workers}: expected 0 or more")
    if a.dicom_out and not a.out:
        raise ConfigError("--dicom-out needs --out")
    if a.watch and not a.out:
        raise ConfigError("--watch needs --out: the state and the worklist it keeps up to date live there")
    if a.watch and a.cluster:
        raise ConfigError("--watch and --cluster cannot be combined: a watched folder is one PC's job")
    if a.cluster_batch < 1:
        raise ConfigError(f"--cluster-batch {a.cluster_batch}: expected 1 or more images")


def _screen(a: argparse.Namespace, engine: Engine, model: str) -> ScreenRun:
    """One run over the folder: on this PC, or on the Dask cluster of ``--cluster`` (imported
    only then: the single-PC path never loads the cluster library)."""
    kw = {"restart": a.restart, "anonymize": a.anonymize, "workers": a.workers,
          "progress": None if a.no_progress else ProgressLine(), "dicom_out": a.dicom_out,
          "fast_decode": a.fast_decode, "group_by": a.group_by}
    if not a.cluster:
        return screen_to_folder(a.src, engine, a.out, **kw)
    from desktop.screening.cluster import (
        EngineSpec,
        cluster_screen,
        local_inference_threads,
        open_cluster,
        parse_cluster,
    )

    where = parse_cluster(a.cluster)
    spec = EngineSpec(str(Path(model).resolve()), engine.bundle.model_id, a.device, a.backend,
                      local_inference_threads(where.local) if where.local else None)
    with open_cluster(where) as client:
        return screen_to_folder(a.src, engine, a.out, screen_fn=cluster_screen(client, spec, a.cluster_batch),
                                **kw)


def _print_run(a: argparse.Namespace, run: ScreenRun, engine: Engine) -> None:
    res, alias, card = run.result, run.alias, engine.bundle.card
    word = card["task"].get("display_word", card["task"]["name"])
    print(f"Model {engine.bundle.model_id}; {card['intended_use']}")
    print("\n".join(model_quality_lines(card)))
    if res.decode != DECODE_EXACT:
        print(f"Decoding: {decoding_text(card, mode_codecs(res.decode))}")
    print(format_table(res, word, a.top, alias))
    rate = res.n_scored_images / max(res.seconds, 1e-9)
    print(f"{len(res.results)} studies ({res.n_resumed} resumed from the state), "
          f"{res.n_scored_images} images scored in {res.seconds:.1f}s "
          f"({rate:.1f} images/s); {len(res.failures)} images failed, "
          f"{len(res.refusals)} not indicated, "
          f"{len(res.discovery.skipped)} files skipped, "
          f"{plural(len(res.discovery.duplicates), 'duplicate')}")
    for key, reason in export_error_rows(res, alias):
        print(f"  DICOM export failed for study {key}: {reason}")
    for path, reason in res.failures[:20]:
        print(f"  failed: {alias(path, 'file')}: {reason}")
    if len(res.failures) > 20:
        print(f"  … and {len(res.failures) - 20} more (see failures.csv with --out)")
    if a.out:
        print(f"worklist: {run.worklist}\nfailures: {run.failures}\nreport: {run.report}\n"
              f"state: {run.state_path}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    rc = dispatch("mura-screen", argv)  # --version, --card, --check-decode
    if rc is not None:
        return rc
    a = build_parser().parse_args(argv)
    try:
        _check(a)
        if a.workers != 0 and not a.cluster:
            prestart()  # the decode workers' imports overlap the model's compilation
        model = resolve_model(a.model)
        engine = Engine(model, backend=a.backend, device=a.device, performance_hint="THROUGHPUT")
        a.fast_decode = choose_fast_decode(engine.bundle.card, fast=a.fast_decode, exact=a.exact_decode)
        if a.out:
            Path(a.out).mkdir(parents=True, exist_ok=True)
        silence_library_warnings(Path(a.out) / LOG_NAME if a.out and not a.anonymize else None)
        for line in model_quality_lines(engine.bundle.card)[:-1]:  # the warnings, before the run starts
            print(line, file=sys.stderr)
        if a.watch:
            print(f"Model {engine.bundle.model_id}; {engine.bundle.card['intended_use']}")
            print("\n".join(model_quality_lines(engine.bundle.card)), flush=True)
            return watch_folder(a.src, engine, a.out, WatchOptions(a.settle, a.poll_interval, a.poll),
                                restart=a.restart, anonymize=a.anonymize, workers=a.workers,
                                dicom_out=a.dicom_out, fast_decode=a.fast_decode, group_by=a.group_by)
        run = _screen(a, engine, model)
        _print_run(a, run, engine)
    except MuraError as e:
        print(f"mura-screen: error: {e}", file=sys.stderr)
        return 2
    res = run.result
    return 1 if res.failures or res.export_errors else 0


if __name__ == "__main__":
    sys.exit(main())
