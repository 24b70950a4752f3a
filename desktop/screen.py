"""``mura-screen``: screen a folder of studies and write a worklist sorted by suspicion (Qt-free).

Every decodable image gets a score; every file that cannot be used is listed with its reason and
the run goes on. Exit status: 0 every image was scored, 1 some images failed to decode, 2 fatal
error. Files that are not images at all (notes, CSVs) are listed but are not failures.
Patient names and IDs are never printed, logged or written to any output.

With ``--out DIR`` every study is committed to ``DIR/screen.sqlite`` as soon as it is scored
(:mod:`desktop.screen_state`); running the same command again resumes: finished studies whose
files are unchanged are not re-scored. worklist.csv, failures.csv and report.html are regenerated
from the database at the end. Without ``--out`` the state lives in memory and nothing is written.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import numpy as np
from PIL import Image

from desktop.discovery import Discovery, Study, discover
from desktop.render import blend_heatmap, to_uint8
from desktop.screen_state import FileStamp, ImageRow, ScreenState, StudyRow, fingerprint, stamp
from models.engine import Engine, ImagePrediction, aggregate_study
from models.errors import ImageDecodeError, MuraError
from models.fsutil import atomic_write_text
from models.imageio import load_image

THUMB_SIZE = 160  # px, long side of the report's thumbnails
WORKLIST_FIELDS = ["rank", "study", "verdict", "probability", "body_part", "n_images", "n_failed",
                   "modality", "description", "first_image", "model"]


@dataclass
class StudyResult:
    study: Study
    probability: float | None
    verdict: str
    body_part: str
    n_failed: int
    image_probs: list[tuple[str, float]] = field(default_factory=list)
    resumed: bool = False  # taken from the state database, not scored by this process


@dataclass
class ScreenResult:
    discovery: Discovery
    results: list[StudyResult]
    failures: list[tuple[str, str]]
    seconds: float
    n_scored_images: int
    n_resumed: int = 0
    complete: bool = True  # False when cancelled: outputs then cover only part of the source

    @property
    def ranked(self) -> list[StudyResult]:
        scored = [r for r in self.results if r.probability is not None]
        return sorted(scored, key=lambda r: -r.probability) + [r for r in self.results if r.probability is None]


def _thumbnail(pixels: np.ndarray, pred: ImagePrediction) -> bytes | None:
    """A small PNG of the image with its heatmap, for the HTML report (None if it cannot be made).

    Made while the pixels are in memory, so the report never has to decode the source again.
    """
    try:
        rgb = blend_heatmap(to_uint8(pixels), pred.heatmap(pixels.shape), opacity=0.45)
        im = Image.fromarray(rgb)
        im.thumbnail((THUMB_SIZE, THUMB_SIZE))
        buf = io.BytesIO()
        im.save(buf, format="PNG", optimize=True)
        return buf.getvalue()
    except (ValueError, OSError):
        return None


def _die_after() -> int | None:
    """Test hook: ``MURA_SCREEN_DIE_AFTER=N`` kills the process after N committed studies.

    It makes kill-and-resume tests deterministic; the hard ``os._exit`` skips every cleanup, as a
    power cut or SIGKILL would.
    """
    v = os.environ.get("MURA_SCREEN_DIE_AFTER", "")
    return int(v) if v.isdigit() else None


def _score_study(st: Study, engine: Engine) -> tuple[StudyRow, list[ImageRow], list[ImagePrediction]]:
    """Score one study; every image gets a row, so a failed file is recorded, not forgotten.

    Files are stamped before they are decoded: if one changes while it is read, the next run
    sees a different stamp and re-scores it, rather than trusting a result of unknown content.
    """
    rows: list[ImageRow] = []
    pixels: list[np.ndarray] = []
    ok: list[ImageRow] = []
    for ref in st.images:
        try:
            fs = stamp(ref.path)
        except OSError as e:
            rows.append(ImageRow(FileStamp(ref.path, -1, -1), error=f"cannot read file ({e})"))
            continue
        row = ImageRow(fs)
        try:
            pixels.append(load_image(ref.path).pixels)
            ok.append(row)
        except ImageDecodeError as e:
            row.error = e.reason
        rows.append(row)
    preds = engine.predict(pixels) if pixels else []
    for row, px, pred in zip(ok, pixels, preds, strict=True):
        row.probability, row.body_part = float(pred.probability), pred.body_part
        row.thumbnail = _thumbnail(px, pred)
    n_failed = len(st.images) - len(preds)
    first = st.images[0].path if st.images else ""
    if preds:
        agg = aggregate_study(preds, engine.thresholds)
        srow = StudyRow(st.key, agg.probability, agg.body_part, agg.verdict, len(st.images), n_failed,
                        st.modality, st.description, first)
    else:
        srow = StudyRow(st.key, None, "", "failed", len(st.images), n_failed, st.modality,
                        st.description, first)
    return srow, rows, preds


def _result_from_state(st: Study, state: ScreenState) -> StudyResult:
    rows = state.images(st.key)
    srow = state.study(st.key)
    assert srow is not None  # finished() said it is there
    return StudyResult(st, srow.probability, srow.verdict, srow.body_part, srow.n_failed,
                       [(r["path"], r["probability"]) for r in rows if r["probability"] is not None],
                       resumed=True)


def screen(root: str | Path, engine: Engine, progress=None, cancel=None,
           state: ScreenState | None = None) -> ScreenResult:
    """Decode, score and aggregate every study under ``root``, committing each study to ``state``.

    Studies that ``state`` already holds with unchanged source files are taken from it, not
    re-scored: that is what makes an interrupted run resumable. ``progress(done, total,
    images_done, images_total, images_worked)`` is called after each study (``images_worked``:
    images this process decoded, the basis of an honest rate); ``cancel()`` returning True stops
    early. Without ``state`` an in-memory one is used (nothing persists).
    """
    t0 = time.time()
    disc = discover(root)
    own_state = state is None
    if state is None:
        state = ScreenState(None)
        state.begin(model_id=engine.bundle.model_id, model_name=str(engine.bundle.card["name"]),
                    model_version=str(engine.bundle.card["version"]), source_root=str(root))
    results: list[StudyResult] = []
    n_scored = n_resumed = n_committed = 0
    images_total = disc.n_images
    images_done = images_worked = 0
    die_after = _die_after()
    complete = True
    for i, st in enumerate(disc.studies):
        if cancel is not None and cancel():
            complete = False
            break
        try:
            fp = fingerprint([stamp(r.path) for r in st.images])
        except OSError:
            fp = ""  # a file vanished: never trusted from the state, re-scored (and reported)
        if fp and state.finished(st.key, fp):
            results.append(_result_from_state(st, state))
            n_resumed += 1
        else:
            srow, rows, preds = _score_study(st, engine)
            state.commit_study(srow, fp, rows)
            n_committed += 1
            n_scored += len(preds)
            images_worked += len(st.images)
            results.append(StudyResult(st, srow.probability, srow.verdict, srow.body_part, srow.n_failed,
                                       [(r.stamp.path, r.probability) for r in rows
                                        if r.probability is not None]))
            if die_after is not None and n_committed >= die_after:
                os._exit(137)
        images_done += len(st.images)
        if progress is not None:
            progress(i + 1, len(disc.studies), images_done, images_total, images_worked)
    if complete:
        state.forget_except({s.key for s in disc.studies})
    keys = {r.study.key for r in results}
    paths_in = {ref.path for s in disc.studies if s.key in keys for ref in s.images}
    failures = [(p, r) for p, r in state.failures() if p in paths_in]
    if own_state:
        state.close()
    return ScreenResult(disc, results, failures, time.time() - t0, n_scored, n_resumed, complete)


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


def worklist_rows(res: ScreenResult, model_id: str, alias: Aliases | None = None) -> list[dict]:
    alias = alias or Aliases("", False)
    rows = []
    for rank, r in enumerate(res.ranked, 1):
        rows.append({
            "rank": rank,
            "study": alias(r.study.key, "study"),
            "verdict": r.verdict,
            "probability": "" if r.probability is None else f"{r.probability:.4f}",
            "body_part": r.body_part,
            "n_images": len(r.study.images),
            "n_failed": r.n_failed,
            "modality": r.study.modality,
            "description": alias.text(r.study.description),
            "first_image": alias(r.study.images[0].path, "file") if r.study.images else "",
            "model": model_id,
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
    fw.writerows([(alias(p, "file"), "skipped", r) for p, r in res.discovery.skipped])
    fw.writerows([(alias(p, "file"), "duplicate", f"same SOP Instance UID as {alias(q, 'file')}")
                  for p, q in res.discovery.duplicates])
    fl = atomic_write_text(out / "failures.csv", buf.getvalue())
    return wl, fl


def format_table(res: ScreenResult, word: str, top: int = 10, alias: Aliases | None = None) -> str:
    alias = alias or Aliases("", False)
    lines = [f"{'rank':>4}  {'verdict':<10}  {f'P({word})':>14}  {'body part':<9}  {'imgs':>4}  study"]
    for rank, r in enumerate(res.ranked[:top], 1):
        p = "-" if r.probability is None else f"{r.probability:.3f}"
        key = alias(r.study.key, "study")
        key = key if len(key) <= 48 else "…" + key[-47:]
        lines.append(f"{rank:>4}  {r.verdict:<10}  {p:>14}  {r.body_part:<9}  {len(r.study.images):>4}  {key}")
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
    )
    ap.add_argument("src", help="folder (searched recursively) or a single file")
    ap.add_argument("--model", required=True, help="model bundle folder (card.json + model files)")
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
    return ap


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
                     cancel=None) -> ScreenRun:
    """Screen ``src`` with the persistent state in ``out`` and write every output there.

    The CLI and the viewer's "Screen folder…" both call this, so the same folder gives the same
    worklist, failures, report and resumable state whichever way it was screened.
    """
    if not Path(src).exists():
        raise MuraError(f"{src}: no such file or folder")
    card = engine.bundle.card
    state = ScreenState(str(out) if out else None)
    try:
        state.begin(model_id=engine.bundle.model_id, model_name=str(card["name"]),
                    model_version=str(card["version"]), source_root=str(Path(src).resolve()),
                    restart=restart)
        res = screen(src, engine, progress=progress, cancel=cancel, state=state)
        alias = Aliases(state.salt, anonymize)
        run = ScreenRun(res, alias, state.path)
        if out:
            from desktop.report import write_report

            run.worklist, run.failures = write_outputs(res, Path(out), engine.bundle.model_id, alias)
            run.report = write_report(Path(out) / "report.html", res, card, engine.bundle.model_id,
                                      state, alias)
        return run
    finally:
        state.close()


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    try:
        engine = Engine(a.model, backend=a.backend, device=a.device)
        card = engine.bundle.card
        progress = None if a.no_progress else ProgressLine()
        run = screen_to_folder(a.src, engine, a.out, restart=a.restart, anonymize=a.anonymize,
                               progress=progress)
        res, alias = run.result, run.alias
        word = card["task"].get("display_word", card["task"]["name"])
        print(f"Model {engine.bundle.model_id} ({card['validation']['verdict']}); {card['intended_use']}")
        print(format_table(res, word, a.top, alias))
        rate = res.n_scored_images / max(res.seconds, 1e-9)
        print(f"{len(res.results)} studies ({res.n_resumed} resumed from the state), "
              f"{res.n_scored_images} images scored in {res.seconds:.1f}s "
              f"({rate:.1f} images/s); {len(res.failures)} images failed, "
              f"{len(res.discovery.skipped)} non-image files skipped, "
              f"{len(res.discovery.duplicates)} duplicates")
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
    return 1 if res.failures else 0

if __name__ == "__main__":
    sys.exit(main())
