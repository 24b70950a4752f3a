"""What one cluster task does: score a batch of studies with the worker's one engine (no dask here).

A ``--cluster`` run (:mod:`desktop.screening.cluster`) sends each worker batches of studies;
a worker runs them through the very pipeline a single PC runs
(:func:`desktop.screening.pipeline.scored_studies`: decode, scope checks, asynchronous
inference, aggregation, DICOM export) and sends back only what the client commits: each study's
:class:`StudyRow` and :class:`ImageRow` list (thumbnails included), never the CAMs or pixels.
The client alone writes the state, so a batch that runs twice (its worker was lost after it
started) just replaces the same rows.

This module imports no cluster library, so it is as easy to test as the rest of the core; the
Dask worker plugin that preloads the engine is :mod:`desktop.screening.cluster_worker`.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

from desktop.screening.discovery import Study
from desktop.screening.pipeline import scored_studies
from desktop.screening.render import task_word
from desktop.screening.state import FastDecode, ImageRow, StudyRow
from models.engine import Engine
from models.errors import BundleError


@dataclass(frozen=True)
class EngineSpec:
    """The engine every worker builds once: the bundle by path (each worker machine must see it
    at that path) and the model id the client's bundle has, which the worker's must match."""

    bundle: str
    model_id: str
    device: str = "CPU"
    backend: str = "openvino"
    num_threads: int | None = None  # inference threads: a share of the cores with local:N


@dataclass
class Batch:
    """Studies for one task, by their index in the client's discovery. Patient identifiers are
    stripped before sending (a worker needs paths and headers, not names), and ``repr`` names
    no path: a worker that logs its task must not log a patient's folder."""

    engine: EngineSpec
    indices: list[int]
    studies: list[Study]
    export_dirs: list[str | None]
    fast_decode: FastDecode = False

    @property
    def n_images(self) -> int:
        return sum(len(s.images) for s in self.studies)

    def __repr__(self) -> str:
        return f"Batch({len(self.studies)} studies, {self.n_images} images)"


@dataclass
class ClusterStudy:
    """One study as a worker scored it and the client commits it (named apart from the viewer's
    StudyOutcome: this one carries worklist rows, not pixels)."""

    index: int
    row: StudyRow
    images: list[ImageRow]
    n_worked: int
    export_error: str | None = None
    exported: list[str] = field(default_factory=list)
    n_scored: int = 0  # images with a score (their predictions stay on the worker)


@dataclass
class BatchResult:
    """A task's answer: the outcomes, or the error that stopped the whole batch (sent as data,
    not raised, so that the worker's log never prints a traceback with the task's paths)."""

    model_id: str
    outcomes: list[ClusterStudy]
    error: str | None = None
    worker: str = ""

    def __repr__(self) -> str:
        return f"BatchResult({len(self.outcomes)} studies, error={self.error is not None})"


_engines: dict[EngineSpec, Engine] = {}
_lock = threading.Lock()


def worker_engine(spec: EngineSpec) -> Engine:
    """This process's engine for ``spec``, built on first use and kept: compiling a model takes
    seconds, a batch should not pay it. A bundle that is not the client's is refused, since its
    scores would be ranked among the client's model's."""
    with _lock:
        engine = _engines.get(spec)
        if engine is None:
            engine = Engine(spec.bundle, backend=spec.backend, device=spec.device,
                            performance_hint="THROUGHPUT", num_threads=spec.num_threads)
            if engine.bundle.model_id != spec.model_id:
                raise BundleError(
                    f"{spec.bundle}: on this worker that bundle is model {engine.bundle.model_id}, "
                    f"the client's is {spec.model_id}; every worker needs the same bundle at the same path")
            _engines[spec] = engine
        return engine


def _crash_hook(batch: Batch) -> None:
    """Test hook: ``MURA_CLUSTER_CRASH_ON=TEXT`` ends the worker process (as a decoder crash
    would) when a study of the batch has a file whose path contains TEXT."""
    text = os.environ.get("MURA_CLUSTER_CRASH_ON", "")
    if text and any(text in ref.path for st in batch.studies for ref in st.images):
        os._exit(70)


def screen_batch(batch: Batch, worker: str = "") -> BatchResult:
    """Score every study of ``batch`` (runs on a cluster worker, decoding in its thread: a worker
    process is the unit of parallelism there, and Dask's worker processes may not have children).
    """
    _crash_hook(batch)
    try:
        engine = worker_engine(batch.engine)
        card = engine.bundle.card
        dirs = {st.key: d for st, d in zip(batch.studies, batch.export_dirs, strict=True)}

        def export_dir(st: Study) -> Path | None:
            d = dirs.get(st.key)
            return None if d is None else Path(d)

        studies = scored_studies(batch.studies, set(range(len(batch.studies))), engine, workers=0,
                                 export_dir=export_dir, card=card, word=task_word(card),
                                 fast_decode=batch.fast_decode)
        outcomes = []
        try:
            for k, scored in studies:
                assert scored is not None  # every study of a batch is to be scored
                outcomes.append(ClusterStudy(batch.indices[k], scored.row, scored.images,
                                             scored.n_worked, scored.export_error, scored.exported,
                                             len(scored.predictions)))
        finally:
            studies.close()
        return BatchResult(engine.bundle.model_id, outcomes, worker=worker)
    except Exception as e:  # noqa: BLE001 - reported to the client as data (see BatchResult)
        return BatchResult("", [], f"{type(e).__name__}: {e}", worker=worker)
