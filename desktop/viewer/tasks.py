"""Worker plumbing of the viewer: a QRunnable that reports by signals and can be cancelled.

The window connects its own methods to a task's signals (queued across threads), so the work
function never touches a widget.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from PySide6.QtCore import QObject, QRunnable, Signal

from desktop.viewer.studies import Cancelled, check_cancelled


class TaskSignals(QObject):
    """Signals of a :class:`Task`. Each carries the task's tag, so the window can connect its own
    methods (queued across threads) instead of per-task lambdas, which would run in the worker.
    """

    started = Signal(str)
    progress = Signal(str, int, int, str)  # tag, done, total, message
    partial = Signal(str, object)  # tag, a piece of the result delivered early (see Task)
    result = Signal(str, object)
    errored = Signal(str, str)
    finished = Signal(str)


class Task(QRunnable):
    """Runs ``fn(*args, progress=..., cancelled=...)`` on a thread pool and reports by signals.

    ``cancel()`` sets a flag the function checks between steps; a cancelled task emits
    ``finished`` without ``result``. ``finished`` is always the last signal. With
    ``partial=True`` the function also gets ``partial=callback``: each object it passes is
    emitted at once as ``partial(tag, obj)`` (e.g. each decoded image of a study, so the first
    one is shown long before the whole result); nothing is emitted once the task is cancelled.

    With ``partial_wait_s`` the worker then waits (at most that long) until the receiver calls
    :meth:`partial_taken`. Decoders hold the GIL for a whole image (about a second for a 2k
    JPEG 2000), so without this pause the UI thread could only show image 1 once image 2 was
    decoded too.
    """

    def __init__(self, tag: str, fn: Callable[..., object], *args: object,
                 partial: bool = False, partial_wait_s: float = 0.0) -> None:
        super().__init__()
        self.setAutoDelete(False)  # Python owns it: the window keeps it until `finished`
        self.tag = tag
        self.signals = TaskSignals()
        self._fn = fn
        self._args = args
        self._partial = partial
        self._partial_wait_s = partial_wait_s
        self._taken = threading.Event()
        self._cancel = threading.Event()

    def partial_taken(self) -> None:
        """The receiver has handled the last ``partial``: the worker may go on."""
        self._taken.set()

    def _emit_partial(self, obj: object) -> None:
        if self._cancel.is_set():
            return
        self._taken.clear()
        self.signals.partial.emit(self.tag, obj)
        if self._partial_wait_s > 0:
            self._taken.wait(self._partial_wait_s)

    def cancel(self) -> None:
        self._cancel.set()
        self._taken.set()  # a worker waiting on its receiver goes on, and stops

    @property
    def is_cancelled(self) -> bool:
        return self._cancel.is_set()

    def run(self) -> None:
        s = self.signals
        try:
            s.started.emit(self.tag)
            check_cancelled(self._cancel.is_set)
            extra = {"partial": self._emit_partial} if self._partial else {}
            res = self._fn(
                *self._args,
                progress=lambda d, t, m: s.progress.emit(self.tag, d, t, m),
                cancelled=self._cancel.is_set,
                **extra,
            )
            if not self._cancel.is_set():
                s.result.emit(self.tag, res)
        except Cancelled:
            pass
        except Exception as e:  # noqa: BLE001 - reported in the UI, never raised into Qt
            s.errored.emit(self.tag, f"{type(e).__name__}: {e}")
        finally:
            s.finished.emit(self.tag)
