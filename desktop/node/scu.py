"""Results back to the PACS: a Storage SCU that empties the outbox, with retries.

One association per batch (PACS administrators count associations), proposing exactly the SOP
classes in the batch. An unreachable PACS, a rejected association or a failed C-STORE leaves the
objects in the outbox and the next attempt waits ``retry_seconds``, doubling up to
``retry_max_seconds``; a new result or a success resets the wait. Nothing is ever dropped:
the outbox is on disk (:mod:`desktop.node.outbox`).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from desktop.node.outbox import Item, Outbox
from models.dicom import read_dataset
from models.errors import DicomNetworkError, MuraError

if TYPE_CHECKING:
    from desktop.node.config import NodeConfig

log = logging.getLogger("mura.node")

#: Warnings a storage SCP may answer with; the object is stored (PS3.4 B.2.3).
_STORED = {0x0000, 0x0001, 0xB000, 0xB006, 0xB007}
BATCH = 64
_SYNTAXES = ("1.2.840.10008.1.2.1", "1.2.840.10008.1.2")  # explicit, implicit VR little endian


def destination_name(cfg: NodeConfig) -> str:
    d = cfg.destination
    return f"{d.ae_title}@{d.host}:{d.port}"


def _associate(cfg: NodeConfig, sop_classes: set[str]) -> Any:
    """An established association to the destination, or :class:`DicomNetworkError`."""
    from pynetdicom import AE, evt

    ae = AE(ae_title=cfg.listen.ae_title)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    ae.connection_timeout = 10
    for uid in sorted(sop_classes):
        ae.add_requested_context(uid, list(_SYNTAXES))
    tls_args = None
    if cfg.destination.tls and cfg.listen.tls is not None:
        from desktop.node.tls import client_context

        tls_args = (client_context(cfg.listen.tls, cfg.path), cfg.destination.host)
    d = cfg.destination
    connected: list[bool] = []
    assoc = ae.associate(d.host, d.port, ae_title=d.ae_title, tls_args=tls_args,
                         evt_handlers=[(evt.EVT_CONN_OPEN, lambda _e: connected.append(True))])
    if not assoc.is_established:
        if not connected:
            why = "cannot be reached (no TCP connection: host down, wrong port or firewall)"
        elif assoc.is_rejected:
            why = "rejected the association (does it know our AE title, host and port?)"
        else:
            why = "aborted the association (TLS mismatch, or no SOP class accepted)"
        raise DicomNetworkError(destination_name(cfg), why)
    return assoc


def echo_destination(cfg: NodeConfig) -> None:
    """A C-ECHO to the destination: the PACS administrator's first test of the link."""
    assoc = _associate(cfg, {"1.2.840.10008.1.1"})
    try:
        status = assoc.send_c_echo()
    finally:
        if assoc.is_established:
            assoc.release()
    code = getattr(status, "Status", None)
    if code is None or int(code) != 0:
        raise DicomNetworkError(destination_name(cfg), "C-ECHO got no success status"
                                + ("" if code is None else f" (0x{int(code):04X})"), code)


def send_items(cfg: NodeConfig, items: list[Item]) -> list[tuple[Item, str | None]]:
    """C-STORE ``items`` over one association: (item, None) for each stored, (item, reason) for
    each not. Raises :class:`DicomNetworkError` when no association could be made."""
    assoc = _associate(cfg, {i.sop_class for i in items if i.sop_class})
    out: list[tuple[Item, str | None]] = []
    try:
        for item in items:
            if not assoc.is_established:
                out.append((item, "the association ended early"))
                continue
            out.append((item, _store_one(assoc, item)))
    finally:
        if assoc.is_established:
            assoc.release()
    return out


def _store_one(assoc: Any, item: Item) -> str | None:
    try:
        ds = read_dataset(item.path)
        status = assoc.send_c_store(ds)
    except MuraError as e:
        return f"cannot read the queued object ({e})"
    except (ValueError, RuntimeError, OSError) as e:  # no accepted context, connection lost
        return f"not sent ({type(e).__name__}: {e})"
    code = getattr(status, "Status", None)
    if code is None:
        return "no answer to the C-STORE (timeout or connection lost)"
    return None if int(code) in _STORED else f"the PACS answered status 0x{int(code):04X}"


class Sender:
    """The thread that empties the outbox into the destination, with backoff."""

    def __init__(self, cfg: NodeConfig, outbox: Outbox) -> None:
        self.cfg, self.outbox = cfg, outbox
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mura-node-sender", daemon=True)
        self.wait_s = cfg.destination.retry_seconds
        self.next_try = 0.0

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self.outbox.changed.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            if self.outbox.changed.is_set():
                self.outbox.changed.clear()
                self.next_try = 0.0  # something new: try now, whatever the backoff said
            if time.monotonic() >= self.next_try:
                try:
                    if self.send_once():
                        continue  # more may be waiting
                except Exception:  # noqa: BLE001 - the sender must outlive any one bad attempt
                    log.exception("sending results failed unexpectedly; retrying later")
                    self._backoff()
            wait = self.next_try - time.monotonic()
            self.outbox.changed.wait(min(wait, 5.0) if wait > 0 else 5.0)

    def _backoff(self) -> None:
        self.next_try = time.monotonic() + self.wait_s
        self.wait_s = min(self.wait_s * 2, self.cfg.destination.retry_max_seconds)

    def send_once(self) -> bool:
        """One batch; True when something was sent (more may be waiting)."""
        items = self.outbox.pending()[:BATCH]
        if not items:
            return False
        dest = destination_name(self.cfg)
        try:
            results = send_items(self.cfg, items)
        except DicomNetworkError as e:
            for key in sorted({i.key for i in items}):
                self.outbox.note_failure(key, e.reason)
            log.warning("results not sent: %s %s; %d objects stay in the outbox, next try in %.1f s",
                        dest, e.reason, len(self.outbox.pending()), self.wait_s)
            self._backoff()
            return False
        failed = {}
        for item, error in results:
            if error is None:
                self.outbox.mark_sent(item, dest)
            else:
                failed[item.key] = error
        for key, error in failed.items():
            self.outbox.note_failure(key, error)
            log.warning("study %s: results not all stored by %s: %s", key, dest, error)
        sent = len(results) - sum(1 for _, e in results if e)
        for key in sorted({i.key for i, e in results if e is None} - set(failed)):
            log.info("study %s: results stored by %s", key, dest)
        if failed:
            self._backoff()
            return False
        self.wait_s = self.cfg.destination.retry_seconds
        return sent > 0
