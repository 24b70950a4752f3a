"""``mura-screen``: screen a folder of studies and write a worklist sorted by suspicion (Qt-free).

Every decodable image gets a score; every file that cannot be used is listed with its reason and
the run goes on. Exit status: 0 every image was scored, 1 some images failed to decode (or a
study's DICOM outputs could not be written), 2 fatal error. Files that are not images at all
(notes, CSVs) are listed but are not failures. Patient names and IDs are never printed, logged or
written to any output (the DICOM outputs excepted: the PACS needs their patient module).

Decoding and preprocessing run in worker processes while inference runs on OpenVINO
asynchronous requests (:mod:`desktop.pipeline`), so both cores stay busy; the images/s of the
run are printed at the end. With ``--out DIR`` every study is committed to ``DIR/screen.sqlite``
as soon as all its images are scored (:mod:`desktop.screen_state`); running the same command
again resumes: finished studies whose files are unchanged are not re-scored. worklist.csv,
failures.csv and report.html are regenerated from the database at the end. Without ``--out``
the state lives in memory and nothing is written. ``--dicom-out`` also writes a Secondary
Capture per image and a Comprehensive SR per DICOM study under ``DIR/dicom/<study>/``
(:mod:`desktop.dicom_export`). ``--fast-decode`` (off by default) decodes JPEG 2000 and baseline
JPEG at a reduced resolution, never below twice the model's input size: faster, with slightly
different scores (bench/screen.py measures how different); the state, worklist and report record
it, and a run never resumes with the other decoding. Without ``--model`` the default bundle of
:mod:`models.reference` is used (the shipped reference model in a checkout, the installed model
in the clinic app), and stderr says which.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import hashlib
import io
import logging
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from desktop.discovery import GROUPINGS, Discovery, Study, discover
from desktop.pipeline import THUMB_SIZE, scored_studies
from desktop.render import plural, task_word
from desktop.screen_state import (
    DECODE_EXACT,
    DECODE_FAST,
    NOT_INDICATED,
    ImageRow,
    ScreenState,
    StudyRow,
    fingerprint,
    stamp,
)
from desktop.support import EPILOG, dispatch, silence_library_warnings
from models.engine import Engine
from models.errors import ConfigError, MuraError
from models.fsutil import atomic_write_text
from models.reference import require_default_bundle
from models.trust import BANNER, model_warnings, performance_lines

__all__ = ["THUMB_SIZE", "ScreenResult", "ScreenRun", "StudyResult", "main", "resolve_model",
           "screen", "screen_to_folder"]
LOG_NAME = "screen.log"  # library warnings of a run (none with --anonymize: they name paths)
#: What lets a clinic find a study in its PACS, first in every worklist (hashed with --anonymize).
IDENTITY_FIELDS = ["patient_id", "patient_name", "accession", "study_date", "modality", "body_part_header",
                   "description"]
WORKLIST_FIELDS = ["rank", "verdict", "probability", *IDENTITY_FIELDS, "body_part", "n_images", "n_failed",
                   "n_not_indicated", "not_indicated_reason", "study", "first_image", "model", "decode"]


@dataclass
class StudyResult:
    study: Study
    probability: float | None
    verdict: str
    body_part: str
    n_failed: int
    image_probs: list[tuple[str, float]] = field(default_factory=list)
    resumed: bool = False  # taken from the state database, not scored by this process
    n_refused: int = 0  # images the model is not indicated for (models.scope)
    scope: str = ""  # why the study is NOT_INDICATED


@dataclass
class ScreenResult:
    discovery: Discovery
    results: list[StudyResult]
    failures: list[tuple[str, str]]
    seconds: float
    n_scored_images: int
    n_resumed: int = 0
    complete: bool = True  # False when cancelled: outputs then cover only part of the source
    export_errors: list[tuple[str, str]] = field(default_factory=list)  # (study key, reason)
    decode: str = DECODE_EXACT  # DECODE_FAST when --fast-decode made these scores

    refusals: list[tuple[str, str]] = field(default_factory=list)  # (path, why not indicated)

    @property
    def ranked(self) -> list[StudyResult]:
        """The worklist: scored studies most suspicious first, then failed ones; never the
        studies the model is not indicated for (:attr:`not_indicated`)."""
        scored = [r for r in self.results if r.probability is not None]
        failed = [r for r in self.results if r.probability is None and r.verdict != NOT_INDICATED]
        return sorted(scored, key=lambda r: -r.probability) + failed

    @property
    def not_indicated(self) -> list[StudyResult]:
        return [r for r in self.results if r.verdict == NOT_INDICATED]


def _die_after() -> int | None:
    """Test hook: ``MURA_SCREEN_DIE_AFTER=N`` kills the process after N committed studies.

    It makes kill-and-resume tests deterministic; the hard ``os._exit`` skips every cleanup, as a
    power cut or SIGKILL would.
    """
    v = os.environ.get("MURA_SCREEN_DIE_AFTER", "")
    return int(v) if v.isdigit() else None


def _result_from_state(st: Study, state: ScreenState, alias: Aliases) -> StudyResult:
    key = alias(st.key, "study")
    real = {alias(ref.path, "file"): ref.path for ref in st.images}
    rows = state.images(key)
    srow = state.study(key)
    assert srow is not None  # finished() said it is there
    return StudyResult(st, srow.probability, srow.verdict, srow.body_part, srow.n_failed,
                       [(real.get(r["path"], r["path"]), r["probability"]) for r in rows
                        if r["probability"] is not None],
                       resumed=True, n_refused=srow.n_refused, scope=srow.scope)


def _stored(srow: StudyRow, rows: list[ImageRow], st: Study, alias: Aliases) -> tuple[StudyRow, list[ImageRow]]:
    """The rows as the state keeps them: with ``--anonymize`` the study key, paths and reasons
    aliased and the description dropped, so screen.sqlite holds no name a folder or file carried."""
    if not alias.anonymize:
        return srow, rows
    paths = [ref.path for ref in st.images]
    out = [dataclasses.replace(r, stamp=dataclasses.replace(r.stamp, path=alias(r.stamp.path, "file")),
                               error=None if r.error is None else alias.reason(r.error, paths),
                               refused=None if r.refused is None else alias.reason(r.refused, paths))
           for r in rows]
    return dataclasses.replace(srow, key=alias(srow.key, "study"), description="",
                               first_image=alias(srow.first_image, "file"),
                               scope=alias.reason(srow.scope, paths)), out


def screen(root: str | Path, engine: Engine, progress=None, cancel=None,
           state: ScreenState | None = None, *, workers: int | None = None,
           dicom_out: str | Path | None = None, alias: Aliases | None = None,
           fast_decode: bool = False, group_by: str = "auto") -> ScreenResult:
    """Decode, score and aggregate every study under ``root``, committing each study to ``state``.

    Studies that ``state`` already holds with unchanged source files are taken from it, not
    re-scored: that is what makes an interrupted run resumable. ``progress(done, total,
    images_done, images_total, images_worked)`` is called after each study (``images_worked``:
    images this process decoded, the basis of an honest rate); ``cancel()`` returning True stops
    early, between two studies. Without ``state`` an in-memory one is used (nothing persists).

    Decoding runs in ``workers`` processes (None: one per core, 0: in this thread) and
    inference on asynchronous requests (:mod:`desktop.pipeline`); studies still come back, and
    are committed, one at a time in discovery order. With ``dicom_out``, each DICOM study's
    Secondary Captures and SR go to ``dicom_out/<study>/`` (named through ``alias``) before the
    study is committed; a study whose SR is missing there is re-scored on resume.
    ``fast_decode`` decodes JPEG 2000 / baseline JPEG at a reduced resolution; ``state`` must
    have been begun with the same decoding (:meth:`ScreenState.begin` refuses to mix them).
    ``group_by``: how plain images become studies (:func:`desktop.discovery.discover`).
    """
    t0 = time.time()
    decode = DECODE_FAST if fast_decode else DECODE_EXACT
    disc = discover(root, group_by)
    own_state = state is None
    if state is None:
        state = ScreenState(None)
        state.begin(model_id=engine.bundle.model_id, model_name=str(engine.bundle.card["name"]),
                    model_version=str(engine.bundle.card["version"]), source_root=str(root),
                    decode=decode)
    elif state.decode != decode:
        raise ConfigError(f"the state's results were decoded {state.decode!r}, this run decodes "
                          f"{decode!r}: a worklist must not mix the two")
    alias = alias or Aliases(state.salt, False)
    results: list[StudyResult] = []
    export_errors: list[tuple[str, str]] = []
    n_scored = n_resumed = n_committed = 0
    images_total = disc.n_images
    images_done = images_worked = 0
    die_after = _die_after()
    complete = True
    fps: list[str] = []
    todo: set[int] = set()
    for i, st in enumerate(disc.studies):
        try:
            fp = fingerprint([stamp(r.path) for r in st.images])
        except OSError:
            fp = ""  # a file vanished: never trusted from the state, re-scored (and reported)
        fps.append(fp)
        exported = dicom_out is None or not st.is_dicom or study_exported(
            dicom_study_dir(dicom_out, st, alias))
        if not (fp and state.finished(alias(st.key, "study"), fp) and exported):
            todo.add(i)
    export_dir = None
    if dicom_out is not None:
        def export_dir(st: Study) -> Path:
            return dicom_study_dir(dicom_out, st, alias)
    card = engine.bundle.card
    studies = scored_studies(disc.studies, todo, engine, workers=workers, export_dir=export_dir,
                             card=card, word=task_word(card), fast_decode=fast_decode)
    try:
        for i, st in enumerate(disc.studies):
            if cancel is not None and cancel():
                complete = False
                break
            j, scored = next(studies)
            assert j == i
            if scored is None:
                results.append(_result_from_state(st, state, alias))
                n_resumed += 1
            else:
                srow, rows = scored.row, scored.images
                stored, stored_rows = _stored(srow, rows, st, alias)
                state.commit_study(stored, fps[i], stored_rows)
                n_committed += 1
                n_scored += len(scored.predictions)
                images_worked += scored.n_worked
                if scored.export_error:
                    export_errors.append((st.key, scored.export_error))
                results.append(StudyResult(st, srow.probability, srow.verdict, srow.body_part,
                                           srow.n_failed, [(r.stamp.path, r.probability)
                                                           for r in rows if r.probability is not None],
                                           n_refused=srow.n_refused, scope=stored.scope))
                if die_after is not None and n_committed >= die_after:
                    os._exit(137)
            images_done += len(st.images)
            if progress is not None:
                progress(i + 1, len(disc.studies), images_done, images_total, images_worked)
    finally:
        studies.close()
    if complete:
        state.forget_except({alias(s.key, "study") for s in disc.studies})
    keys = {r.study.key for r in results}
    real = {alias(ref.path, "file"): ref.path for s in disc.studies if s.key in keys for ref in s.images}
    failures = [(real[p], r) for p, r in state.failures() if p in real]
    refusals = [(real[p], r) for p, r in state.refusals() if p in real]
    if own_state:
        state.close()
    return ScreenResult(disc, results, failures, time.time() - t0, n_scored, n_resumed, complete,
                        export_errors, decode, refusals)


def dicom_study_dir(dicom_out: str | Path, st: Study, alias: Aliases) -> Path:
    """``dicom_out/<study>``: the study key as the worklist shows it, made safe as a folder name."""
    name = alias(st.key, "study")
    return Path(dicom_out) / "".join(c if c.isalnum() or c in "-._" else "_" for c in name)


def study_exported(folder: Path) -> bool:
    """The SR is written last, so its presence means the study's DICOM outputs are complete."""
    from desktop.dicom_export import SR_NAME

    return (folder / SR_NAME).is_file()


class Aliases:
    """Study keys and paths as they appear in outputs: as they are, or salted hashes (--anonymize).

    Folder names and even UIDs can carry patient names or accession numbers; a salted hash keeps
    rows distinct and stable across resumes (the salt lives in the state) without revealing them.
    """

    def __init__(self, salt: str, anonymize: bool) -> None:
        self.salt, self.anonymize = salt, anonymize

    def __call__(self, text: str, prefix: str = "anon") -> str:
        if not self.anonymize or not text:
            return text
        return f"{prefix}-{hashlib.sha256((self.salt + text).encode()).hexdigest()[:16]}"

    def text(self, text: str) -> str:
        """Free text (study descriptions) is dropped entirely when anonymizing."""
        return "" if self.anonymize else text

    def reason(self, text: str, paths: list[str]) -> str:
        """An error message with the source paths it names replaced by their aliases."""
        if self.anonymize:
            for p in paths:
                text = text.replace(p, self(p, "file"))
        return text

    def identity(self, st: Study) -> dict[str, str]:
        """The study's :data:`IDENTITY_FIELDS` as outputs show them: as they are, or with the
        patient ID, name, accession number and date replaced by salted hashes (an empty value
        stays empty) and the description dropped."""
        ids = {"patient_id": self(st.patient_id, "pid"), "patient_name": self(st.patient_name, "name"),
               "accession": self(st.accession, "acc"), "study_date": self(st.study_date, "date")}
        return {**ids, "modality": st.modality, "body_part_header": st.body_part_tag,
                "description": self.text(st.description)}


def worklist_rows(res: ScreenResult, model_id: str, alias: Aliases | None = None) -> list[dict]:
    alias = alias or Aliases("", False)
    rows = []
    ranks = [(rank, r) for rank, r in enumerate(res.ranked, 1)]
    for rank, r in ranks + [("", r) for r in res.not_indicated]:  # not indicated: after, unranked
        rows.append({
            "rank": rank,
            "verdict": r.verdict,
            "probability": "" if r.probability is None else f"{r.probability:.4f}",
            **alias.identity(r.study),
            "study": alias(r.study.key, "study"),
            "body_part": r.body_part,
            "n_images": len(r.study.images),
            "n_failed": r.n_failed,
            "n_not_indicated": r.n_refused,
            "not_indicated_reason": alias.reason(r.scope, [ref.path for ref in r.study.images]),
            "first_image": alias(r.study.images[0].path, "file") if r.study.images else "",
            "model": model_id,
            "decode": res.decode,
        })
    return rows


def write_outputs(res: ScreenResult, out: Path, model_id: str,
                  alias: Aliases | None = None) -> tuple[Path, Path]:
    alias = alias or Aliases("", False)
    out.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=WORKLIST_FIELDS)
    w.writeheader()
    w.writerows(worklist_rows(res, model_id, alias))
    wl = atomic_write_text(out / "worklist.csv", buf.getvalue())
    buf = io.StringIO()
    fw = csv.writer(buf)
    fw.writerow(["path", "kind", "reason"])
    fw.writerows([(alias(p, "file"), "failed", r) for p, r in res.failures])
    fw.writerows([(alias(p, "file"), "not indicated", r) for p, r in res.refusals])
    fw.writerows([(alias(p, "file"), "skipped", r) for p, r in res.discovery.skipped])
    fw.writerows([(alias(p, "file"), "duplicate", f"same SOP Instance UID as {alias(q, 'file')}")
                  for p, q in res.discovery.duplicates])
    fl = atomic_write_text(out / "failures.csv", buf.getvalue())
    return wl, fl


def export_error_rows(res: ScreenResult, alias: Aliases | None = None) -> list[tuple[str, str]]:
    """(study, reason) of every study whose DICOM SC/SR could not be written, as outputs show them.

    Reasons can name source files, so with ``--anonymize`` those paths are replaced by their
    aliases, as the study keys are.
    """
    alias = alias or Aliases("", False)
    studies = {r.study.key: r.study for r in res.results}
    rows = []
    for key, reason in res.export_errors:
        if alias.anonymize and key in studies:  # reasons name source files
            for ref in studies[key].images:
                reason = reason.replace(ref.path, alias(ref.path, "file"))
        rows.append((alias(key, "study"), reason))
    return rows


def format_table(res: ScreenResult, word: str, top: int = 10, alias: Aliases | None = None) -> str:
    alias = alias or Aliases("", False)
    lines = [f"{'rank':>4}  {'verdict':<10}  {f'P({word})':>14}  {'body part':<9}  {'imgs':>4}  study"]
    for rank, r in enumerate(res.ranked[:top], 1):
        p = "-" if r.probability is None else f"{r.probability:.3f}"
        key = alias(r.study.key, "study")
        key = key if len(key) <= 48 else "…" + key[-47:]
        lines.append(f"{rank:>4}  {r.verdict:<10}  {p:>14}  {r.body_part:<9}  {len(r.study.images):>4}  {key}")
    if res.not_indicated:
        lines.append(f"Not indicated ({plural(len(res.not_indicated), 'study', 'studies')}: no verdict, "
                     "outside what the model was trained for):")
        for reason, n in Counter(r.scope for r in res.not_indicated).most_common(5):
            lines.append(f"  {n:>4} × {reason}")
    return "\n".join(lines)



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
                    "bench/screen.py). Off by default; recorded in the state, worklist and "
                    "report, and a run never resumes with the other setting")
    ap.add_argument("--group-by", choices=GROUPINGS, default="auto",
                    help="how plain images (PNG/JPEG, no DICOM study) become studies: 'auto' (default) "
                    "makes each file its own study unless the folders follow MURA's "
                    "patientNNNNN/studyN_* layout; 'folder' makes every folder one study. DICOM is "
                    "always grouped by Study Instance UID")
    return ap


def model_quality_lines(card: dict) -> list[str]:
    """The red-banner warnings (if any), then the validated performance: printed by every run."""
    warnings = model_warnings(card)
    lines = [f"WARNING: {BANNER}: {w}" for w in warnings]
    return lines + ["Validated performance: " + "; ".join(performance_lines(card))]


@dataclass
class ScreenRun:
    """A finished :func:`screen_to_folder` run: the result and where its outputs went."""

    result: ScreenResult
    alias: Aliases
    state_path: Path | None
    worklist: Path | None = None
    failures: Path | None = None
    report: Path | None = None


def screen_to_folder(src: str | Path, engine: Engine, out: str | Path | None, *,
                     restart: bool = False, anonymize: bool = False, progress=None,
                     cancel=None, workers: int | None = None,
                     dicom_out: bool = False, fast_decode: bool = False, group_by: str = "auto") -> ScreenRun:
    """Screen ``src`` with the persistent state in ``out`` and write every output there.

    The CLI and the viewer's "Screen folder…" both call this, so the same folder gives the same
    worklist, failures, report and resumable state whichever way it was screened. ``workers``
    is the number of decode processes (None: one per core, 0: none). ``dicom_out`` writes each
    DICOM study's Secondary Captures and SR under ``out/dicom/<study>/`` (needs ``out``).
    ``fast_decode``: see :func:`screen`; an ``out`` holding results of the other decoding is
    refused unless ``restart``.
    """
    if dicom_out and not out:
        raise MuraError("DICOM outputs need an output folder (--out)")
    if not Path(src).exists():
        raise MuraError(f"{src}: no such file or folder")
    card = engine.bundle.card
    state = ScreenState(str(out) if out else None)
    try:
        state.begin(model_id=engine.bundle.model_id, model_name=str(card["name"]),
                    model_version=str(card["version"]), source_root=str(Path(src).resolve()),
                    restart=restart, decode=DECODE_FAST if fast_decode else DECODE_EXACT,
                    anonymize=anonymize)
        alias = Aliases(state.salt, anonymize)
        res = screen(src, engine, progress=progress, cancel=cancel, state=state, workers=workers,
                     dicom_out=Path(out) / "dicom" if dicom_out and out else None, alias=alias,
                     fast_decode=fast_decode, group_by=group_by)
        run = ScreenRun(res, alias, state.path)
        if out:
            from desktop.report import write_report

            run.worklist, run.failures = write_outputs(res, Path(out), engine.bundle.model_id, alias)
            run.report = write_report(Path(out) / "report.html", res, card, engine.bundle.model_id,
                                      state, alias)
        return run
    finally:
        state.close()


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


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    rc = dispatch("mura-screen", argv)  # --version, --card, --check-decode
    if rc is not None:
        return rc
    a = build_parser().parse_args(argv)
    try:
        if a.workers is not None and a.workers < 0:
            raise ConfigError(f"--workers {a.workers}: expected 0 or more")
        if a.dicom_out and not a.out:
            raise ConfigError("--dicom-out needs --out")
        engine = Engine(resolve_model(a.model), backend=a.backend, device=a.device,
                        performance_hint="THROUGHPUT")
        card = engine.bundle.card
        if a.out:
            Path(a.out).mkdir(parents=True, exist_ok=True)
        silence_library_warnings(Path(a.out) / LOG_NAME if a.out and not a.anonymize else None)
        for line in model_quality_lines(card)[:-1]:  # the warnings, before the run starts
            print(line, file=sys.stderr)
        progress = None if a.no_progress else ProgressLine()
        run = screen_to_folder(a.src, engine, a.out, restart=a.restart, anonymize=a.anonymize,
                               progress=progress, workers=a.workers, dicom_out=a.dicom_out,
                               fast_decode=a.fast_decode, group_by=a.group_by)
        res, alias = run.result, run.alias
        word = card["task"].get("display_word", card["task"]["name"])
        print(f"Model {engine.bundle.model_id}; {card['intended_use']}")
        print("\n".join(model_quality_lines(card)))
        if res.decode == DECODE_FAST:
            print(f"Decoding: --fast-decode (JPEG 2000 / baseline JPEG at reduced resolution, long "
                  f"side >= {2 * engine.cfg.input_size} px): scores differ slightly from an exact decode")
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
    except MuraError as e:
        print(f"mura-screen: error: {e}", file=sys.stderr)
        return 2
    return 1 if res.failures or res.export_errors else 0

if __name__ == "__main__":
    sys.exit(main())
