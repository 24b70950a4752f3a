"""What a screening run writes: worklist.csv, failures.csv, the report, and the whole
folder-to-outputs job that the CLI and the viewer's "Screen folder…" share."""

from __future__ import annotations

import csv
import io
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from desktop.screening.anonymize import Aliases
from desktop.screening.render import plural
from desktop.screening.report import write_report
from desktop.screening.run import ScreenResult, screen
from desktop.screening.state import FastDecode, ScreenState, decode_mode
from desktop.screening.workers import Workers
from models.engine import Engine
from models.errors import MuraError
from models.fsutil import atomic_write_text

#: What lets a clinic find a study in its PACS, first in every worklist (hashed with --anonymize).
IDENTITY_FIELDS = ["patient_id", "patient_name", "accession", "study_date", "modality", "body_part_header",
                   "description"]
WORKLIST_FIELDS = ["rank", "verdict", "probability", *IDENTITY_FIELDS, "body_part", "n_images", "n_failed",
                   "n_not_indicated", "not_indicated_reason", "study", "first_image", "model", "decode"]


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


@dataclass
class ScreenRun:
    """A finished :func:`screen_to_folder` run: the result and where its outputs went."""

    result: ScreenResult
    alias: Aliases
    state_path: Path | None
    worklist: Path | None = None
    failures: Path | None = None
    report: Path | None = None


#: What screens a folder: :func:`desktop.screening.run.screen` on this PC, or a function with its
#: signature that spreads the work elsewhere (:func:`desktop.screening.cluster.cluster_screen`).
ScreenFn = Callable[..., ScreenResult]


def open_state(src: str | Path, engine: Engine, out: str | Path | None, *, restart: bool = False,
               anonymize: bool = False, fast_decode: FastDecode = False) -> tuple[ScreenState, Aliases]:
    """The state of ``out`` (in memory without it), claimed for this model, source and decoding
    (:meth:`ScreenState.begin` refuses another's results unless ``restart``), and its aliases."""
    if not Path(src).exists():
        raise MuraError(f"{src}: no such file or folder")
    card = engine.bundle.card
    state = ScreenState(str(out) if out else None)
    try:
        state.begin(model_id=engine.bundle.model_id, model_name=str(card["name"]),
                    model_version=str(card["version"]), source_root=str(Path(src).resolve()),
                    restart=restart, decode=decode_mode(fast_decode),
                    anonymize=anonymize)
    except BaseException:
        state.close()
        raise
    return state, Aliases(state.salt, anonymize)


def write_run(res: ScreenResult, engine: Engine, out: str | Path | None, state: ScreenState,
              alias: Aliases) -> ScreenRun:
    """worklist.csv, failures.csv and report.html of ``res`` in ``out`` (nothing without it),
    each written atomically: a reader (or a crash) never sees half a worklist."""
    run = ScreenRun(res, alias, state.path)
    if out:
        run.worklist, run.failures = write_outputs(res, Path(out), engine.bundle.model_id, alias)
        run.report = write_report(Path(out) / "report.html", res, engine.bundle.card,
                                  engine.bundle.model_id, state, alias)
    return run


def screen_to_folder(src: str | Path, engine: Engine, out: str | Path | None, *,
                     restart: bool = False, anonymize: bool = False, progress=None,
                     cancel=None, workers: int | Workers | None = None,
                     dicom_out: bool = False, fast_decode: FastDecode = False, group_by: str = "auto",
                     screen_fn: ScreenFn | None = None) -> ScreenRun:
    """Screen ``src`` with the persistent state in ``out`` and write every output there.

    The CLI and the viewer's "Screen folder…" both call this, so the same folder gives the same
    worklist, failures, report and resumable state whichever way it was screened. ``workers``
    is the number of decode processes (None: one per core, 0: none) or a running pool the
    caller owns (:func:`desktop.screening.pipeline.scored_studies`). ``dicom_out`` writes each
    DICOM study's Secondary Captures and SR under ``out/dicom/<study>/`` (needs ``out``).
    ``fast_decode``: see :func:`screen`; an ``out`` holding results of the other decoding is
    refused unless ``restart``. ``screen_fn`` replaces :func:`screen` (``--cluster``): the same
    state and outputs, whoever scored the studies.
    """
    if dicom_out and not out:
        raise MuraError("DICOM outputs need an output folder (--out)")
    state, alias = open_state(src, engine, out, restart=restart, anonymize=anonymize,
                              fast_decode=fast_decode)
    try:
        res = (screen_fn or screen)(src, engine, progress=progress, cancel=cancel, state=state,
                                    workers=workers, alias=alias, fast_decode=fast_decode,
                                    dicom_out=Path(out) / "dicom" if dicom_out and out else None,
                                    group_by=group_by)
        return write_run(res, engine, out, state, alias)
    finally:
        state.close()
