"""The node itself: receive into the spool, screen each complete study, queue its results.

Why this shape: everything that matters is on disk, so a kill -9 at any moment loses nothing.

* Receiving (:mod:`desktop.node.scp`, pynetdicom's threads) writes whole instances into
  ``DATA/spool/<key>/`` and marks the study pending.
* A study is complete when no new instance arrived for ``quiet_seconds``. It is then screened
  here, in the main thread, by the same core as ``mura-screen --dicom-out``
  (:func:`desktop.screening.outputs.screen_to_folder` on the study's spool folder, state, worklist,
  report and SC/SR in ``DATA/results/<key>/``): resumable, crash-safe, duplicates handled there.
* Its SC/SR objects are copied into the outbox (:mod:`desktop.node.outbox`) and
  ``DATA/results/<key>/node.json`` records which spool fingerprint was screened: a study whose
  instances changed since (or that never got a ``node.json``) is screened again at the next start.
* The sender thread (:mod:`desktop.node.scu`) empties the outbox into the PACS.

Retention: once a study's results were all sent and ``retain_hours`` passed, its spool folder and
its SC/SR copies are deleted; ``node.json``, the worklist and the report stay for the listing
(:mod:`desktop.node.received`).
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from typing import Any

from desktop.node.config import NodeConfig
from desktop.node.layout import NODE_JSON, outbox_dir, read_node_json, results_dir, spool_dir
from desktop.node.outbox import Outbox
from desktop.node.scu import Sender
from desktop.node.spool import Spool, Stored
from desktop.screening.render import task_word
from desktop.screening.state import fingerprint, stamp
from models.errors import ConfigError, MuraError
from models.fsutil import atomic_write_json

log = logging.getLogger("mura.node")

#: A study whose screening failed is tried again after this long, not in a tight loop.
SCREEN_RETRY_S = 60.0
SWEEP_EVERY_S = 60.0


class Node:
    """One running node. ``engine``: an already loaded :class:`models.engine.Engine` (tests),
    else the configured bundle is loaded by :meth:`start`."""

    def __init__(self, cfg: NodeConfig, engine: Any = None) -> None:
        self.cfg = cfg
        self.engine = engine
        data = cfg.data_dir
        self.spool = Spool(spool_dir(data), cfg.study.max_study_bytes, cfg.study.max_spool_bytes)
        self.outbox = Outbox(outbox_dir(data))
        self.results = results_dir(data)
        self.sender = Sender(cfg, self.outbox)
        self._pending: dict[str, float] = {}  # study key -> earliest time.monotonic() to screen it
        self._lock = threading.Lock()
        self._server: Any = None
        self._last_sweep = 0.0
        self._workers: Any = None  # the decode pool, kept between studies (started on first use)

    # -- life cycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Recover the spool and outbox, load the model, then listen and send."""
        self.results.mkdir(parents=True, exist_ok=True)
        for key in self.spool.recover():
            if not self.spool.refused(key) and self._fingerprint(key) != read_node_json(
                    self.results / key).get("fingerprint"):
                self._pending[key] = 0.0
        waiting = len(self.outbox.pending())
        log.info("spool: %d studies to screen, %.1f MB used; outbox: %d objects to send",
                 len(self._pending), self.spool.used_bytes / 2**20, waiting)
        if self.engine is None:
            if self.cfg.screening.workers:
                from desktop.screening.workers import prestart

                prestart()  # the decode workers' imports overlap the model's compilation
            self.engine = _load_engine(self.cfg)
        from desktop.node.scp import start_scp

        self._server = start_scp(self.cfg, self.spool, self._on_stored)
        self.sender.start()

    def stop(self) -> None:
        """Stop listening (associations in flight are cut; their senders retry), stop sending."""
        if self._server is not None:
            self._server.shutdown()
            self._server = None
        self.sender.stop()
        if self._workers is not None:
            self._workers.close()
            self._workers = None

    @property
    def port(self) -> int:
        """The port actually listened on (the configured one, or the OS's pick for port 0)."""
        return int(self._server.server_address[1]) if self._server is not None else self.cfg.listen.port

    def run(self, stop: threading.Event) -> None:
        """Screen studies as they complete until ``stop`` is set."""
        while not stop.is_set():
            if not self.step():
                stop.wait(0.2)

    def _on_stored(self, stored: Stored) -> None:
        if not stored.duplicate:
            with self._lock:
                self._pending[stored.key] = 0.0

    # -- screening --------------------------------------------------------------------------

    def due(self) -> list[str]:
        """Pending studies quiet for ``quiet_seconds`` (and past any retry delay)."""
        now = time.monotonic()
        quiet = self.cfg.study.quiet_seconds
        with self._lock:
            keys = [k for k, not_before in self._pending.items() if now >= not_before]
        return [k for k in keys if (self.spool.quiet_since(k) or quiet) >= quiet]

    def step(self) -> bool:
        """Screen one due study (True), or sweep expired ones when there is nothing to do."""
        due = self.due()
        if not due:
            if time.monotonic() - self._last_sweep >= SWEEP_EVERY_S:
                self._last_sweep = time.monotonic()
                self.sweep()
            return False
        key = due[0]
        with self._lock:
            self._pending.pop(key, None)  # an instance arriving from now on makes it pending again
        try:
            self.screen_study(key)
        except Exception as e:  # noqa: BLE001 - one study must not stop the node
            log.error("study %s: screening failed (%s: %s); retrying in %.0f s", key,
                      type(e).__name__, e if isinstance(e, MuraError) else "see traceback",
                      SCREEN_RETRY_S, exc_info=not isinstance(e, MuraError))
            with self._lock:
                self._pending.setdefault(key, time.monotonic() + SCREEN_RETRY_S)
        return True

    def _fingerprint(self, key: str) -> str:
        return fingerprint([stamp(p) for p in self.spool.instances(key)])

    def screen_study(self, key: str) -> None:
        """Screen one spooled study through the screening core and queue its SC/SR."""
        if self.spool.refused(key) or not self.spool.instances(key):
            return
        fp = self._fingerprint(key)
        t0 = time.monotonic()
        run = self._screen(key)
        res = run.result
        outputs = sorted((self.results / key / "dicom").rglob("[!.]*.dcm"))
        queued = self.outbox.enqueue(key, outputs)
        scored = res.results[0] if res.results else None
        summary = {
            "fingerprint": fp, "screened_at": time.time(), "model": self.engine.bundle.model_id,
            "word": task_word(self.engine.bundle.card),  # what the probability is of
            "n_instances": len(self.spool.instances(key)),
            "verdict": scored.verdict if scored else "no image",
            "probability": scored.probability if scored else None,
            "body_part": scored.body_part if scored else "",
            "not_indicated_reason": scored.scope if scored else "",
            "n_failed": len(res.failures), "outputs": [p.name for p in outputs],
            "export_errors": [reason for _, reason in res.export_errors],
        }
        atomic_write_json(self.results / key / NODE_JSON, summary)
        log.info("study %s: screened in %.1f s: %s; %d result objects queued", key,
                 time.monotonic() - t0, summary["verdict"], queued)
        for _, reason in res.export_errors:
            log.warning("study %s: DICOM results could not be written: %s", key, reason)

    def _screen(self, key: str) -> Any:
        from desktop.screening.decoding import choose_fast_decode
        from desktop.screening.outputs import screen_to_folder
        from desktop.screening.workers import Workers

        s = self.cfg.screening
        if self._workers is None:  # one pool for every study: a worker's start costs ~0.3 s CPU
            self._workers = Workers(s.workers)

        fast = choose_fast_decode(self.engine.bundle.card, fast=s.fast_decode, exact=s.exact_decode)

        def run(restart: bool) -> Any:
            return screen_to_folder(self.spool.folder(key), self.engine, self.results / key,
                                    restart=restart, anonymize=s.anonymize, workers=self._workers,
                                    dicom_out=True, fast_decode=fast)
        try:
            return run(False)
        except ConfigError as e:  # results of another model/decoding: this node's are what count
            log.info("study %s: earlier results do not match this configuration (%s); screening "
                     "again", key, type(e).__name__)
            return run(True)

    # -- retention --------------------------------------------------------------------------

    def sweep(self) -> list[str]:
        """Delete the spool (and SC/SR copies) of studies sent and retained long enough."""
        keep_s = self.cfg.study.retain_hours * 3600
        removed = []
        for key in self.spool.expired_refusals(keep_s):
            self.spool.remove(key)
        now = time.time()
        for folder in sorted(p for p in self.spool.root.iterdir() if p.is_dir()):
            key = folder.name
            info = read_node_json(self.results / key)
            with self._lock:
                busy = key in self._pending
            if (busy or not info or now - float(info.get("screened_at", now)) < keep_s
                    or self.outbox.status(key).pending or info.get("fingerprint") != self._fingerprint(key)):
                continue
            self.spool.remove(key)
            shutil.rmtree(self.results / key / "dicom", ignore_errors=True)
            removed.append(key)
        if removed:
            log.info("retention: %d studies removed from the spool", len(removed))
        return removed


def _load_engine(cfg: NodeConfig) -> Any:
    from models.engine import Engine
    from models.reference import require_default_bundle

    model = cfg.screening.model
    if model is None:
        found = require_default_bundle()
        log.info("%s", found.notice("mura-node"))
        model = found.path
    engine = Engine(str(model), device=cfg.screening.device, performance_hint="THROUGHPUT")
    log.info("model %s loaded on %s", engine.bundle.model_id, cfg.screening.device)
    return engine
