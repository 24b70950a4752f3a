"""Decode worker processes: a lazily started pool with a memory ceiling, a per-file
timeout's kill, and exit-with-parent.

Why processes, not threads: pydicom's decoders for JPEG-LS (CharLS), JPEG 2000 (OpenJPEG) and
JPEG (libjpeg) hold the GIL for the whole decode, so decoding threads would take turns on one
core while inference starves the other. Workers are never forked from the screening process:
it already runs OpenVINO's thread pool, which ``fork`` would copy in a broken state. They are
forked from a fork server with the decode modules imported, or spawned where there is none
(Windows): :func:`worker_context`.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from desktop.screening.support import silence_library_warnings

#: A file whose decode takes longer than this (seconds) fails and its worker is replaced: a
#: decoder that never returns must not stall a whole run. The slowest real file seen (a cut
#: JPEG-LS) took 13 s; a 2k JPEG 2000 radiograph takes under 1 s.
DECODE_TIMEOUT_S = 120.0


def default_workers() -> int:
    """One decode process per core: inference threads and decoders share the cores."""
    return max(1, min(os.cpu_count() or 1, 8))


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

    Ctrl+C in a terminal reaches the whole process group: a worker must not die of it (its file
    would be failed as "crashed" and committed so); the screening process decides, and stops
    its workers itself.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
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


#: What a fork server imports once, before it forks the decode workers (:func:`worker_context`).
PRELOAD = ["desktop.screening.workers", "desktop.screening.prepare", "psutil"]


def worker_context() -> multiprocessing.context.BaseContext:
    """``forkserver`` where the platform has it (Linux, macOS), else ``spawn`` (Windows).

    Why: a spawned worker starts a fresh interpreter and imports numpy, Pillow, pydicom and the
    decode modules before its first file (~0.3 s of CPU, measured), per worker, per pool. A fork
    server is one such process, started once per program with those modules imported
    (:data:`PRELOAD`); each worker is a fork of it (a few ms), never of the program, whose
    OpenVINO threads a fork would copy in a broken state. Each forked worker still runs
    :func:`_worker_init` (memory ceiling, exit with the program).
    """
    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(PRELOAD)
        return ctx
    return multiprocessing.get_context("spawn")


def prestart() -> None:
    """Start the fork server now, where there is one, so that it imports the decode modules while
    the program loads its model: the first pool then forks its workers at once."""
    ctx = worker_context()
    if ctx.get_start_method() == "forkserver":
        from multiprocessing import forkserver

        forkserver.ensure_running()


class Workers:
    """A lazily started process pool (:func:`worker_context`), or in-process calls when ``n`` is 0."""

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
            self._pool = ProcessPoolExecutor(self.n, mp_context=worker_context(),
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
        # The pool fails the futures before it reaps its processes, and the reaping thread and
        # this one race for each exit status: wait (briefly) until every status is known.
        deadline = time.monotonic() + 5.0
        while any(p.exitcode is None for p in procs) and time.monotonic() < deadline:
            time.sleep(0.01)
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
