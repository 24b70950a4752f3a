"""What the node received and what became of it: a read-only listing for the viewer and admins.

Why a function of its own, reading files only: the viewer (a "Received" list) and
``mura-node --list`` run as other processes, possibly as another user, while the node writes.
Everything read here is written atomically by the node (``node.json``, the outbox markers, the
worklist), so a reader sees either the old or the new state and never has to lock anything;
nothing here writes, opens a socket or imports pynetdicom.
"""

from __future__ import annotations

import csv
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from desktop.node.layout import outbox_dir, read_node_json, results_dir, spool_dir
from desktop.node.outbox import Outbox
from desktop.node.spool import REFUSED_MARKER
from models.errors import ConfigError

#: Where a study is in its life.
RECEIVING = "receiving"  # instances arrived, not screened yet (or changed since)
REFUSED = "refused"  # over the study size limit
SCREENED = "screened"  # results queued, not all sent yet
SENT = "sent"  # every result object stored by the PACS

#: Where the viewer looks for the node when none was chosen: this variable (a configuration file
#: or a data folder), else the Linux package's configuration file.
NODE_ENV = "MURA_NODE_CONFIG"
SYSTEM_CONFIG = Path("/etc/mura-fracture/node.toml")


@dataclass(frozen=True)
class ReceivedStudy:
    """One study the node received, as far as it got. ``key`` is the node's study key (a hash of
    the Study Instance UID). ``identity`` holds the worklist's identity fields (patient, accession,
    date, ...; hashed when the node runs with ``anonymize``) once the study was screened."""

    key: str
    status: str
    n_instances: int
    received_at: float | None  # time of the newest instance in the spool (None: spool cleared)
    screened_at: float | None = None
    verdict: str = ""
    probability: float | None = None
    body_part: str = ""
    not_indicated_reason: str = ""
    model: str = ""
    word: str = ""  # what ``probability`` is of ("fracture", "abnormality"): the model's task
    results_pending: int = 0
    results_sent: int = 0
    send_error: str = ""
    report: Path | None = None
    worklist: Path | None = None
    identity: dict[str, str] = field(default_factory=dict)


def received_studies(data_dir: str | Path) -> list[ReceivedStudy]:
    """Every study in ``data_dir``, newest first. ``data_dir`` is the node's ``[node] data_dir``:
    ``desktop.node.config.load_config(path).data_dir`` for its configuration file
    (``/etc/mura-fracture/node.toml`` and ``/var/lib/mura-node`` in the Linux package, where
    users in the ``mura-node`` group may read it)."""
    data = Path(data_dir)
    spool, results = spool_dir(data), results_dir(data)
    keys = {p.name for root in (spool, results) if root.is_dir() for p in root.iterdir() if p.is_dir()}
    outbox = Outbox(outbox_dir(data))
    out = [_study(key, spool / key, results / key, outbox) for key in keys]
    return sorted(out, key=lambda s: -(s.received_at or s.screened_at or 0.0))


def _study(key: str, spooled: Path, result: Path, outbox: Outbox) -> ReceivedStudy:
    files = sorted(f for f in spooled.glob("*.dcm") if not f.name.startswith("."))
    mtimes = [_mtime(f) for f in files]
    info = read_node_json(result)
    sent = outbox.status(key)
    if (spooled / REFUSED_MARKER).exists():
        status = REFUSED
    elif not info or (files and _changed_since(info, files)):
        status = RECEIVING
    else:
        status = SENT if sent.pending == 0 and sent.sent > 0 else SCREENED
    report, worklist = result / "report.html", result / "worklist.csv"
    return ReceivedStudy(
        key=key, status=status, n_instances=len(files) or int(info.get("n_instances", 0)),
        received_at=max(mtimes) if mtimes else None, screened_at=info.get("screened_at"),
        verdict=str(info.get("verdict", "")), probability=info.get("probability"),
        body_part=str(info.get("body_part", "")),
        not_indicated_reason=str(info.get("not_indicated_reason", "")),
        model=str(info.get("model", "")), word=str(info.get("word", "")),
        results_pending=sent.pending, results_sent=sent.sent,
        send_error=sent.last_error if sent.pending else "",
        report=report if report.is_file() else None,
        worklist=worklist if worklist.is_file() else None,
        identity=_identity(worklist) if info else {})


def _changed_since(info: dict, files: list[Path]) -> bool:
    from desktop.screening.state import fingerprint, stamp

    try:
        return fingerprint([stamp(f) for f in files]) != info.get("fingerprint")
    except OSError:
        return True  # a file went away while we looked: the node is working on it


def _identity(worklist: Path) -> dict[str, str]:
    from desktop.screening.outputs import IDENTITY_FIELDS

    try:
        with worklist.open(newline="", encoding="utf-8") as f:
            row = next(csv.DictReader(f), None)
    except (OSError, csv.Error, UnicodeDecodeError):
        return {}
    return {k: row.get(k, "") or "" for k in IDENTITY_FIELDS} if row else {}


def _mtime(p: Path) -> float:
    try:
        return p.stat().st_mtime
    except OSError:
        return 0.0


def node_data_dir(location: str | Path) -> Path:
    """The node's data folder from ``location``: its configuration file (``[node] data_dir``)
    or the data folder itself. Raises :class:`ConfigError` (naming the path) for anything else,
    so the viewer can say what was wrong instead of showing an empty list."""
    p = Path(location).expanduser()
    if p.is_file():
        from desktop.node.config import load_config

        return load_config(p).data_dir
    if p.is_dir() and (spool_dir(p).is_dir() or results_dir(p).is_dir()):
        return p
    if p.is_dir():
        raise ConfigError(f"{p}: not a mura-node data folder (it has no spool/ or results/: "
                          "has the node received anything yet?)")
    raise ConfigError(f"{p}: no such file or folder; expected the node's configuration file "
                      f"(e.g. {SYSTEM_CONFIG}) or its data folder")


def default_node_location() -> Path | None:
    """``$MURA_NODE_CONFIG``, else the system configuration file if there is one, else None."""
    env = os.environ.get(NODE_ENV, "").strip()
    if env:
        return Path(env)
    return SYSTEM_CONFIG if SYSTEM_CONFIG.is_file() else None


def status_text(s: ReceivedStudy) -> str:
    """Where the study is, in the words of the viewer's list (and of ``--list`` users)."""
    if s.status == REFUSED:
        return "Refused: over the node's study size limit"
    if s.status == RECEIVING:
        return f"Receiving ({s.n_instances} image{'s' if s.n_instances != 1 else ''} so far)"
    total = s.results_sent + s.results_pending
    if s.status == SENT:
        return f"Results sent to the PACS ({s.results_sent}/{total})"
    if s.results_pending:
        why = f"; last error: {s.send_error}" if s.send_error else ""
        return f"Screened; {s.results_pending} of {total} results waiting for the PACS{why}"
    return "Screened; no result objects to send"


def when_text(t: float | None, now: float | None = None) -> str:
    """A local time for the list: the clock time today, else the date and time."""
    if t is None:
        return ""
    now = time.time() if now is None else now
    same_day = time.localtime(t)[:3] == time.localtime(now)[:3]
    return time.strftime("%H:%M:%S" if same_day else "%Y-%m-%d %H:%M", time.localtime(t))
