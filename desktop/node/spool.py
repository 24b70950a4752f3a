"""The node's spool: every received instance, one file per SOP instance, one folder per study.

Layout: ``DATA/spool/<study key>/<instance key>.dcm``, both keys hashes of the Study and SOP
Instance UIDs (:func:`study_key`), so no folder name, file name or log line (a library warning
quotes a path) carries a DICOM identifier.
Each instance is written atomically (:func:`models.fsutil.atomic_write_bytes`: a hidden temporary
file renamed into place, which the screener's discovery ignores), so a kill -9 leaves whole
instances or nothing; leftover temporaries are removed by :meth:`Spool.recover` at the next start.

Duplicates: an instance received again with the same bytes is not rewritten (its mtime stays, so
the study's fingerprint, and with it its screening result, stays valid); one with other bytes
replaces the old copy and the study is screened again.

Bounds: a study larger than ``max_study_bytes`` is refused as a whole (its instances are dropped
and a ``.refused`` marker keeps refusing it until the retention period ends); an instance that
would take the spool past ``max_spool_bytes`` is refused with "out of resources", which a PACS
retries later. All bookkeeping happens under one lock: associations store concurrently.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from models.errors import DicomNetworkError
from models.fsutil import atomic_write_bytes, atomic_write_text

REFUSED_MARKER = ".refused"
_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
#: DIMSE statuses of a refused C-STORE (PS3.4 B.2.3).
OUT_OF_RESOURCES = 0xA700
CANNOT_UNDERSTAND = 0xC000


def valid_uid(uid: str) -> bool:
    """A DICOM UID (PS3.5 9.1): digits and dots, at most 64 characters."""
    return 0 < len(uid) <= 64 and bool(_UID.match(uid))


def study_key(study_uid: str) -> str:
    """The name a study goes by in the spool, the results and the logs: a hash of its Study
    Instance UID (not reversible into it, stable across restarts)."""
    return hashlib.sha256(study_uid.encode("ascii", "replace")).hexdigest()[:24]


def instance_name(sop_uid: str) -> str:
    """The spool file name of an instance: a hash of its SOP Instance UID (the same instance sent
    again lands on the same file, which is how duplicates are recognised)."""
    return hashlib.sha256(sop_uid.encode("ascii", "replace")).hexdigest()[:32] + ".dcm"


@dataclass
class Stored:
    """What :meth:`Spool.store` did with an instance."""

    key: str
    duplicate: bool  # the same bytes were already there: nothing written


class Spool:
    """The spool folder and its accounting (bytes per study, last arrival per study)."""

    def __init__(self, root: Path, max_study_bytes: int, max_spool_bytes: int) -> None:
        self.root = Path(root)
        self.max_study_bytes, self.max_spool_bytes = max_study_bytes, max_spool_bytes
        self._lock = threading.Lock()
        self._sizes: dict[str, int] = {}
        self._arrivals: dict[str, float] = {}  # key -> time.monotonic() of its last new instance
        self._reserved = 0

    # -- start-up ---------------------------------------------------------------------------

    def recover(self) -> list[str]:
        """Remove temporaries a kill left behind, count what is there; returns the study keys
        holding instances. Their arrival is set to now: a study whose sender was cut off gets the
        full quiet period to resume before it is screened."""
        self.root.mkdir(parents=True, exist_ok=True)
        now = time.monotonic()
        keys = []
        with self._lock:
            self._sizes.clear()
            for d in sorted(p for p in self.root.iterdir() if p.is_dir()):
                for tmp in d.glob(".*.tmp"):
                    tmp.unlink(missing_ok=True)
                files = self.instances(d.name)
                self._sizes[d.name] = sum(f.stat().st_size for f in files)
                if files:
                    keys.append(d.name)
                    self._arrivals[d.name] = now
        return keys

    # -- receiving --------------------------------------------------------------------------

    def store(self, study_uid: str, sop_uid: str, data: bytes, peer: str) -> Stored:
        """Write one instance atomically; raises :class:`DicomNetworkError` (with the DIMSE
        status to answer) when it is refused. ``peer`` names the association in that error."""
        if not valid_uid(study_uid) or not valid_uid(sop_uid):
            raise DicomNetworkError(peer, "Study or SOP Instance UID missing or not a valid UID",
                                    CANNOT_UNDERSTAND)
        key = study_key(study_uid)
        path = self.root / key / instance_name(sop_uid)
        old = path.stat().st_size if path.is_file() else 0
        if old == len(data) and path.read_bytes() == data:
            return Stored(key, duplicate=True)
        grow = len(data) - old
        self._reserve(key, grow, peer)
        try:
            atomic_write_bytes(path, data)
        except OSError as e:
            with self._lock:
                self._reserved -= grow
            raise DicomNetworkError(peer, f"study {key}: cannot write the instance ({e.strerror or e})",
                                    OUT_OF_RESOURCES) from e
        with self._lock:
            self._reserved -= grow
            self._sizes[key] = self._sizes.get(key, 0) + grow
            self._arrivals[key] = time.monotonic()
        return Stored(key, duplicate=False)

    def _reserve(self, key: str, grow: int, peer: str) -> None:
        """Check the bounds and hold ``grow`` bytes for the write in flight."""
        with self._lock:
            if (self.root / key / REFUSED_MARKER).exists():
                raise DicomNetworkError(peer, f"study {key} was refused earlier (over the study "
                                        "size limit)", OUT_OF_RESOURCES)
            if self._sizes.get(key, 0) + grow > self.max_study_bytes:
                self._refuse_study(key)
                raise DicomNetworkError(peer, f"study {key} is over max_study_mb "
                                        f"({self.max_study_bytes >> 20} MB): refused as a whole",
                                        OUT_OF_RESOURCES)
            if self.used_bytes + grow > self.max_spool_bytes:
                raise DicomNetworkError(peer, f"spool full ({self.used_bytes >> 20} of "
                                        f"{self.max_spool_bytes >> 20} MB): send again later",
                                        OUT_OF_RESOURCES)
            self._reserved += grow

    def _refuse_study(self, key: str) -> None:
        """Drop what arrived of an oversized study and remember the refusal (lock held)."""
        folder = self.root / key
        for f in self.instances(key):
            f.unlink(missing_ok=True)
        atomic_write_text(folder / REFUSED_MARKER, json.dumps(
            {"reason": f"over max_study_mb ({self.max_study_bytes >> 20} MB)", "at": time.time()}))
        self._sizes[key] = 0
        self._arrivals.pop(key, None)

    # -- reading ----------------------------------------------------------------------------

    @property
    def used_bytes(self) -> int:
        return sum(self._sizes.values()) + self._reserved

    def folder(self, key: str) -> Path:
        return self.root / key

    def instances(self, key: str) -> list[Path]:
        return sorted(p for p in self.root.joinpath(key).glob("*.dcm") if not p.name.startswith("."))

    def quiet_since(self, key: str) -> float | None:
        """Seconds since the study's last new instance (None: nothing arrived this run)."""
        with self._lock:
            t = self._arrivals.get(key)
        return None if t is None else time.monotonic() - t

    def refused(self, key: str) -> bool:
        return (self.root / key / REFUSED_MARKER).exists()

    # -- cleaning ---------------------------------------------------------------------------

    def remove(self, key: str) -> None:
        """Drop a study's instances (after its results were sent and retained long enough)."""
        with self._lock:
            shutil.rmtree(self.root / key, ignore_errors=True)
            self._sizes.pop(key, None)
            self._arrivals.pop(key, None)

    def expired_refusals(self, max_age_s: float) -> list[str]:
        now = time.time()
        out = []
        for marker in self.root.glob(f"*/{REFUSED_MARKER}"):
            try:
                if now - marker.stat().st_mtime >= max_age_s:
                    out.append(marker.parent.name)
            except OSError:
                continue
        return out
