"""Worker plumbing of the viewer: a QRunnable that reports by signals and can be cancelled.

The window connects its own methods to a task's signals (queued across threads), so the work
function never touches a widget.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from PySide6.QtCore import QObject, QRunnable, Signal

from desktop.studies import Cancelled, check_cancelled


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
    """

    def __init__(self, tag: str, fn: Callable[..., object], *args: object,
                 partial: bool = False) -> None:
        super().__init__()
        self.setAutoDelete(False)  # Python owns it: the window keeps it until `finished`
        self.tag = tag
        self.signals = TaskSignals()
        self._fn = fn
        self._args = args
        self._partial = partial
        self._cancel = threading.Event()

    def _emit_partial(self, obj: object) -> None:
        if not self._cancel.is_set():
            self.signals.partial.emit(self.tag, obj)

    def cancel(self) -> None:
        self._cancel.set()

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
