"""Screen every study of a folder and commit each to the resumable state (Qt-free).

Every decodable image gets a score; every file that cannot be used is listed with its reason and
the run goes on. Decoding and preprocessing run in worker processes while inference runs on
OpenVINO asynchronous requests (:mod:`desktop.screening.pipeline`), so both cores stay busy.
Each study is committed to the state (:mod:`desktop.screening.state`) as soon as all its images
are scored; running again resumes: finished studies whose files are unchanged are not re-scored.
What is written from the result lives in :mod:`desktop.screening.outputs`, the command line in
:mod:`desktop.screening.cli`.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from desktop.screening.anonymize import Aliases, stored_rows
from desktop.screening.discovery import Discovery, Study, discover
from desktop.screening.pipeline import ScoredStudy, scored_studies
from desktop.screening.render import task_word
from desktop.screening.state import (
    DECODE_EXACT,
    NOT_INDICATED,
    FastDecode,
    ScreenState,
    decode_mode,
    fingerprint,
    stamp,
)
from desktop.screening.workers import Workers
from models.engine import Engine
from models.errors import ConfigError


@dataclass
class ScreenResult:
    discovery: Discovery
    results: list[ScoredStudy]
    failures: list[tuple[str, str]]
    seconds: float
    n_scored_images: int
    n_resumed: int = 0
    complete: bool = True  # False when cancelled: outputs then cover only part of the source
    export_errors: list[tuple[str, str]] = field(default_factory=list)  # (study key, reason)
    decode: str = DECODE_EXACT  # state.decode_mode: 'fast' (--fast-decode), 'fast:jpeg2000', ...

    refusals: list[tuple[str, str]] = field(default_factory=list)  # (path, why not indicated)

    @property
    def ranked(self) -> list[ScoredStudy]:
        """The worklist: scored studies most suspicious first, then failed ones; never the
        studies the model is not indicated for (:attr:`not_indicated`)."""
        scored = [r for r in self.results if r.probability is not None]
        failed = [r for r in self.results if r.probability is None and r.verdict != NOT_INDICATED]
        return sorted(scored, key=lambda r: -(r.probability or 0.0)) + failed

    @property
    def not_indicated(self) -> list[ScoredStudy]:
        return [r for r in self.results if r.verdict == NOT_INDICATED]


def _die_after() -> int | None:
    """Test hook: ``MURA_SCREEN_DIE_AFTER=N`` kills the process after N committed studies.

    It makes kill-and-resume tests deterministic; the hard ``os._exit`` skips every cleanup, as a
    power cut or SIGKILL would.
    """
    v = os.environ.get("MURA_SCREEN_DIE_AFTER", "")
    return int(v) if v.isdigit() else None


def _result_from_state(st: Study, state: ScreenState, alias: Aliases) -> ScoredStudy:
    key = alias(st.key, "study")
    real = {alias(ref.path, "file"): ref.path for ref in st.images}
    rows = state.images(key)
    srow = state.study(key)
    assert srow is not None  # finished() said it is there
    return ScoredStudy(st, srow, [(real.get(r["path"], r["path"]), r["probability"]) for r in rows
                                  if r["probability"] is not None], resumed=True)


def screen(root: str | Path, engine: Engine, progress=None, cancel=None,
           state: ScreenState | None = None, *, workers: int | Workers | None = None,
           dicom_out: str | Path | None = None, alias: Aliases | None = None,
           fast_decode: FastDecode = False, group_by: str = "auto", select: Callable[[Study], bool] | None = None,
           ) -> ScreenResult:
    """Decode, score and aggregate every study under ``root``, committing each study to ``state``.

    Studies that ``state`` already holds with unchanged source files are taken from it, not
    re-scored: that is what makes an interrupted run resumable. ``progress(done, total,
    images_done, images_total, images_worked)`` is called after each study (``images_worked``:
    images this process decoded, the basis of an honest rate); ``cancel()`` returning True stops
    early, between two studies. Without ``state`` an in-memory one is used (nothing persists).

    Decoding runs in ``workers`` processes (None: one per core, 0: in this thread, or a running
    :class:`~desktop.screening.workers.Workers` pool the caller owns) and
    inference on asynchronous requests (:mod:`desktop.screening.pipeline`); studies still come back, and
    are committed, one at a time in discovery order. With ``dicom_out``, each DICOM study's
    Secondary Captures and SR go to ``dicom_out/<study>/`` (named through ``alias``) before the
    study is committed; a study whose SR is missing there is re-scored on resume.
    ``fast_decode`` decodes JPEG 2000 / baseline JPEG at a reduced resolution; ``state`` must
    have been begun with the same decoding (:meth:`ScreenState.begin` refuses to mix them).
    ``group_by``: how plain images become studies (:func:`desktop.screening.discovery.discover`).
    ``select(study)`` False leaves a study out (--watch: its files are still being written):
    not scored; its last committed result, if any, stays listed while a PACS rewrites it.
    """
    t0 = time.time()
    decode = decode_mode(fast_decode)
    disc = discover(root, group_by)
    own_state = state is None
    state = _open_state(state, engine, root, decode)
    alias = alias or Aliases(state.salt, False)
    fps, todo = _plan(disc, state, alias, dicom_out, select)
    export_dir = None
    if dicom_out is not None:
        def export_dir(st: Study) -> Path:
            return dicom_study_dir(dicom_out, st, alias)
    card = engine.bundle.card
    studies = scored_studies(disc.studies, todo, engine, workers=workers, export_dir=export_dir,
                             card=card, word=task_word(card), fast_decode=fast_decode)
    tally = _Tally(disc.n_images)
    try:
        for i, st in enumerate(disc.studies):
            if cancel is not None and cancel():
                tally.complete = False
                break
            j, scored = next(studies)
            assert j == i
            if scored is not None:
                tally.results.append(_commit(st, scored, fps[i], state, alias, tally))
            elif state.study(alias(st.key, "study")) is not None:  # finished, or left out by select
                tally.results.append(_result_from_state(st, state, alias))
            tally.images_done += len(st.images)
            if progress is not None:
                progress(i + 1, len(disc.studies), tally.images_done, tally.images_total, tally.images_worked)
    finally:
        studies.close()
    result = _result(disc, state, alias, tally, decode, time.time() - t0)
    if own_state:
        state.close()
    return result


@dataclass
class _Tally:
    """What one :func:`screen` run has done so far."""

    images_total: int
    results: list[ScoredStudy] = field(default_factory=list)
    export_errors: list[tuple[str, str]] = field(default_factory=list)
    n_scored: int = 0
    n_committed: int = 0
    images_done: int = 0
    images_worked: int = 0
    complete: bool = True
    die_after: int | None = field(default_factory=lambda: _die_after())

    @property
    def n_resumed(self) -> int:
        return sum(r.resumed for r in self.results)


def _open_state(state: ScreenState | None, engine: Engine, root: str | Path, decode: str) -> ScreenState:
    """The caller's state, which must hold the same decoding, or an in-memory one."""
    if state is None:
        state = ScreenState(None)
        state.begin(model_id=engine.bundle.model_id, model_name=str(engine.bundle.card["name"]),
                    model_version=str(engine.bundle.card["version"]), source_root=str(root),
                    decode=decode)
    elif state.decode != decode:
        raise ConfigError(f"the state's results were decoded {state.decode!r}, this run decodes "
                          f"{decode!r}: a worklist must not mix the two")
    return state


def _plan(disc: Discovery, state: ScreenState, alias: Aliases, dicom_out: str | Path | None,
          select: Callable[[Study], bool] | None = None) -> tuple[list[str], set[int]]:
    """Each study's fingerprint, and the indices of the studies to score: those the state does
    not hold finished with the same files (and, with ``dicom_out``, with their SR written),
    among those ``select`` accepts."""
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
        if not (fp and state.finished(alias(st.key, "study"), fp) and exported) and (
                select is None or select(st)):
            todo.add(i)
    return fps, todo


def _commit(st: Study, scored: ScoredStudy, fp: str, state: ScreenState, alias: Aliases,
            tally: _Tally) -> ScoredStudy:
    """Commit one freshly scored study to the state (as --anonymize stores it)."""
    srow, rows = scored.row, scored.images
    stored, stored_images = stored_rows(srow, rows, st, alias)
    state.commit_study(stored, fp, stored_images)
    tally.n_committed += 1
    tally.n_scored += len(scored.predictions)
    tally.images_worked += scored.n_worked
    if scored.export_error:
        tally.export_errors.append((st.key, scored.export_error))
    if tally.die_after is not None and tally.n_committed >= tally.die_after:
        state.flush()  # "after N committed studies"
        os._exit(137)
    scored.row = dataclasses.replace(srow, scope=stored.scope)  # reasons as outputs show them
    return scored


def _result(disc: Discovery, state: ScreenState, alias: Aliases, tally: _Tally, decode: str,
            seconds: float) -> ScreenResult:
    """The run's result; a complete run also forgets the state's studies no longer in the folder."""
    if tally.complete:
        state.forget_except({alias(s.key, "study") for s in disc.studies})
    keys = {r.study.key for r in tally.results}
    real = {alias(ref.path, "file"): ref.path for s in disc.studies if s.key in keys for ref in s.images}
    failures = [(real[p], r) for p, r in state.failures() if p in real]
    refusals = [(real[p], r) for p, r in state.refusals() if p in real]
    return ScreenResult(disc, tally.results, failures, seconds, tally.n_scored, tally.n_resumed,
                        tally.complete, tally.export_errors, decode, refusals)


def dicom_study_dir(dicom_out: str | Path, st: Study, alias: Aliases) -> Path:
    """``dicom_out/<study>``: the study key as the worklist shows it, made safe as a folder name."""
    name = alias(st.key, "study")
    return Path(dicom_out) / "".join(c if c.isalnum() or c in "-._" else "_" for c in name)


def study_exported(folder: Path) -> bool:
    """The SR is written last, so its presence means the study's DICOM outputs are complete."""
    from desktop.screening.dicom_export import SR_NAME

    return (folder / SR_NAME).is_file()


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
