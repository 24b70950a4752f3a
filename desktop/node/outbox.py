"""The persistent outbox: results waiting to be sent to the PACS, kept on disk until it took them.

Why files, not a queue in memory: the PACS may be down for hours, and the node may be restarted
(or killed) meanwhile; nothing may be lost. Layout, per study key:

* ``DATA/outbox/pending/<key>/<SOP Instance UID>.dcm``: a copy of each SC/SR to send (a copy,
  not a reference: screening the study again must not change an object already queued);
* ``DATA/outbox/sent/<key>/<SOP Instance UID>.json``: written when the PACS answered success,
  *before* the pending copy is deleted;
* ``DATA/outbox/pending/<key>/.status.json``: attempts and the last error, for the listing.

A kill between the two steps leaves both files; :meth:`Outbox.pending` then counts the object
as sent and removes the copy. A kill during the C-STORE leaves the copy, which is sent again:
delivery is at least once, and a PACS keeps one instance per SOP Instance UID. Every file is
written atomically (:mod:`models.fsutil`).
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from models.dicom import read_header
from models.errors import DicomError, ImageDecodeError
from models.fsutil import atomic_write_bytes, atomic_write_text

STATUS = ".status.json"


@dataclass(frozen=True)
class Item:
    """One object waiting in the outbox."""

    key: str
    path: Path
    sop_class: str

    @property
    def sop_uid(self) -> str:
        return self.path.stem


@dataclass(frozen=True)
class OutboxStatus:
    """What the outbox knows of one study's results."""

    pending: int
    sent: int
    attempts: int = 0
    last_error: str = ""
    last_sent_at: float | None = None


class Outbox:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.pending_dir = self.root / "pending"
        self.sent_dir = self.root / "sent"
        self._lock = threading.Lock()
        self.changed = threading.Event()  # set on enqueue: the sender wakes up

    def enqueue(self, key: str, files: list[Path]) -> int:
        """Copy ``files`` (DICOM objects) into the outbox, skipping what was sent or queued
        already; returns how many were added. Raises :class:`DicomError` for a file that is not
        a DICOM object with a SOP Instance UID."""
        added = 0
        for f in files:
            ds = read_header(f)
            uid = str(ds.get("SOPInstanceUID", "") or "")
            if not uid or not all(c.isdigit() or c == "." for c in uid):
                raise DicomError(f, "result object has no usable SOP Instance UID")
            dst = self.pending_dir / key / f"{uid}.dcm"
            if dst.exists() or (self.sent_dir / key / f"{uid}.json").exists():
                continue
            atomic_write_bytes(dst, f.read_bytes())
            added += 1
        if added:
            self.changed.set()
        return added

    def pending(self) -> list[Item]:
        """Every object still to send, oldest study first; cleans up after a kill between
        'sent' and 'delete the copy'."""
        items: list[Item] = []
        if not self.pending_dir.is_dir():
            return items
        folders = sorted(self.pending_dir.iterdir(), key=lambda p: _mtime(p))
        for d in folders:
            for f in sorted(d.glob("[0-9]*.dcm")):
                if (self.sent_dir / d.name / f"{f.stem}.json").exists():
                    f.unlink(missing_ok=True)
                    continue
                items.append(Item(d.name, f, _sop_class(f)))
        return items

    def mark_sent(self, item: Item, destination: str) -> None:
        atomic_write_text(self.sent_dir / item.key / f"{item.sop_uid}.json",
                          json.dumps({"sent_at": time.time(), "destination": destination,
                                      "sop_class": item.sop_class}))
        item.path.unlink(missing_ok=True)
        with self._lock:
            folder = self.pending_dir / item.key
            if not any(folder.glob("[0-9]*.dcm")):
                (folder / STATUS).unlink(missing_ok=True)
                try:
                    folder.rmdir()
                except OSError:
                    pass

    def note_failure(self, key: str, reason: str) -> None:
        """Count a failed attempt for the study's results, with the reason (no identifiers)."""
        with self._lock:
            path = self.pending_dir / key / STATUS
            if not path.parent.is_dir():
                return
            old = _read_json(path)
            atomic_write_text(path, json.dumps({"attempts": int(old.get("attempts", 0)) + 1,
                                                "last_error": reason, "last_try": time.time()}))

    def status(self, key: str) -> OutboxStatus:
        pending = list((self.pending_dir / key).glob("[0-9]*.dcm"))
        sent = list((self.sent_dir / key).glob("*.json"))
        st = _read_json(self.pending_dir / key / STATUS)
        last = max((_mtime(p) for p in sent), default=None)
        return OutboxStatus(len(pending), len(sent), int(st.get("attempts", 0)),
                            str(st.get("last_error", "")), last)


def _mtime(p: Path) -> float:
    try:
        return p.stat().st_mtime
    except OSError:
        return 0.0


def _read_json(p: Path) -> dict:
    try:
        v = json.loads(p.read_text(encoding="utf-8"))
        return v if isinstance(v, dict) else {}
    except (OSError, ValueError):
        return {}


def _sop_class(path: Path) -> str:
    try:
        return str(read_header(path, specific_tags=["SOPClassUID"]).get("SOPClassUID", "") or "")
    except ImageDecodeError:
        return ""
