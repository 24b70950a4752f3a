"""The screening pipeline: decode in worker processes, infer asynchronously, hand studies back in order.

Decoding runs in worker processes (:mod:`desktop.screening.workers`: why processes, the memory
ceiling, the timeout), each file through :func:`desktop.screening.prepare.prepare_image`, which
returns only small arrays.

Inference runs on :class:`models.engine.AsyncRunner` (OpenVINO ``AsyncInferQueue``, THROUGHPUT
hint, the plugin's optimal number of requests). While those requests run, the workers decode the
next images: decoding, preprocessing and the report's thumbnail source are hidden behind
inference, or the other way round, whichever is slower.

:func:`scored_studies` yields the studies in discovery order, each only once every one of its
images is decoded and scored (and, with DICOM export, its Secondary Captures and SR written), so
the caller can commit study by study exactly as the sequential screener did: a killed run loses
at most the studies in flight, and cancelling between two yielded studies leaves nothing half
done. A file that fails to decode, or that crashes a worker process, becomes a failed image row
with its reason; it never stops the run.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Generator, Sequence
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from desktop.screening.discovery import Study
from desktop.screening.prepare import (
    REPORT_THUMB_SIZE,
    Prepared,
    export_not_indicated,
    export_study,
    gray_thumbnail,
    heat_thumbnail,
    prepare_image,
    prepare_to_slot,
)
from desktop.screening.slots import InputSlots, Slot
from desktop.screening.state import NOT_INDICATED, FastDecode, FileStamp, ImageRow, StudyRow, stamp
from desktop.screening.workers import DECODE_TIMEOUT_S, Workers, default_workers
from models.engine import Engine, ImagePrediction, aggregate_study
from models.errors import MuraError
from models.scope import Indications, header_refusal, prediction_refusal


@dataclass
class ScoredStudy:
    """A study after screening: the screening core's one type for it (a :class:`Study` is the
    study before). Outputs, the report and the viewer's screen dialog read it.

    ``row`` holds the verdict as the state keeps it (:class:`StudyRow`); ``image_probs`` the
    score of each scored image by its real path. A study scored by this process also carries
    its image rows, predictions and DICOM export outcome; one ``resumed`` from the state only
    the row (whose key and reasons are aliased with --anonymize: outputs alias them again, which
    changes nothing).
    """

    study: Study
    row: StudyRow
    image_probs: list[tuple[str, float]] = field(default_factory=list)
    resumed: bool = False
    images: list[ImageRow] = field(default_factory=list)
    predictions: list[ImagePrediction] = field(default_factory=list)
    n_worked: int = 0  # images this process decoded (for an honest images/s)
    exported: list[str] = field(default_factory=list)
    export_error: str | None = None

    @property
    def probability(self) -> float | None:
        return self.row.probability

    @property
    def verdict(self) -> str:
        return self.row.verdict

    @property
    def body_part(self) -> str:
        return self.row.body_part

    @property
    def n_failed(self) -> int:
        return self.row.n_failed

    @property
    def n_refused(self) -> int:
        """Images the model is not indicated for (:mod:`models.scope`)."""
        return self.row.n_refused

    @property
    def scope(self) -> str:
        """Why the study is NOT_INDICATED ("" otherwise)."""
        return self.row.scope


@dataclass
class _Job:
    study: Study
    rows: list[ImageRow | None]
    thumbs: list[np.ndarray | None]
    preds: list[ImagePrediction | None]
    waiting: int
    export: Future | None = None
    export_dir: Path | None = None

    def scored(self) -> bool:
        return self.waiting == 0

    def ready(self) -> bool:
        return self.waiting == 0 and (self.export is None or self.export.done())


def _finish(job: _Job, engine: Engine) -> ScoredStudy:
    st = job.study
    rows = [r for r in job.rows if r is not None]
    preds = [p for p in job.preds if p is not None]
    refused = [r.refused for r in rows if r.refused]
    n_failed = sum(1 for r in rows if r.error is not None)
    first = st.images[0].path if st.images else ""
    if preds:
        agg = aggregate_study(preds, engine.thresholds)
        srow = StudyRow(st.key, agg.probability, agg.body_part, agg.verdict, len(st.images),
                        n_failed, st.modality, st.description, first, n_refused=len(refused))
    else:
        # No image the model is for: "not indicated" with the first reason, never a verdict;
        # a study whose every image failed to decode stays "failed"
        srow = StudyRow(st.key, None, "", NOT_INDICATED if refused else "failed", len(st.images),
                        n_failed, st.modality, st.description, first, n_refused=len(refused),
                        scope=refused[0] if refused else "")
    probs = [(r.stamp.path, r.probability) for r in rows if r.probability is not None]
    out = ScoredStudy(st, srow, probs, images=rows, predictions=preds, n_worked=len(st.images))
    if job.export is not None:
        try:
            out.exported = job.export.result()
        except BrokenProcessPool:
            out.export_error = "the worker process writing the DICOM outputs died"
        except MuraError as e:
            out.export_error = str(e)
        except (OSError, ValueError) as e:
            out.export_error = f"cannot write the DICOM outputs ({e})"
        except Exception as e:  # noqa: BLE001 - an export bug must not cost the scores
            out.export_error = f"cannot write the DICOM outputs ({type(e).__name__}: {e})"
    return out


def scored_studies(studies: Sequence[Study], todo: set[int], engine: Engine, *,
                   workers: int | Workers | None = None,
                   export_dir: Callable[[Study], Path | None] | None = None,
                   card: dict | None = None, word: str = "fracture",
                   fast_decode: FastDecode = False, decode_timeout: float = DECODE_TIMEOUT_S,
                   ) -> Generator[tuple[int, ScoredStudy | None], None, None]:
    """Yield ``(index, ScoredStudy)`` for the studies in ``todo`` and ``(index, None)`` for the
    others (the caller takes those from its state), strictly in the order of ``studies``.

    ``workers``: decode processes (None: one per core; 0: decode in this thread, inference still
    asynchronous), or a :class:`Workers` pool its owner keeps running between calls (a node or a
    watched folder screens study after study: starting fresh worker processes for each cost
    ~0.3 s of CPU per worker) and closes itself. ``export_dir(study)``: where to write the study's DICOM SC/SR, or None to
    skip it. ``fast_decode``: reduced-resolution JPEG 2000 / JPEG decoding (see
    :func:`prepare_image`). Closing the generator (the caller cancelled) drops work in flight
    and stops the workers; nothing of an unfinished study is yielded.
    """
    shared = isinstance(workers, Workers)
    pool = workers if isinstance(workers, Workers) else Workers(default_workers() if workers is None else workers)
    s = _Scheduler(engine, pool, card or engine.bundle.card, word, fast_decode, decode_timeout,
                   owns_pool=not shared)
    for i in sorted(todo):
        st = studies[i]
        s.add(i, st, export_dir(st) if export_dir is not None and st.is_dicom else None)
    try:
        for i in range(len(studies)):
            if i not in s.jobs:
                yield i, None
                continue
            s.run_until_ready(i)
            yield i, _finish(s.jobs.pop(i), engine)
    finally:
        s.close()


class _Scheduler:
    """The state of one :func:`scored_studies` run: the decode feed, the files in flight, the
    asynchronous inference, each study's job. Files are decoded ahead of the study being
    finished (a window of twice the workers plus the inference requests) so that decoding,
    preprocessing and inference overlap."""

    def __init__(self, engine: Engine, pool: Workers, card: dict, word: str, fast_decode: FastDecode,
                 decode_timeout: float, owns_pool: bool = True) -> None:
        self.engine, self.pool, self.card, self.word = engine, pool, card, word
        self.owns_pool = owns_pool
        self.fast_decode, self.decode_timeout = fast_decode, decode_timeout
        self.runner = engine.async_runner()
        self.indications = Indications.from_card(engine.bundle.card)
        self.jobs: dict[int, _Job] = {}
        self.feed: deque[tuple[int, int, str]] = deque()
        self.inflight: deque[tuple[int, int, str, Future]] = deque()
        self.window = max(2, 2 * pool.n) + self.runner.n_requests  # decoded inputs ahead of inference
        # worker processes write the model inputs into shared slots, one per file in flight
        size = int(engine.cfg.input_size)
        self.slots = InputSlots(self.window, (1, size, size)) if pool.n else None
        self.slot_of: dict[tuple[int, int], Slot] = {}

    def add(self, i: int, st: Study, export_dir: Path | None) -> None:
        """Queue a study's files; those its header already refuses are never decoded."""
        n = len(st.images)
        job = self.jobs[i] = _Job(st, [None] * n, [None] * n, [None] * n, n, export_dir=export_dir)
        for k, ref in enumerate(st.images):
            refusal = None if ref.header is None else header_refusal(ref.header, self.indications)
            if refusal is None:
                self.feed.append((i, k, ref.path))
                continue
            try:
                job.rows[k] = ImageRow(stamp(ref.path), refused=refusal.reason)
            except OSError as e:
                job.rows[k] = ImageRow(FileStamp(ref.path, -1, -1), error=f"cannot read file ({e})")
            job.waiting -= 1
        self.maybe_export(job)  # every image refused by its header: nothing to decode

    def submit(self, i: int, k: int, path: str) -> Future:
        """Decode file ``k`` of study ``i`` in a worker; its input comes back through the file's
        slot (kept when the file is submitted again after its worker died)."""
        slot = self.slot_of.get((i, k))
        if slot is None and self.slots is not None:
            slot = self.slots.take()
            if slot is not None:
                self.slot_of[(i, k)] = slot
        args = (path, self.engine.cfg, REPORT_THUMB_SIZE, self.fast_decode)
        if slot is None:
            return self.pool.submit(prepare_image, *args)
        return self.pool.submit(prepare_to_slot, slot, prepare_image, *args)

    def release(self, i: int, k: int, pr: Prepared | None = None) -> np.ndarray | None:
        """Free file ``(i, k)``'s slot; with ``pr``, its model input (from the slot or the pipe)."""
        slot = self.slot_of.pop((i, k), None)
        x = pr.x if pr is not None else None
        if pr is not None and pr.slot is not None and pr.slot == slot and self.slots is not None:
            x = self.slots.read(slot)
        if slot is not None and self.slots is not None:
            self.slots.give(slot)
        return x

    def run_until_ready(self, i: int) -> None:
        """Feed, decode and infer until study ``i`` is scored (and exported)."""
        job = self.jobs[i]
        while not job.ready():
            while self.feed and len(self.inflight) < self.window:
                a, b, path = self.feed.popleft()
                self.inflight.append((a, b, path, self.submit(a, b, path)))
            self.absorb(self.runner.completed())
            if job.ready():
                break
            if self.inflight and (not job.scored() or self.inflight[0][3].done() or self.runner.pending == 0):
                self.handle(*self.inflight.popleft())
            elif self.runner.pending:
                self.absorb(self.runner.wait())
            elif job.export is not None:
                job.export.exception()  # block until the export is written (or failed)
            else:  # every image is accounted for, so this cannot happen: fail loudly
                raise MuraError(f"screening pipeline stalled on study #{i + 1}")

    def absorb(self, done: list) -> None:
        """Inference results: a score, or a refusal when the body part is not one trained for."""
        for (i, k), pred in done:
            job = self.jobs[i]
            row = job.rows[k]
            assert row is not None
            row.body_part = pred.body_part
            refusal = prediction_refusal(pred.body_part_probs, self.indications)
            if refusal is None:
                job.preds[k] = pred
                row.probability = float(pred.probability)
                row.thumbnail = heat_thumbnail(job.thumbs[k], pred)
            else:  # the model does not recognise a trained body part: its score means nothing
                row.refused = refusal.reason
                row.thumbnail = gray_thumbnail(job.thumbs[k])
            job.thumbs[k] = None
            job.waiting -= 1
            self.maybe_export(job)

    def maybe_export(self, job: _Job) -> None:
        """Once a DICOM study is scored, write its SC + SR (or the SR of a study not indicated)
        in a worker, so the next files keep decoding meanwhile."""
        if job.waiting or job.export_dir is None or job.export is not None:
            return
        images = job.study.images
        sources = [(ref.path, p) for ref, p in zip(images, job.preds, strict=True)
                   if p is not None and ref.kind == "dicom"]
        refused = [(ref.path, row.refused) for ref, row in zip(images, job.rows, strict=True)
                   if row is not None and row.refused and ref.kind == "dicom"]
        if not sources and refused:  # not indicated: the PACS still gets an SR saying why
            job.export = self.pool.submit(export_not_indicated, [p for p, _ in refused], refused[0][1],
                                          self.card, str(job.export_dir), self.word)
        if not sources:
            return
        preds = [p for p in job.preds if p is not None]
        job.export = self.pool.submit(export_study, sources, aggregate_study(preds, self.engine.thresholds),
                                      self.card, str(job.export_dir), self.word)

    def handle(self, i: int, k: int, path: str, fut: Future) -> None:
        """A decoded file, or its worker's timeout or death."""
        try:
            pr: Prepared = fut.result(timeout=self.decode_timeout if self.pool.n else None)
        except TimeoutError:
            # A decoder that never returns would stall the whole run: fail this file, replace
            # the workers, and hand the other files in flight to the new ones
            others = [(a, b, c) for a, b, c, _ in self.inflight]
            self.inflight.clear()
            self.pool.kill()
            self.fail(i, k, path, self._too_slow())
            self.inflight.extend((a, b, c, self.submit(a, b, c)) for a, b, c in others)
            return
        except BrokenProcessPool:
            self.retry_alone([(i, k, path)] + [(a, b, c) for a, b, c, _ in self.inflight])
            return
        self.accept(i, k, pr)

    def retry_alone(self, suspects: list[tuple[int, int, str]]) -> None:
        """A decoder crashed its process (or the OS, or the memory ceiling, ended it) and every
        task in flight died with it. Retry those one at a time in a fresh pool: the file that
        crashes alone is the culprit and fails with the reason; the others decode as usual."""
        self.inflight.clear()
        self.pool.restart()
        for a, b, c in suspects:
            try:
                self.accept(a, b, self.submit(a, b, c).result(timeout=self.decode_timeout))
            except BrokenProcessPool:
                reason = self.pool.death_reason()
                self.pool.restart()
                self.fail(a, b, c, reason)
            except TimeoutError:
                self.pool.kill()
                self.fail(a, b, c, self._too_slow())

    def _too_slow(self) -> str:
        return f"decoding took longer than {self.decode_timeout:g} s: stopped (its worker was replaced)"

    def accept(self, i: int, k: int, pr: Prepared) -> None:
        """A worker's result: refused, failed, or a model input sent to inference."""
        job = self.jobs[i]
        x = self.release(i, k, pr)
        if pr.refused is not None or pr.error is not None or x is None or pr.placement is None:
            job.rows[k] = (ImageRow(pr.stamp, refused=pr.refused, thumbnail=gray_thumbnail(pr.thumb))
                           if pr.refused is not None else ImageRow(pr.stamp, error=pr.error or "cannot decode"))
            job.waiting -= 1
            self.maybe_export(job)
            return
        job.rows[k] = ImageRow(pr.stamp)
        job.thumbs[k] = pr.thumb
        self.runner.submit(x, pr.placement, (i, k))

    def fail(self, i: int, k: int, path: str, reason: str) -> None:
        self.release(i, k)
        try:
            fs = stamp(path)
        except OSError:
            fs = FileStamp(path, -1, -1)
        self.jobs[i].rows[k] = ImageRow(fs, error=reason)
        self.jobs[i].waiting -= 1
        self.maybe_export(self.jobs[i])

    def close(self) -> None:
        """Drop the work in flight; no inference callback may run after the caller moved on.
        A shared pool keeps running: a file a worker already started is decoded and dropped."""
        for *_, fut in self.inflight:
            fut.cancel()
        self.runner.wait()
        if self.slots is not None:
            self.slots.close()
        if self.owns_pool:
            self.pool.close()
