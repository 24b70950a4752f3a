"""``mura-screen FOLDER --cluster ADDRESS | local:N``: an archive larger than one PC, on Dask.

Why Dask distributed, not a home-made farm: its scheduler already knows which worker holds which
task, notices a worker that died (or whose machine did) and hands that worker's tasks to another,
restarts crashed workers through their nannies, and runs the same on a laptop (``local:N``: a
``LocalCluster`` on loopback) and on a hospital's machines (``ADDRESS`` of a running scheduler).

The split of work: this process (the client) discovers the studies, plans what the state does
not already hold (:func:`desktop.screening.run._plan`, as a single PC does), and sends batches of
studies to the workers, at most a few per worker ahead (:func:`screen_on_cluster`). Each worker
builds its engine once (:mod:`desktop.screening.cluster_worker`) and runs every batch through
the same screening pipeline as a single PC (:mod:`desktop.screening.cluster_tasks`). The client
commits each returned study to the same state, in the same batched transactions, and the outputs
are the same worklist, failures and report: per study the work is idempotent, so a task that
runs twice (its worker was lost) replaces the same rows, and a client that is stopped resumes
like any run. The single-PC path never imports this module's cluster library: ``dask`` is the
optional extra ``mura-fracture[cluster]``, imported only here, by name at run time
(:func:`_dask`).

Every worker must see the source folder, the bundle (and ``--out`` for ``--dicom-out``) at the
same paths as the client: a shared file system. Dask's traffic is not encrypted unless its TLS
settings are configured: file paths cross the network, patient names do not (they are stripped
from the studies before sending).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import logging
import os
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from desktop.screening.anonymize import Aliases
from desktop.screening.cluster_tasks import Batch, BatchResult, ClusterStudy, EngineSpec
from desktop.screening.discovery import Discovery, Study, discover
from desktop.screening.outputs import ScreenFn
from desktop.screening.pipeline import ScoredStudy
from desktop.screening.run import (
    ScreenResult,
    _commit,
    _open_state,
    _plan,
    _result,
    _result_from_state,
    _Tally,
    dicom_study_dir,
)
from desktop.screening.state import (
    FastDecode,
    FileStamp,
    ImageRow,
    ScreenState,
    StudyRow,
    decode_mode,
    stamp,
)
from models.engine import Engine
from models.errors import BundleError, ConfigError, MuraError

LOCAL = "local:"
#: Images per task: enough that a task's overhead (scheduling, pickling, a fresh inference
#: queue) is small beside its work, few enough that a lost worker costs little to redo.
DEFAULT_BATCH_IMAGES = 64
#: Batches in flight per worker thread: the next one is already there when one finishes.
AHEAD_PER_THREAD = 3
#: Memory of one ``local:N`` worker process: the engine, plus one decode within the single-PC
#: screener's per-worker ceiling (:data:`desktop.screening.workers.WORKER_MEMORY_BYTES`). Its
#: nanny ends a worker that passes it, so a runaway decoder costs its study, not the PC's memory.
LOCAL_WORKER_MEMORY = 4 * 2**30


def _dask(module: str) -> Any:
    """``module`` (Dask's, or our worker module, which imports Dask), imported by name at run
    time. Why by name: PyInstaller follows every static import, those inside functions too, and
    the frozen clinic app must not carry Dask; there, ``--cluster`` says what to install."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ConfigError("--cluster needs Dask distributed, the optional extra: "
                          "pip install 'mura-fracture[cluster]'") from e


@dataclass(frozen=True)
class ClusterSpec:
    """Where to run: ``local`` workers on this PC, or a running scheduler's ``address`` (or the
    scheduler file a Dask deployment writes)."""

    address: str = ""
    local: int = 0
    scheduler_file: str = ""


def parse_cluster(text: str) -> ClusterSpec:
    """``local:N`` (N worker processes on loopback), ``tcp://host:port`` / ``tls://…`` /
    ``host:port`` (a running scheduler), or a scheduler ``.json`` file."""
    text = text.strip()
    if text.startswith(LOCAL):
        n = text[len(LOCAL):]
        if not n.isdigit() or int(n) < 1:
            raise ConfigError(f"--cluster {text}: expected local:N with N >= 1 worker processes")
        return ClusterSpec(local=int(n))
    if text.endswith(".json"):
        if not Path(text).is_file():
            raise ConfigError(f"--cluster {text}: no such scheduler file")
        return ClusterSpec(scheduler_file=text)
    if not text or (":" not in text.split("://")[-1]):
        raise ConfigError(f"--cluster {text!r}: expected local:N, a scheduler address "
                          "(tcp://host:port) or a scheduler file (.json)")
    return ClusterSpec(address=text if "://" in text else f"tcp://{text}")


def local_inference_threads(n_workers: int) -> int:
    """A local worker's share of the cores: N engines each using every core would fight."""
    return max(1, (os.cpu_count() or 1) // max(1, n_workers))


@contextmanager
def open_cluster(spec: ClusterSpec) -> Iterator[Any]:
    """A connected ``distributed.Client`` (and, for ``local:N``, its cluster), closed on exit.

    A local cluster listens on 127.0.0.1 only (its scheduler's HTTP endpoints on a free port:
    two runs on one PC must not collide on Dask's default 8787), and Dask's log lines stay off
    the terminal (:func:`_route_dask_logs`).
    """
    dd = _dask("dask.distributed")
    Client, LocalCluster = dd.Client, dd.LocalCluster
    _route_dask_logs()
    cluster = None
    try:
        if spec.local:
            cluster = LocalCluster(n_workers=spec.local, threads_per_worker=1, processes=True,
                                   host="127.0.0.1", dashboard_address="127.0.0.1:0",
                                   memory_limit=LOCAL_WORKER_MEMORY, silence_logs=logging.ERROR)
            client = Client(cluster)
        elif spec.scheduler_file:
            client = Client(scheduler_file=spec.scheduler_file, timeout="30s")
        else:
            client = Client(spec.address, timeout="30s")
    except OSError as e:
        if cluster is not None:
            cluster.close()
        raise ConfigError(f"cannot reach the Dask cluster ({e})") from e
    try:
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _route_dask_logs() -> None:
    """Dask's log lines go where the screener's library warnings go (``screen.log``, or nowhere
    with --anonymize), never to the terminal: they read like failures and name hosts and tasks."""
    handlers = logging.getLogger("py.warnings").handlers or [logging.NullHandler()]
    for name in ("distributed", "dask"):
        lg = logging.getLogger(name)
        lg.handlers, lg.propagate = list(handlers), False


def cluster_screen(client: Any, engine: EngineSpec, batch_images: int = DEFAULT_BATCH_IMAGES) -> ScreenFn:
    """A ``screen`` for :func:`desktop.screening.outputs.screen_to_folder` that runs on ``client``'s
    workers, after every worker has built the engine (:class:`EnginePlugin`): a worker without
    the bundle fails here, before any work is sent."""
    worker = _dask("desktop.screening.cluster_worker")
    try:
        client.register_plugin(worker.EnginePlugin(engine), name=worker.PLUGIN_NAME)
    except MuraError as e:
        raise BundleError(f"a cluster worker cannot load the model: {e}") from e
    except (OSError, RuntimeError) as e:  # the bundle missing there, or the engine failing there
        raise BundleError(f"a cluster worker cannot load the model {engine.bundle}: "
                          f"{type(e).__name__}: {e}") from e
    return functools.partial(screen_on_cluster, client=client, spec=engine, batch_images=batch_images)


def make_batches(disc: Discovery, todo: set[int], spec: EngineSpec, batch_images: int,
                 export_dirs: Callable[[Study], str | None], fast_decode: FastDecode) -> Iterator[Batch]:
    """The studies to score, in discovery order, in batches of about ``batch_images`` images
    (a study is never split: it is scored and committed whole)."""
    indices: list[int] = []
    size = 0
    for i in sorted(todo):
        st = disc.studies[i]
        if indices and size + len(st.images) > batch_images:
            yield _batch(disc, indices, spec, export_dirs, fast_decode)
            indices, size = [], 0
        indices.append(i)
        size += len(st.images)
    if indices:
        yield _batch(disc, indices, spec, export_dirs, fast_decode)


def _batch(disc: Discovery, indices: list[int], spec: EngineSpec,
           export_dirs: Callable[[Study], str | None], fast_decode: FastDecode) -> Batch:
    """The studies as a worker gets them: absolute paths (a worker's working folder is not the
    client's), and no patient identifiers (a worker needs paths and headers, not names)."""
    studies = [disc.studies[i] for i in indices]
    bare = [dataclasses.replace(
        st, patient_id="", patient_name="", accession="", study_date="",
        images=[dataclasses.replace(ref, path=os.path.abspath(ref.path)) for ref in st.images])
        for st in studies]
    dirs = [export_dirs(st) for st in studies]
    return Batch(spec, list(indices), bare, [None if d is None else os.path.abspath(d) for d in dirs],
                 fast_decode)


def client_paths(out: ClusterStudy, st: Study) -> ClusterStudy:
    """``out`` with the paths the worker saw (absolute) put back as discovery wrote them, so the
    state and the worklist are the single PC's. Rows come back in the study's image order."""
    real = {os.path.abspath(ref.path): ref.path for ref in st.images}

    def local(text: str) -> str:
        for a, p in real.items():
            if a != p:
                text = text.replace(a, p)
        return text

    images = [dataclasses.replace(r, stamp=dataclasses.replace(r.stamp, path=real.get(r.stamp.path, r.stamp.path)),
                                  error=None if r.error is None else local(r.error),
                                  refused=None if r.refused is None else local(r.refused))
              for r in out.images]
    row = dataclasses.replace(out.row, first_image=real.get(out.row.first_image, out.row.first_image),
                              scope=local(out.row.scope))
    return dataclasses.replace(out, row=row, images=images,
                               export_error=None if out.export_error is None else local(out.export_error))


def screen_on_cluster(root: str | Path, engine: Engine, progress=None, cancel=None,
                      state: ScreenState | None = None, *, client: Any, spec: EngineSpec,
                      batch_images: int = DEFAULT_BATCH_IMAGES, workers: int | None = None,
                      dicom_out: str | Path | None = None, alias: Aliases | None = None,
                      fast_decode: FastDecode = False, group_by: str = "auto",
                      select: Callable[[Study], bool] | None = None) -> ScreenResult:
    """:func:`desktop.screening.run.screen` with the scoring done by ``client``'s workers.

    Same arguments and result (``workers`` is ignored: each cluster worker decodes in its task),
    the same state rows; studies are committed as their batches come back, in whatever order,
    and the result lists them in discovery order, so the worklist is the single PC's.
    """
    t0 = time.time()
    decode = decode_mode(fast_decode)
    disc = discover(root, group_by)
    own_state = state is None
    state = _open_state(state, engine, root, decode)
    alias = alias or Aliases(state.salt, False)
    fps, todo = _plan(disc, state, alias, dicom_out, select)
    tally = _Tally(disc.n_images)
    slots: list[ScoredStudy | None] = [None] * len(disc.studies)
    for i, st in enumerate(disc.studies):
        if i not in todo and state.study(alias(st.key, "study")) is not None:
            slots[i] = _result_from_state(st, state, alias)
            tally.images_done += len(st.images)

    def export_dirs(st: Study) -> str | None:
        if dicom_out is None or not st.is_dicom:
            return None
        return str(dicom_study_dir(dicom_out, st, alias))

    def commit(out: ClusterStudy) -> None:
        st = disc.studies[out.index]
        out = client_paths(out, st)
        probs = [(r.stamp.path, r.probability) for r in out.images if r.probability is not None]
        scored = ScoredStudy(st, out.row, probs, images=out.images, n_worked=out.n_worked,
                             exported=out.exported, export_error=out.export_error)
        slots[out.index] = _commit(st, scored, fps[out.index], state, alias, tally)
        tally.n_scored += out.n_scored  # _commit counts predictions, which stayed on the worker
        scored.images = []  # in the state now; an archive's thumbnails must not pile up here
        tally.images_done += len(st.images)
        if progress is not None:
            done = sum(s is not None for s in slots)
            progress(done, len(disc.studies), tally.images_done, tally.images_total, tally.images_worked)

    batches = make_batches(disc, todo, spec, batch_images, export_dirs, fast_decode)
    tally.complete = _Farm(client, engine.bundle.model_id, disc, commit).run(batches, cancel)
    tally.results = [s for s in slots if s is not None]
    result = _result(disc, state, alias, tally, decode, time.time() - t0)
    _discovery_order(result, disc)
    if own_state:
        state.close()
    return result


def _discovery_order(res: ScreenResult, disc: Discovery) -> None:
    """Failures and refusals in discovery order, as a single PC lists them: the state's row ids
    follow the order batches came back in, which differs from run to run."""
    order = {ref.path: n for n, ref in enumerate(r for st in disc.studies for r in st.images)}
    res.failures.sort(key=lambda pr: order.get(pr[0], len(order)))
    res.refusals.sort(key=lambda pr: order.get(pr[0], len(order)))


class _Farm:
    """Keeps a few batches per worker in flight and hands each returned study to ``commit``.

    A worker that dies takes its running task with it; the scheduler gives that task to another
    worker (Dask's ``allowed-failures`` times). A batch that kills workers every time (a decoder
    that crashes its process) is split into single studies, and a single study that still does,
    :data:`LOST_AFTER` times, is committed as failed, with the reason: the run goes on, as on a
    single PC.
    """

    def __init__(self, client: Any, model_id: str, disc: Discovery,
                 commit: Callable[[ClusterStudy], None]) -> None:
        self.client, self.model_id, self.disc, self.commit = client, model_id, disc, commit
        self.run_id = uuid.uuid4().hex[:12]
        self.n_submitted = 0
        self.inflight: dict[Any, Batch] = {}
        self.tries: dict[int, int] = {}  # study index -> submissions alone that lost workers

    def run(self, batches: Iterator[Batch], cancel: Callable[[], bool] | None) -> bool:
        """Submit, gather and commit until every batch is done (True) or ``cancel()`` (False)."""
        self.done = _dask("dask.distributed").as_completed()
        threads = sum(w.get("nthreads", 1) for w in self.client.scheduler_info()["workers"].values())
        for _ in range(max(2, AHEAD_PER_THREAD * max(1, threads))):
            self._submit_next(batches)
        try:
            for fut in self.done:
                batch = self.inflight.pop(fut)
                self._gather(fut, batch)
                if cancel is not None and cancel():
                    return False
                self._submit_next(batches)
        finally:
            if self.inflight:
                self.client.cancel(list(self.inflight))
        return True

    def _submit_next(self, batches: Iterator[Batch]) -> None:
        batch = next(batches, None)
        if batch is not None:
            self._submit(batch)

    def _submit(self, batch: Batch) -> None:
        run_batch = _dask("desktop.screening.cluster_worker").run_batch
        self.n_submitted += 1  # keys name the run and a number, never a study
        fut = self.client.submit(run_batch, batch, key=f"mura-screen-{self.run_id}-{self.n_submitted}",
                                 pure=False)
        self.inflight[fut] = batch
        self.done.add(fut)

    def _gather(self, fut: Any, batch: Batch) -> None:
        KilledWorker = _dask("distributed").KilledWorker
        try:
            res: BatchResult = fut.result()
        except KilledWorker:
            if len(batch.indices) > 1:  # find the study that kills its worker: one task each
                for k, i in enumerate(batch.indices):
                    self._submit(dataclasses.replace(batch, indices=[i], studies=[batch.studies[k]],
                                                     export_dirs=[batch.export_dirs[k]]))
            elif self.tries.setdefault(batch.indices[0], 1) < LOST_AFTER:
                self.tries[batch.indices[0]] += 1  # it may only have shared the culprit's worker
                self._submit(batch)
            else:
                self.commit(lost_study(batch.indices[0], self.disc.studies[batch.indices[0]]))
            return
        except Exception as e:  # noqa: BLE001 - the scheduler's or the network's: fatal, typed
            raise MuraError(f"a cluster task failed: {type(e).__name__}: {e}") from e
        finally:
            fut.release()
        if res.error is not None:
            raise MuraError(f"a cluster worker{' ' + res.worker if res.worker else ''} failed a batch: {res.error}")
        if res.model_id != self.model_id:
            raise BundleError(f"cluster worker {res.worker} ran model {res.model_id}, this run uses "
                              f"{self.model_id}: every worker needs the same bundle")
        for out in res.outcomes:
            self.commit(out)


#: Submissions of a study alone, each with the scheduler's own retries, that must all end their
#: workers before the study is given up: a task queued on the worker a culprit killed dies too.
LOST_AFTER = 2
#: Why a study whose task killed every worker it ran on has no score.
LOST_REASON = ("screening this study ended its cluster worker process every time it was tried "
               "(a decoder crash, or the worker's memory limit)")


def lost_study(index: int, st: Study) -> ClusterStudy:
    """The failed outcome of a study no worker survived: each image failed with the reason."""
    rows = []
    for ref in st.images:
        try:
            fs = stamp(ref.path)
        except OSError:
            fs = FileStamp(ref.path, -1, -1)
        rows.append(ImageRow(fs, error=LOST_REASON))
    first = st.images[0].path if st.images else ""
    row = StudyRow(st.key, None, "", "failed", len(st.images), len(st.images), st.modality,
                   st.description, first)
    return ClusterStudy(index, row, rows, n_worked=0)
