"""``mura-screen FOLDER --watch --out OUT``: keep screening a folder that a PACS exports into.

Many PACS and modalities can export studies to a folder; watching that folder is the
integration that needs no network. The watcher keeps one state (``OUT/screen.sqlite``, the same
resumable state as a single run) and screens in batches: each batch is a plain
:func:`desktop.screening.run.screen` over the folder, so studies already finished with the same
files are not redone, a changed study is re-scored and a removed one leaves the worklist; the
outputs (worklist.csv, failures.csv, report.html) are rewritten after each batch.

When is a study ready? A PACS writes a study file by file, for seconds or minutes. A study is
screened once none of its files has changed for ``settle`` seconds; a study still being written
keeps its previous result (if any) until then. Changes are seen by watching file stamps (size,
mtime): a scan is a walk with ``stat`` calls, no file is opened. The scans are triggered by
``watchdog``'s native observer (inotify, FSEvents, ReadDirectoryChangesW) where there is one,
with a full rescan every :data:`HEARTBEAT_S` anyway (an observer's queue can overflow); they are
timed (``--poll-interval``) where there is none: watchdog not installed, the observer refused
(inotify limits), ``--poll``, or the folder on a network share, whose changes made by another
machine a local observer never hears of.

SIGINT (Ctrl+C) and SIGTERM stop it between two studies: the state is committed, the decode
workers are stopped, the exit status is 0. A second Ctrl+C stops at once (the state still
commits what is done). The study in flight when it stops is screened again at the next start.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from desktop.screening.anonymize import Aliases
from desktop.screening.discovery import Study, iter_files
from desktop.screening.outputs import open_state, write_run
from desktop.screening.render import plural
from desktop.screening.run import ScreenResult, screen
from desktop.screening.state import FastDecode, ScreenState
from desktop.screening.workers import Workers, default_workers
from models.engine import Engine
from models.errors import ConfigError

DEFAULT_SETTLE_S = 10.0
DEFAULT_POLL_S = 5.0
#: With a native observer: a full rescan at least this often, in case an event was lost.
HEARTBEAT_S = 60.0
#: File system types whose changes made by another machine no local observer reports.
NETWORK_FS = frozenset({
    "nfs", "nfs4", "cifs", "smb", "smb2", "smb3", "smbfs", "ncpfs", "afs", "9p", "ceph",
    "glusterfs", "lustre", "gpfs", "beegfs", "davfs", "fuse.sshfs", "fuse.glusterfs",
    "fuse.cephfs", "fuse.s3fs", "fuse.rclone", "fuse.gcsfuse", "fuse.davfs2"})


@dataclass
class WatchOptions:
    settle: float = DEFAULT_SETTLE_S  # seconds a study's files must stay unchanged
    poll_interval: float = DEFAULT_POLL_S  # seconds between scans when polling
    polling: bool = False  # poll even where a native observer exists


def _unescape_mount(text: str) -> str:
    r"""/proc/mounts writes a space in a mount point as \040 (octal escapes)."""
    import re

    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), text)


def filesystem_type(path: str | Path) -> str:
    """The file system type of the mount holding ``path`` ("nfs4", "cifs", "ext4", …): from
    /proc/mounts on Linux; on Windows "smb" for a UNC path or a network drive; "" if unknown."""
    real = os.path.realpath(path)
    if sys.platform == "win32":
        if real.startswith("\\\\"):
            return "smb"
        try:
            import ctypes

            drive = os.path.splitdrive(real)[0] + "\\"
            return "smb" if ctypes.windll.kernel32.GetDriveTypeW(drive) == 4 else ""  # DRIVE_REMOTE
        except (AttributeError, OSError):
            return ""
    best, kind = "", ""
    try:
        with open("/proc/mounts", encoding="utf-8") as f:
            for line in f:
                parts = line.split()
                if len(parts) < 3:
                    continue
                mount = _unescape_mount(parts[1])
                inside = real == mount or real.startswith(mount.rstrip("/") + "/")
                if inside and len(mount) >= len(best):
                    best, kind = mount, parts[2]
    except OSError:
        return ""
    return kind


def on_network_share(path: str | Path) -> bool:
    return filesystem_type(path) in NETWORK_FS


@dataclass
class Changes:
    """When each file under the folder last changed, from scans of its stamps.

    ``pending`` holds the changes no batch has covered yet (a removed file included); a batch is
    due once one of them is ``settle`` seconds old. Times are ``time.monotonic()``; a file found
    by the first scan counts as changed at its mtime, so files already there when the watcher
    starts are screened at once, and one being copied in waits like any other.
    """

    root: Path
    ignore: Path | None = None  # the output folder, when it is inside the watched one
    stamps: dict[str, tuple[int, int]] = field(default_factory=dict)
    changed: dict[str, float] = field(default_factory=dict)
    pending: dict[str, float] = field(default_factory=dict)
    scanned: bool = False

    def _files(self) -> dict[str, tuple[int, int]]:
        out: dict[str, tuple[int, int]] = {}
        files = [self.root] if self.root.is_file() else iter_files(self.root)
        for p in files:
            if self.ignore is not None and p.is_relative_to(self.ignore):
                continue
            try:
                st = p.stat()
            except OSError:  # vanished between the walk and the stat
                continue
            out[str(p)] = (int(st.st_size), int(st.st_mtime_ns))
        return out

    def scan(self, now: float) -> int:
        """Stat every file; returns how many were added, changed or removed since the last scan."""
        first, self.scanned = not self.scanned, True
        files, n = self._files(), 0
        wall = time.time()
        for path, st in files.items():
            if self.stamps.get(path) != st:
                age = max(0.0, wall - st[1] / 1e9) if first else 0.0
                self.changed[path] = self.pending[path] = now - age
                n += 1
        for path in self.stamps.keys() - files.keys():
            self.changed.pop(path, None)
            self.pending[path] = now
            n += 1
        self.stamps = files
        return n

    def due(self, now: float, settle: float) -> bool:
        return any(now - t >= settle for t in self.pending.values())

    def wait_s(self, now: float, settle: float) -> float | None:
        """Seconds until the next pending change has settled (None: nothing pending)."""
        if not self.pending:
            return None
        return max(0.0, min(self.pending.values()) + settle - now)

    def settled(self, study: Study, now: float, settle: float) -> bool:
        """None of the study's files changed for ``settle`` seconds (one the scans have not seen
        yet, having just appeared, has not settled)."""
        times = [self.changed.get(ref.path) for ref in study.images]
        return all(t is not None and now - t >= settle for t in times)

    def covered(self, now: float, settle: float) -> None:
        """A batch that started at ``now`` screened every settled change: forget those."""
        self.pending = {p: t for p, t in self.pending.items() if now - t < settle}


class StopSignals:
    """SIGINT and SIGTERM set :attr:`stop` (and wake the loop) instead of raising; a second
    SIGINT raises KeyboardInterrupt as usual. Handlers are put back by :meth:`restore`.

    The handler writes its one line straight to file descriptor 2: a ``print`` there could land
    inside another ``print`` of the main thread and raise a reentrant-call error mid-batch.
    """

    def __init__(self) -> None:
        self.stop, self.wake = threading.Event(), threading.Event()
        self._old: dict[int, Any] = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.stop.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.stop.set()
        self.wake.set()
        try:
            os.write(2, f"{signal.Signals(signum).name}: stopping after the current study (the state "
                        "is kept; Ctrl+C again to stop at once)\n".encode())
        except OSError:  # no stderr (a service): stopping matters, saying so does not
            pass

    def restore(self) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old.clear()


def start_observer(root: Path, wake: threading.Event) -> Any | None:
    """watchdog's native observer on ``root``, setting ``wake`` on every change; None where there
    is none (watchdog missing, only its polling observer, or the observer refused to start)."""
    try:
        from watchdog.events import FileSystemEvent, FileSystemEventHandler
        from watchdog.observers import Observer
        from watchdog.observers.polling import PollingObserver
    except ImportError:
        return None

    class _Wake(FileSystemEventHandler):
        def on_any_event(self, event: FileSystemEvent) -> None:
            if event.event_type not in ("opened", "closed_no_write"):  # reads (ours) change nothing
                wake.set()

    observer = Observer()
    if isinstance(observer, PollingObserver):
        return None  # our own scans poll more cheaply than a second walker
    try:
        observer.schedule(_Wake(), str(root), recursive=True)
        observer.start()
    except OSError:  # e.g. the inotify watch limit: poll instead
        return None
    return observer


def _say(line: str) -> None:
    print(line, flush=True)


def _inside(out: str | Path, root: Path) -> Path | None:
    """The output folder, spelled as the scans spell paths, when it lies inside the watched one:
    its writes are not new studies."""
    o, r = Path(out).resolve(), root.resolve()
    if o == r:
        raise ConfigError("--out must not be the watched folder itself (a subfolder will do)")
    return root / o.relative_to(r) if o.is_relative_to(r) else None


def _summary(res: ScreenResult, seconds: float, changes: Changes) -> str:
    new = sum(not r.resumed for r in res.results)
    waiting = f"; {len(changes.pending)} files still changing" if changes.pending else ""
    return (f"{time.strftime('%H:%M:%S')} {plural(new, 'study', 'studies')} screened "
            f"({plural(res.n_scored_images, 'image')} scored, {seconds:.1f}s); worklist: "
            f"{len(res.ranked)} ranked, {len(res.not_indicated)} not indicated; "
            f"{plural(len(res.failures), 'image')} failed{waiting}")


@dataclass
class _Watch:
    """One watcher's fixed parts: what each batch needs besides the changes."""

    root: Path
    engine: Engine
    out: str | Path
    state: ScreenState
    alias: Aliases
    options: WatchOptions
    signals: StopSignals
    screen_kw: dict[str, Any]
    say: Callable[[str], None]

    def batch(self, changes: Changes) -> None:
        """Screen the settled studies, then rewrite the outputs (unless stopped halfway: the
        previous outputs then stay, and the next start lists what this batch committed)."""
        now, t0 = time.monotonic(), time.time()
        settle = self.options.settle
        res = screen(self.root, self.engine, cancel=self.signals.stop.is_set, state=self.state,
                     select=lambda st: changes.settled(st, now, settle), **self.screen_kw)
        changes.covered(now, settle)
        self.state.flush()
        if res.complete:
            write_run(res, self.engine, self.out, self.state, self.alias)
            self.say(_summary(res, time.time() - t0, changes))

    def timeout(self, changes: Changes, observer: Any | None) -> float:
        t = self.options.poll_interval if observer is None else HEARTBEAT_S
        w = changes.wait_s(time.monotonic(), self.options.settle)
        return t if w is None else min(t, w + 0.05)


def watch_folder(src: str | Path, engine: Engine, out: str | Path | None,
                 options: WatchOptions | None = None, *, restart: bool = False,
                 anonymize: bool = False, workers: int | None = None, dicom_out: bool = False,
                 fast_decode: FastDecode = False, group_by: str = "auto",
                 say: Callable[[str], None] | None = None) -> int:
    """Watch ``src`` until SIGINT/SIGTERM (see the module docstring); returns the exit status 0.

    ``say`` gets one line per batch and per event (stdout by default): counts and times, never
    a study key or a path under ``src``, which may name a patient.
    """
    options = options or WatchOptions()
    if not out:
        raise ConfigError("--watch needs --out: the state and the worklist it keeps up to date live there")
    if options.settle < 0 or options.poll_interval <= 0:
        raise ConfigError(f"--settle {options.settle:g} / --poll-interval {options.poll_interval:g}: "
                          "expected settle >= 0 and a poll interval > 0 seconds")
    say = say or _say
    root = Path(src)
    ignore = _inside(out, root)
    state, alias = open_state(src, engine, out, restart=restart, anonymize=anonymize,
                              fast_decode=fast_decode)
    signals = StopSignals()
    observer = None
    # One pool for the whole watch: a batch of a study or two would otherwise pay the workers'
    # start (~0.3 s of CPU each) every time files arrive
    pool = Workers(default_workers() if workers is None else workers)
    try:
        kw = {"workers": pool, "alias": alias, "fast_decode": fast_decode, "group_by": group_by,
              "dicom_out": Path(out) / "dicom" if dicom_out else None}
        w = _Watch(root, engine, out, state, alias, options, signals, kw, say)
        observer = _announce(root, options, signals, say)
        _loop(w, Changes(root, ignore=ignore), observer)
    finally:
        if observer is not None:
            observer.stop()
            observer.join(5)
        pool.close()
        state.close()
        signals.restore()
    say("stopped: every finished study is in the state; the next start goes on from there")
    return 0


def _announce(root: Path, options: WatchOptions, signals: StopSignals, say: Callable[[str], None]) -> Any | None:
    """Start the observer (unless polling is asked for or needed) and say how changes are seen."""
    fs = filesystem_type(root)
    polling = options.polling or fs in NETWORK_FS or root.is_file()
    observer = None if polling else start_observer(root, signals.wake)
    how = (f"native file events ({type(observer).__name__})" if observer is not None
           else f"polling every {options.poll_interval:g}s" + (f" (network share: {fs})" if fs in NETWORK_FS else ""))
    say(f"watching the folder: {how}; a study is screened once its files are unchanged for "
        f"{options.settle:g}s; Ctrl+C or SIGTERM stops")
    return observer


def _loop(w: _Watch, changes: Changes, observer: Any | None) -> None:
    """Scan, screen when a change has settled, sleep until the next change or deadline."""
    first, missing = True, False
    while not w.signals.stop.is_set():
        if not w.root.exists():  # an unmounted share must not look like an emptied folder
            if not missing:
                w.say(f"{time.strftime('%H:%M:%S')} the watched folder is unavailable; waiting for it")
            missing = True
            w.signals.wake.wait(w.options.poll_interval)
            continue
        missing = False
        changes.scan(time.monotonic())
        if first or changes.due(time.monotonic(), w.options.settle):
            w.batch(changes)
            first = False
        if w.signals.wake.wait(w.timeout(changes, observer)) and observer is not None:
            w.signals.stop.wait(0.2)  # a burst of events (a file written in chunks): one scan
        w.signals.wake.clear()
