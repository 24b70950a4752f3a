"""The screening pipeline: decode in worker processes, infer asynchronously, hand studies back in order.

Why processes, not threads: pydicom's decoders for JPEG-LS (CharLS), JPEG 2000 (OpenJPEG) and
JPEG (libjpeg) hold the GIL for the whole decode (none of their Cython/C++ wrappers releases it),
so decoding threads would take turns on one core while inference starves the other. Workers are
started with ``spawn``: the parent already runs OpenVINO's thread pool, which ``fork`` would copy
in a broken state (and ``spawn`` is what Windows clinic PCs get anyway). A worker returns only
small arrays: the (1, S, S) model input, its placement and a gray thumbnail source of at most
``THUMB_SIZE`` px, never the full decoded image.

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

import io
import multiprocessing
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from desktop.screening.discovery import Study
from desktop.screening.render import blend_heatmap, to_uint8
from desktop.screening.state import NOT_INDICATED, FileStamp, ImageRow, StudyRow, stamp
from desktop.screening.support import silence_library_warnings
from models.engine import Engine, ImagePrediction, StudyPrediction, aggregate_study
from models.errors import ImageDecodeError, MuraError
from models.imageio import decode_for_model, load_image
from models.preprocess import Placement, PreprocessConfig, standardize, to_unit
from models.scope import Indications, header_refusal, image_refusal, prediction_refusal

THUMB_SIZE = 160  # px, long side of the report's thumbnails
#: A file whose decode takes longer than this (seconds) fails and its worker is replaced: a
#: decoder that never returns must not stall a whole run. The slowest real file seen (a cut
#: JPEG-LS) took 13 s; a 2k JPEG 2000 radiograph takes under 1 s.
DECODE_TIMEOUT_S = 120.0


def default_workers() -> int:
    """One decode process per core: inference threads and decoders share the cores."""
    return max(1, min(os.cpu_count() or 1, 8))


@dataclass
class Prepared:
    """What a worker sends back for one file: small arrays only, or the reason it failed."""

    stamp: FileStamp
    x: np.ndarray | None = None  # (1, S, S) float32 model input
    placement: Placement | None = None
    thumb: np.ndarray | None = None  # uint8 gray, long side <= THUMB_SIZE
    error: str | None = None
    refused: str | None = None  # not a radiograph (models.scope.image_refusal): not scored


def fast_decode_min_side(cfg: PreprocessConfig) -> int:
    """The smallest long side ``--fast-decode`` may decode to: twice the model's input size, so
    the model input is still made by the same antialiased downscale, from at least 2x oversampling.
    """
    return 2 * int(cfg.input_size)


def prepare_image(path: str, cfg: PreprocessConfig, thumb_size: int = THUMB_SIZE,
                  fast_decode: bool = False) -> Prepared:
    """Stamp, decode and preprocess one file (runs in a worker process).

    The file is stamped before it is read: if it changes meanwhile, the next run sees another
    stamp and re-scores it rather than trusting a result of unknown content. Any exception a
    decoder raises on a hostile file is turned into a reason here, in the worker.
    ``fast_decode`` decodes JPEG 2000 and baseline JPEG at a reduced resolution
    (:func:`models.imageio.load_pixels` with ``min_side``); only the screener's opt-in
    ``--fast-decode`` sets it.
    """
    try:
        fs = stamp(path)
    except OSError as e:
        return Prepared(FileStamp(path, -1, -1), error=f"cannot read file ({e})")
    try:
        pixels, colour = decode_for_model(path, min_side=fast_decode_min_side(cfg) if fast_decode else None)
        refusal = image_refusal(pixels, colour)
        if refusal is None:
            unit, placement = to_unit(pixels, cfg)
            x = standardize(unit, cfg)
    except ImageDecodeError as e:
        return Prepared(fs, error=e.reason)
    except Exception as e:  # noqa: BLE001 - a decoder bug on one file must not end the batch
        return Prepared(fs, error=f"cannot decode ({type(e).__name__}: {e})")
    thumb = None
    try:
        im = Image.fromarray(to_uint8(pixels))
        im.thumbnail((thumb_size, thumb_size), Image.Resampling.BILINEAR)
        thumb = np.asarray(im)
    except (ValueError, OSError):
        pass  # the report shows no picture for this image; the score stands
    if refusal is not None:
        return Prepared(fs, thumb=thumb, refused=refusal.reason)
    return Prepared(fs, x, placement, thumb)


#: JPEG quality of the report's thumbnails. PNG with optimize=True took 47 % of a screening run
#: of 100 FracAtlas images (1.8 of 3.9 s, ~6 encoder passes per picture); a 160 px JPEG costs
#: ~0.15 ms and a quarter of the bytes, and a thumbnail is for finding the study, not reading it.
THUMB_JPEG_QUALITY = 85


def _jpeg(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=THUMB_JPEG_QUALITY)
    return buf.getvalue()


def gray_thumbnail(thumb: np.ndarray | None) -> bytes | None:
    """The thumbnail of an image that was not scored: the picture without a heatmap (JPEG)."""
    if thumb is None:
        return None
    try:
        return _jpeg(thumb)
    except (ValueError, OSError):
        return None


def heat_thumbnail(thumb: np.ndarray | None, pred: ImagePrediction) -> bytes | None:
    """A small JPEG of the thumbnail source with its heatmap (None if it cannot be made)."""
    if thumb is None:
        return None
    try:
        return _jpeg(blend_heatmap(thumb, pred.heatmap(thumb.shape), opacity=0.45))
    except (ValueError, OSError):
        return None


def export_study(sources: Sequence[tuple[str, ImagePrediction]], study: StudyPrediction,
                 card: dict, out_dir: str, word: str) -> list[str]:
    """Decode the study's DICOM sources again and write its SC + SR (runs in a worker process).

    Decoding twice costs less than shipping full-size pixels between processes, and it is only
    paid with ``--dicom-out``.
    """
    from desktop.screening.dicom_export import write_study_dicom

    items = [(Path(p), load_image(p).pixels, pred) for p, pred in sources]
    return [str(p) for p in write_study_dicom(items, study, card, Path(out_dir), word=word)]


def export_not_indicated(paths: Sequence[str], reason: str, card: dict, out_dir: str, word: str) -> list[str]:
    """The SR of a study that got no verdict, saying why (runs in a worker process)."""
    from desktop.screening.dicom_export import write_not_indicated_sr

    return [str(p) for p in write_not_indicated_sr(paths, reason, card, Path(out_dir), word=word)]


#: Memory one decode worker may use. A worker idles at ~0.3 GB virtual; a frame is at most
#: models.dicom.MAX_FRAME_BYTES (256 MB) and the rendering chain holds a few float32 copies of it.
#: A decoder that runs away anyway fails its file instead of taking the clinic PC's memory, two
#: workers at a time: on POSIX through ``RLIMIT_AS`` (exact: the allocation fails with a
#: MemoryError and the worker lives on), on every platform (Windows included, which has no
#: rlimit) through :func:`watch_memory`, which ends a worker whose resident memory passes it.
WORKER_MEMORY_BYTES = 3 * 2**30
#: The exit status of a worker that :func:`watch_memory` ended (tells the parent why it died).
MEMORY_EXIT = 86
MEMORY_POLL_S = 0.02


def limit_worker_memory(limit: int = WORKER_MEMORY_BYTES) -> bool:
    """Cap this process's address space (POSIX); False where the platform has no such limit."""
    try:
        import resource
    except ImportError:  # Windows: watch_memory is the ceiling there
        return False
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = limit if hard == resource.RLIM_INFINITY else min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    return True


def watch_memory(limit: int = WORKER_MEMORY_BYTES, interval: float = MEMORY_POLL_S) -> threading.Thread:
    """End this process (status :data:`MEMORY_EXIT`) as soon as its resident memory passes
    ``limit``: the memory ceiling that works on every platform.

    A polling thread rather than an allocation hook: a runaway decoder is native code. Between
    two polls an allocation can overshoot by what it touches in ``interval`` (~20 ms), which
    bounds it well below the PC's memory; the parent fails the file with the reason.
    """
    import psutil

    me = psutil.Process()

    def watch() -> None:
        while True:
            if me.memory_info().rss > limit:
                os._exit(MEMORY_EXIT)
            time.sleep(interval)

    t = threading.Thread(target=watch, name="memory-ceiling", daemon=True)
    t.start()
    return t


def _worker_init(memory_limit: int = WORKER_MEMORY_BYTES, address_limit: bool = True) -> None:
    """Worker initializer: cap the worker's memory (:func:`limit_worker_memory` where the
    platform has it, :func:`watch_memory` everywhere), silence library warnings, and exit as
    soon as the screening process is gone.

    Pool workers hold both ends of their task queue, so a SIGKILLed parent (or the
    ``MURA_SCREEN_DIE_AFTER`` hook) would leave them blocked forever, keeping the parent's
    stdout/stderr open. ``parent_process().join()`` waits on the parent's sentinel (a pipe on
    POSIX, the process handle on Windows), so this works on every platform.
    """
    silence_library_warnings()
    if address_limit:
        limit_worker_memory(memory_limit)
    watch_memory(memory_limit)
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        parent.join()
        os._exit(0)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


class Workers:
    """A lazily started ``spawn`` process pool, or in-process calls when ``n`` is 0."""

    def __init__(self, n: int, memory_limit: int = WORKER_MEMORY_BYTES, address_limit: bool = True) -> None:
        self.n = max(0, int(n))
        self._pool: ProcessPoolExecutor | None = None
        self._init_args = (memory_limit, address_limit)
        self.memory_limit = memory_limit

    def submit(self, fn: Callable, *args) -> Future:
        if self.n == 0:
            f: Future = Future()
            try:
                f.set_result(fn(*args))
            except Exception as e:  # noqa: BLE001 - delivered through the future, as a pool would
                f.set_exception(e)
            return f
        if self._pool is None:
            self._pool = ProcessPoolExecutor(self.n, mp_context=multiprocessing.get_context("spawn"),
                                             initializer=_worker_init, initargs=self._init_args)
        try:
            return self._pool.submit(fn, *args)
        except BrokenProcessPool as e:
            # A worker died since the last result was read: report it through the future, like
            # the tasks that were in flight, so one retry-alone path handles every crash
            f = Future()
            f.set_exception(e)
            return f

    def death_reason(self) -> str:
        """Why a worker of the broken pool died, in words for failures.csv."""
        procs = list((getattr(self._pool, "_processes", None) or {}).values())
        if any(p.exitcode == MEMORY_EXIT for p in procs):
            return (f"decoding this file needed more than {self.memory_limit / 2**30:.1f} GB of memory: "
                    "stopped (its worker was replaced)")
        return "the decoder crashed on this file (its worker process died)"

    def restart(self) -> None:
        """After a worker died: the pool is broken for good, so start a new one on next use."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def kill(self) -> None:
        """Stop every worker now (one is stuck in a decoder that never returns) and start a new
        pool on next use. ProcessPoolExecutor cannot cancel a running task, so its processes are
        terminated; the tasks they held fail with BrokenProcessPool."""
        if self._pool is not None:
            for proc in list(getattr(self._pool, "_processes", {}).values()):
                proc.terminate()
        self.restart()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


@dataclass
class ScoredStudy:
    """One study's outcome, ready to commit: the state rows and the predictions behind them."""

    row: StudyRow
    images: list[ImageRow]
    predictions: list[ImagePrediction]
    n_worked: int  # images this process decoded (for an honest images/s)
    exported: list[str] = field(default_factory=list)
    export_error: str | None = None


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
    out = ScoredStudy(srow, rows, preds, len(st.images))
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
                   workers: int | None = None,
                   export_dir: Callable[[Study], Path | None] | None = None,
                   card: dict | None = None, word: str = "fracture",
                   fast_decode: bool = False, decode_timeout: float = DECODE_TIMEOUT_S,
                   ) -> Iterator[tuple[int, ScoredStudy | None]]:
    """Yield ``(index, ScoredStudy)`` for the studies in ``todo`` and ``(index, None)`` for the
    others (the caller takes those from its state), strictly in the order of ``studies``.

    ``workers``: decode processes (None: one per core; 0: decode in this thread, inference still
    asynchronous). ``export_dir(study)``: where to write the study's DICOM SC/SR, or None to
    skip it. ``fast_decode``: reduced-resolution JPEG 2000 / JPEG decoding (see
    :func:`prepare_image`). Closing the generator (the caller cancelled) drops work in flight
    and stops the workers; nothing of an unfinished study is yielded.
    """
    pool = Workers(default_workers() if workers is None else workers)
    runner = engine.async_runner()
    cfg = engine.cfg
    indications = Indications.from_card(engine.bundle.card)
    jobs: dict[int, _Job] = {}
    feed: deque[tuple[int, int, str]] = deque()
    for i in sorted(todo):
        st = studies[i]
        n = len(st.images)
        job = jobs[i] = _Job(st, [None] * n, [None] * n, [None] * n, n,
                             export_dir=export_dir(st) if export_dir is not None and st.is_dicom else None)
        for k, ref in enumerate(st.images):
            refusal = None if ref.header is None else header_refusal(ref.header, indications)
            if refusal is None:
                feed.append((i, k, ref.path))
                continue
            try:  # refused by its header: never decoded
                job.rows[k] = ImageRow(stamp(ref.path), refused=refusal.reason)
            except OSError as e:
                job.rows[k] = ImageRow(FileStamp(ref.path, -1, -1), error=f"cannot read file ({e})")
            job.waiting -= 1
    window = max(2, 2 * pool.n) + runner.n_requests  # decoded inputs queued ahead of inference
    inflight: deque[tuple[int, int, str, Future]] = deque()

    def absorb(done: list) -> None:
        for (i, k), pred in done:
            job = jobs[i]
            row = job.rows[k]
            assert row is not None
            row.body_part = pred.body_part
            refusal = prediction_refusal(pred.body_part_probs, indications)
            if refusal is None:
                job.preds[k] = pred
                row.probability = float(pred.probability)
                row.thumbnail = heat_thumbnail(job.thumbs[k], pred)
            else:  # the model does not recognise a trained body part: its score means nothing
                row.refused = refusal.reason
                row.thumbnail = gray_thumbnail(job.thumbs[k])
            job.thumbs[k] = None
            job.waiting -= 1
            maybe_export(job)

    def maybe_export(job: _Job) -> None:
        if job.waiting or job.export_dir is None or job.export is not None:
            return
        sources = [(ref.path, p) for ref, p in zip(job.study.images, job.preds, strict=True)
                   if p is not None and ref.kind == "dicom"]
        refused = [(ref.path, row.refused) for ref, row in zip(job.study.images, job.rows, strict=True)
                   if row is not None and row.refused and ref.kind == "dicom"]
        if not sources and refused:  # not indicated: the PACS still gets an SR saying why
            job.export = pool.submit(export_not_indicated, [p for p, _ in refused], refused[0][1],
                                     card or engine.bundle.card, str(job.export_dir), word)
        if not sources:
            return
        preds = [p for p in job.preds if p is not None]
        job.export = pool.submit(export_study, sources, aggregate_study(preds, engine.thresholds),
                                 card or engine.bundle.card, str(job.export_dir), word)

    def handle(i: int, k: int, path: str, fut: Future) -> None:
        try:
            pr: Prepared = fut.result(timeout=decode_timeout if pool.n else None)
        except TimeoutError:
            # A decoder that never returns would stall the whole run: fail this file, replace
            # the workers, and hand the other files in flight to the new ones
            others = [(a, b, c) for a, b, c, _ in inflight]
            inflight.clear()
            pool.kill()
            fail(i, k, path, f"decoding took longer than {decode_timeout:g} s: stopped (its worker was replaced)")
            inflight.extend((a, b, c, pool.submit(prepare_image, c, cfg, THUMB_SIZE, fast_decode))
                            for a, b, c in others)
            return
        except BrokenProcessPool:
            # A decoder crashed its process (or the OS killed it), and every task in flight died
            # with it. Retry those one at a time in a fresh pool: the file that crashes alone is
            # the culprit and fails; the others are decoded as usual.
            suspects = [(i, k, path)] + [(a, b, c) for a, b, c, _ in inflight]
            inflight.clear()
            pool.restart()
            for a, b, c in suspects:
                try:
                    accept(a, b, pool.submit(prepare_image, c, cfg, THUMB_SIZE, fast_decode).result(
                        timeout=decode_timeout))
                except BrokenProcessPool:
                    reason = pool.death_reason()
                    pool.restart()
                    fail(a, b, c, reason)
                except TimeoutError:
                    pool.kill()
                    fail(a, b, c, f"decoding took longer than {decode_timeout:g} s: stopped (its worker was replaced)")
            return
        accept(i, k, pr)

    def accept(i: int, k: int, pr: Prepared) -> None:
        job = jobs[i]
        if pr.refused is not None:
            job.rows[k] = ImageRow(pr.stamp, refused=pr.refused, thumbnail=gray_thumbnail(pr.thumb))
            job.waiting -= 1
            maybe_export(job)
            return
        if pr.error is not None or pr.x is None or pr.placement is None:
            job.rows[k] = ImageRow(pr.stamp, error=pr.error or "cannot decode")
            job.waiting -= 1
            maybe_export(job)
            return
        job.rows[k] = ImageRow(pr.stamp)
        job.thumbs[k] = pr.thumb
        runner.submit(pr.x, pr.placement, (i, k))

    def fail(i: int, k: int, path: str, reason: str) -> None:
        try:
            fs = stamp(path)
        except OSError:
            fs = FileStamp(path, -1, -1)
        jobs[i].rows[k] = ImageRow(fs, error=reason)
        jobs[i].waiting -= 1
        maybe_export(jobs[i])

    for job in jobs.values():
        if job.waiting == 0:  # every image refused by its header: nothing to decode
            maybe_export(job)

    try:
        for i in range(len(studies)):
            if i not in jobs:
                yield i, None
                continue
            job = jobs[i]
            while not job.ready():
                while feed and len(inflight) < window:
                    a, b, path = feed.popleft()
                    inflight.append((a, b, path, pool.submit(prepare_image, path, cfg, THUMB_SIZE, fast_decode)))
                absorb(runner.completed())
                if job.ready():
                    break
                if inflight and (not job.scored() or inflight[0][3].done() or runner.pending == 0):
                    a, b, path, fut = inflight.popleft()
                    handle(a, b, path, fut)
                elif runner.pending:
                    absorb(runner.wait())
                elif job.export is not None:
                    job.export.exception()  # block until the export is written (or failed)
                else:  # every image is accounted for, so this cannot happen: fail loudly
                    raise MuraError(f"screening pipeline stalled on study #{i + 1}")
            del jobs[i]
            yield i, _finish(job, engine)
    finally:
        for *_, fut in inflight:
            fut.cancel()
        runner.wait()  # no callback may run after the caller moved on
        pool.close()
