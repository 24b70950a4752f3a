"""What the viewer has opened and what its workers are doing: the open-and-load state machine.

:class:`StudyLoader` finds studies, decodes and scores them, and loads the model, each on a
worker (:class:`desktop.viewer.tasks.Task`); it holds what they produce (the studies found, the
analysed studies, the one being decoded image by image, the engine) and says by signals what
changed. It has no widgets: what the reader sees is decided by the window, which connects to
these signals, so the order in which results may arrive (a preview, then the full image; the
model before or after the study) is handled in one place and tested through the window.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path

from PySide6.QtCore import QObject, QThreadPool, Signal

from desktop.screening.discovery import Discovery, Study
from desktop.viewer.resolution import FullResolution, decode_full, reduced_side_hint, stand_ins
from desktop.viewer.studies import (
    DecodedImage,
    DicomExport,
    StudyOutcome,
    analyse_study,
    compute_heatmaps,
    discover_paths,
    load_engine,
    score_outcome,
    scoring_side,
    unscored,
)
from desktop.viewer.tasks import Task
from models.engine import Engine, StudyPrediction
from models.reduction import Reduction

#: How many analysed studies keep their decoded pixels in memory (an LRU); older ones are
#: decoded again when revisited. Radiographs are up to ~3000x3000 float32, twice (pixels and
#: modality values), plus their stored integers, so a few dozen would already cost gigabytes.
CACHE_STUDIES = 12


class StudyLoader(QObject):
    """Studies opened, analysed and cached; the model loaded; the tasks doing it.

    Tasks run one at a time on one thread (one engine, one infer request), except the model
    load, which gets its own thread: compiling a model takes seconds, and studies are decoded
    and shown meanwhile instead of queueing behind it. Every signal is emitted on the thread
    that owns the loader (the GUI thread), in the order the results arrive.
    """

    task_started = Signal(str)  # tag
    progress = Signal(int, int, str)  # done, total, message
    discovered = Signal(object)  # Discovery (``studies`` is already set)
    layout_ready = Signal(str, object)  # key, StudyOutcome of pending images (decoding began)
    image_decoded = Signal(str, int, object, object)  # key, index, ViewImage, the one replaced
    outcome_ready = Signal(object, str, bool)  # StudyOutcome, task tag, was it being decoded
    engine_loaded = Signal(object, str)  # Engine or None, error ("" when loaded)
    dicom_exported = Signal(object)  # DicomExport
    failed = Signal(str, str, str)  # task kind ("discover", "study", ...), study key or "", error
    idle = Signal()  # no task left

    def __init__(self, engine: Engine | None, model_error: str, parent: QObject) -> None:
        super().__init__(parent)
        self.engine = engine
        self.model_error = model_error
        self.engine_loading = ""  # "name on DEVICE" while a model loads, else ""
        self._loading_side: Reduction | None = None  # the loading model's validated reduced decode
        self.studies: list[Study] = []
        self.outcomes: OrderedDict[str, StudyOutcome] = OrderedDict()
        self.summaries: dict[str, StudyPrediction | None] = {}
        self.current_key: str | None = None  # the study shown (never evicted from the cache)
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(1)  # one engine, one infer request: run tasks in order
        self._engine_pool = QThreadPool(self)
        self._engine_pool.setMaxThreadCount(1)
        self._engine_tag: str | None = None  # the model load in flight (the latest asked for)
        # a model load asked for but held back until the first image is on screen
        self._deferred: tuple[str, str, Callable[..., Engine] | None] | None = None
        self._tasks: dict[str, tuple[Task, str]] = {}  # tag -> (task, study key or "")
        # studies being decoded: key -> (tag of the task, outcome filled in image by image)
        self._live: dict[str, tuple[str, StudyOutcome]] = {}
        self._tag_counter = itertools.count(1)

    # -- state ------------------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        return bool(self._tasks) or self._deferred is not None

    def study(self, key: str) -> Study | None:
        return next((s for s in self.studies if s.key == key), None)

    def live_outcome(self, key: str) -> StudyOutcome | None:
        """The outcome of ``key`` while it is decoded (some images still pending), else None."""
        live = self._live.get(key)
        return live[1] if live is not None else None

    def shown_outcome(self) -> StudyOutcome | None:
        """The current study: analysed, or still being decoded (then some images are pending)."""
        if not self.current_key:
            return None
        out = self.outcomes.get(self.current_key)
        return out if out is not None else self.live_outcome(self.current_key)

    @property
    def shown_decoding(self) -> bool:
        """The current study is still being decoded (its outcome is partial, without scores)."""
        key = self.current_key
        return key is not None and key not in self.outcomes and self.live_outcome(key) is not None

    def score_side(self) -> Reduction | None:
        """How to decode studies for scoring: the reduced decode the card of the
        model in use (or on its way) validated; None: decode exactly, as without a model."""
        return self._loading_side if self.engine_loading else scoring_side(self.engine)

    def is_running(self, task: Task) -> bool:
        return any(t is task for t, _key in self._tasks.values())

    def awaits_scores(self, outcome: StudyOutcome) -> bool:
        """Decoded but not (or no longer) scored while a model is there or on its way."""
        return (outcome.scored_by is None and (self.engine is not None or bool(
            self.engine_loading)) and any(v.image is not None for v in outcome.images))

    # -- starting work ----------------------------------------------------------------------
    def start(self, kind: str, key: str, fn: Callable[..., object], *args: object,
              on_task: Callable[[Task], None] | None = None, partial: bool = False,
              pool: QThreadPool | None = None) -> Task:
        """Run ``fn(*args)`` as a task tagged ``kind:N`` for study ``key`` (or "")."""
        tag = f"{kind}:{next(self._tag_counter)}"
        # a worker waits (briefly) for each partial result to be shown before it goes on
        task = Task(tag, fn, *args, partial=partial, partial_wait_s=2.0 if partial else 0.0)
        s = task.signals
        s.progress.connect(self._on_task_progress)
        s.partial.connect(self._on_task_partial)
        s.result.connect(self._on_task_result)
        s.errored.connect(self._on_task_error)
        s.finished.connect(self._on_task_finished)
        if on_task is not None:
            on_task(task)  # before the pool runs it: no signal can be missed
        self._tasks[tag] = (task, key)
        self.task_started.emit(tag)
        (pool or self._pool).start(task)
        return task

    def open_paths(self, paths: Sequence[str | Path]) -> None:
        """Forget the studies open so far (cancelling their work, but not a model that is
        loading) and look for the studies under ``paths``; ``discovered`` reports them."""
        for tag, (task, _key) in list(self._tasks.items()):
            if not tag.startswith("engine:"):
                task.cancel()
        self.studies = []
        self.outcomes.clear()
        self.summaries.clear()
        self._live.clear()
        self.current_key = None
        self.start("discover", "", discover_paths, [str(p) for p in paths])

    def select(self, key: str) -> StudyOutcome | None:
        """Make ``key`` the current study, cancelling the work on any other; its analysed
        outcome if it is cached (then it is the most recently used), else None."""
        self.current_key = key
        for task, tkey in self._tasks.values():
            if tkey and tkey != key:
                task.cancel()
        out = self.outcomes.get(key)
        if out is not None:
            self.outcomes.move_to_end(key)
            self.complete_resolution(key)
        return out

    def decode(self, study: Study, preview_side: int | None) -> StudyOutcome | None:
        """Decode (and score, with a model) ``study`` unless that is under way; returns what is
        decoded of it so far when it is (None: nothing yet, or it was started now)."""
        key = study.key
        if any(tkey == key and not task.is_cancelled for task, tkey in self._tasks.values()):
            return self.live_outcome(key)
        self._live.pop(key, None)
        self.start("study", key, functools.partial(analyse_study, preview_side=preview_side,
                                                   score_side=self.score_side()),
                   study, self.engine, partial=True)
        return None

    def complete_resolution(self, key: str) -> bool:
        """Decode in full, on the worker, the images of the analysed study ``key`` that are
        still shown from the reduced decode they were scored from (:mod:`desktop.viewer.resolution`).
        Not while its scores are awaited: they come first. True if that started."""
        out = self.outcomes.get(key)
        if out is None or self.awaits_scores(out) or not stand_ins(out):
            return False
        if any(tkey == key and tag.startswith("full:") and not task.is_cancelled
               for tag, (task, tkey) in self._tasks.items()):
            return False
        self.start("full", key, decode_full, key, stand_ins(out), partial=True)
        return True

    def score(self, key: str, done_tag: str = "") -> bool:
        """Score the cached (decoded) study ``key`` on the worker, unless that is under way
        (``done_tag``: the task whose result is being handled, finished but still listed).
        True if scoring started."""
        if self.engine is None or key not in self.outcomes:
            return False
        if any(tkey == key and not task.is_cancelled and tag != done_tag
               and tag.split(":")[0] in ("study", "score")
               for tag, (task, tkey) in self._tasks.items()):
            return False
        self.start("score", key, score_outcome, self.outcomes[key], self.engine)
        return True

    # -- the model --------------------------------------------------------------------------
    def load_model(self, path: str | Path, device: str,
                   factory: Callable[..., Engine] | None = None, *,
                   defer: bool = False) -> Task | None:
        """Load a bundle on the model thread; a newer call supersedes one still loading.
        ``engine_loaded`` reports (the engine, or None and the error).

        ``defer``: only record the request (the model counts as loading, so studies decoded
        meanwhile await its scores) and start it at :meth:`start_deferred_model`. Why: at
        start-up, compiling a model takes both cores for a second or more, exactly while the
        first image is decoded; the reader sees the image sooner if the compile waits for it.
        Returns the task, or None when deferred.
        """
        if self._engine_tag is not None and self._engine_tag in self._tasks:
            self._tasks[self._engine_tag][0].cancel()
        self.engine_loading = f"{Path(path).name} on {device}"
        self._loading_side = reduced_side_hint(path)
        if defer:
            self._deferred = (str(path), device, factory)
            return None
        self._deferred = None
        task = self.start("engine", "", functools.partial(load_engine, factory=factory),
                          str(path), device, pool=self._engine_pool)
        self._engine_tag = task.tag
        return task

    def start_deferred_model(self) -> Task | None:
        """Start the model load held back by ``load_model(..., defer=True)``, if any."""
        if self._deferred is None:
            return None
        path, device, factory = self._deferred
        return self.load_model(path, device, factory)

    def set_engine(self, engine: Engine | None, error: str) -> None:
        """Swap the engine: results of the old model are dropped (to be scored again); decoded
        images are kept (a study is never decoded twice for a model change)."""
        self.engine, self.model_error = engine, error
        self.engine_loading = ""
        for tag, (task, _key) in self._tasks.items():
            if tag.startswith(("score:", "heat:")):
                task.cancel()  # results of the old model
        self.outcomes = OrderedDict(
            (k, unscored(o) if o.scored_by is not None else o) for k, o in self.outcomes.items())
        self.summaries.clear()
        if self.current_key:
            self.complete_resolution(self.current_key)  # no scores to wait for any more

    def shutdown(self, timeout_ms: int = 10000) -> None:
        """Cancel and wait for the workers, so no signal reaches a destroyed window."""
        self._deferred = None
        for task, _key in list(self._tasks.values()):
            task.cancel()
        self._pool.waitForDone(timeout_ms)
        self._engine_pool.waitForDone(timeout_ms)

    # -- task callbacks (GUI thread, queued) ------------------------------------------------
    def _on_task_progress(self, tag: str, done: int, total: int, message: str) -> None:
        entry = self._tasks.get(tag)
        if entry is None or entry[0].is_cancelled:
            return
        self.progress.emit(done, total, message)

    def _on_task_result(self, tag: str, res: object) -> None:
        entry = self._tasks.get(tag)
        if entry is None or entry[0].is_cancelled:
            return  # superseded (another folder opened) while the result was queued
        if isinstance(res, Engine):
            if tag == self._engine_tag:
                self._engine_tag = None
                self.engine_loaded.emit(res, "")
        elif isinstance(res, DicomExport):
            self.dicom_exported.emit(res)
        elif isinstance(res, Discovery):
            self.studies = res.studies
            self.discovered.emit(res)
        elif isinstance(res, StudyOutcome):
            self._on_outcome(res, tag)
        elif isinstance(res, FullResolution):
            out = self.outcomes.get(res.key)
            if out is not None and out.prediction is not None and not stand_ins(out):
                self.start("heat", f"heat:{res.key}", compute_heatmaps, out)

    def _on_task_error(self, tag: str, message: str) -> None:
        task, key = self._tasks.get(tag, (None, ""))
        if task is None or task.is_cancelled:
            return
        self.failed.emit(tag.split(":")[0], key, message)
        if tag.startswith("engine:") and tag == self._engine_tag:
            self._engine_tag = None
            self.engine_loaded.emit(None, message)

    def _on_task_partial(self, tag: str, obj: object) -> None:
        """A study's layout, then each image as soon as the worker has decoded it."""
        task, key = self._tasks.get(tag, (None, ""))
        if task is None:
            return
        try:
            if not task.is_cancelled and key:
                self._take_partial(tag, key, obj)
        finally:
            task.partial_taken()  # on screen: the worker may decode the next image

    def _take_partial(self, tag: str, key: str, obj: object) -> None:
        if tag.startswith("full:"):
            self._take_full(key, obj)
            return
        if isinstance(obj, StudyOutcome):
            self._live[key] = (tag, obj)
            self.layout_ready.emit(key, obj)
            return
        if not isinstance(obj, DecodedImage):
            return
        live = self._live.get(key)
        if live is None or live[0] != tag:
            return
        images = live[1].images
        replaced, images[obj.index] = images[obj.index], obj.view
        self.image_decoded.emit(key, obj.index, obj.view, replaced)

    def _take_full(self, key: str, obj: object) -> None:
        """A full decode replaces the reduced one in the analysed study; the image keeps the
        scores it was given (from the validated reduced decode)."""
        out = self.outcomes.get(key)
        if out is None or not isinstance(obj, DecodedImage):
            return
        old = out.images[obj.index]
        if not old.preview or old.ref.path != obj.view.ref.path:
            return  # replaced meanwhile (e.g. a model that scores full decodes only)
        new = dataclasses.replace(obj.view, prediction=old.prediction, refused=old.refused)
        out.images[obj.index] = new
        self.image_decoded.emit(key, obj.index, new, old)

    def _on_task_finished(self, tag: str) -> None:
        _task, key = self._tasks.pop(tag, (None, ""))
        if key in self._live and self._live[key][0] == tag:
            del self._live[key]  # cancelled midway: the partial study is dropped
        if not self._tasks:
            self.idle.emit()

    def _on_outcome(self, outcome: StudyOutcome, tag: str) -> None:
        key = outcome.study.key
        if outcome.scored_by is not None and outcome.scored_by is not self.engine:
            outcome = unscored(outcome)  # the model changed meanwhile: its scores are stale
        live = self._live.pop(key, None)
        was_live = live is not None and key not in self.outcomes
        self.outcomes[key] = outcome
        self.outcomes.move_to_end(key)
        while len(self.outcomes) > CACHE_STUDIES:
            old = next(iter(self.outcomes))
            if old == self.current_key:
                self.outcomes.move_to_end(old)
                continue
            del self.outcomes[old]
        self.summaries[key] = outcome.prediction
        if self.complete_resolution(key):
            pass  # the full images first; their heatmaps after them (FullResolution)
        elif outcome.prediction is not None:
            # heatmaps after the scores, in the background; cancelled with the study
            self.start("heat", f"heat:{key}", compute_heatmaps, outcome)
        self.outcome_ready.emit(outcome, tag, was_live)
