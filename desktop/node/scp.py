"""The Storage SCP: what mura-node accepts from the network, and how it refuses the rest.

Accepted: the projection radiography storage SOP classes a clinic sends for musculoskeletal
films (CR, DX for presentation, DX for processing, Secondary Capture) in every transfer syntax
the decoder reads (:func:`accepted_transfer_syntaxes`), plus Verification (C-ECHO) so the PACS
administrator can test the link. Digital mammography, intra-oral and every other SOP class is
refused at negotiation: its presentation context is rejected (abstract syntax not supported),
so the sender knows at once and nothing is spooled.

Security: the association is refused unless the calling AE title is listed in the configuration
and the called AE title is ours; at most ``max_associations`` associations run at a time; the
server listens only on the configured address, and only from :func:`start_scp`. Log lines name
the association (calling AE, address) and the study key, never a patient identifier (the CLI
keeps pynetdicom's own logger quiet: its lines quote UIDs).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from desktop.node.spool import CANNOT_UNDERSTAND, Spool, Stored
from models.errors import DicomNetworkError

if TYPE_CHECKING:
    from pynetdicom.transport import ThreadedAssociationServer

    from desktop.node.config import NodeConfig

log = logging.getLogger("mura.node")

CR = "1.2.840.10008.5.1.4.1.1.1"
DX_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.1"
DX_PROCESSING = "1.2.840.10008.5.1.4.1.1.1.1.1"
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
VERIFICATION = "1.2.840.10008.1.1"
#: The image storage SOP classes a clinic sends us (mammography, 1.2.840.10008.5.1.4.1.1.1.2*,
#: and intra-oral, .1.3*, deliberately excluded: the model is not for them).
STORAGE_SOP_CLASSES = {CR: "CR", DX_PRESENTATION: "DX", DX_PROCESSING: "DX for processing",
                       SECONDARY_CAPTURE: "Secondary Capture"}
#: A dataset that does not match the SOP class it was sent as (PS3.4 B.2.3).
DATASET_MISMATCH = 0xA900
#: Transfer syntaxes whose pixel data pydicom reads when a decoder plugin is installed.
_CANDIDATE_SYNTAXES = (
    "1.2.840.10008.1.2.1", "1.2.840.10008.1.2", "1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.2",
    "1.2.840.10008.1.2.5", "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51",
    "1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70", "1.2.840.10008.1.2.4.80",
    "1.2.840.10008.1.2.4.81", "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91",
    "1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.4.202", "1.2.840.10008.1.2.4.203",
)


def accepted_transfer_syntaxes() -> list[str]:
    """Every transfer syntax the screening decoder (pydicom with this install's plugins) can
    decode, uncompressed first: accepting one it cannot decode would turn a study into failures
    after the sender had been told it was stored."""
    from pydicom.pixels import get_decoder

    out = []
    for ts in _CANDIDATE_SYNTAXES:
        try:
            if get_decoder(ts).is_available:
                out.append(ts)
        except (NotImplementedError, ValueError):
            continue
    return out


def peer_name(assoc: Any) -> str:
    """``AE@address:port`` of the calling side: how log lines and errors name an association."""
    r = assoc.requestor
    return f"{str(r.ae_title).strip() or '?'}@{r.address}:{r.port}"


class StoreHandler:
    """The C-STORE handler: checks the dataset against its context, then spools it.

    ``on_stored(key, duplicate)`` is told of every instance kept, so the node can restart the
    study's quiet period.
    """

    def __init__(self, spool: Spool, on_stored: Callable[[Stored], None]) -> None:
        self.spool = spool
        self.on_stored = on_stored

    def __call__(self, event: Any) -> int:
        peer = peer_name(event.assoc)
        try:
            return self._store(event, peer)
        except DicomNetworkError as e:
            log.warning("refused an instance from %s: %s (status 0x%04X)", peer, e.reason,
                        e.status or CANNOT_UNDERSTAND)
            return e.status or CANNOT_UNDERSTAND
        except Exception as e:  # noqa: BLE001 - a bad dataset must not kill the association thread
            log.warning("refused an instance from %s: cannot read it (%s)", peer, type(e).__name__)
            return CANNOT_UNDERSTAND

    def _store(self, event: Any, peer: str) -> int:
        request_class = str(event.request.AffectedSOPClassUID)
        if request_class not in STORAGE_SOP_CLASSES:  # negotiation refuses these; belt and braces
            raise DicomNetworkError(peer, f"SOP class {request_class} is not accepted", DATASET_MISMATCH)
        ds = event.dataset
        sop_class = str(ds.get("SOPClassUID", "") or "")
        sop_uid = str(ds.get("SOPInstanceUID", "") or "")
        if sop_class != request_class:
            raise DicomNetworkError(peer, f"dataset SOP class {sop_class or '(none)'} sent as "
                                    f"{STORAGE_SOP_CLASSES[request_class]}", DATASET_MISMATCH)
        if sop_uid != str(event.request.AffectedSOPInstanceUID):
            raise DicomNetworkError(peer, "dataset SOP Instance UID differs from the request's",
                                    DATASET_MISMATCH)
        stored = self.spool.store(str(ds.get("StudyInstanceUID", "") or ""), sop_uid,
                                  event.encoded_dataset(include_meta=True), peer)
        self.on_stored(stored)
        return 0x0000


def _log_event(what: str, level: int = logging.INFO) -> Callable[[Any], None]:
    def handler(event: Any) -> None:
        log.log(level, "association %s: %s", what, peer_name(event.assoc))

    return handler


def _log_rejection(cfg: NodeConfig) -> Callable[[Any], None]:
    """Why an association was rejected, in the administrator's terms (pynetdicom only says that
    it was): the calling AE title, the called one, or the association limit."""

    def handler(event: Any) -> None:
        calling = str(event.assoc.requestor.ae_title).strip()
        primitive = getattr(event.assoc.requestor, "primitive", None)
        called = str(getattr(primitive, "called_ae_title", "") or "").strip()
        if calling not in cfg.listen.allowed_callers:
            why = f"calling AE title {calling!r} is not in allowed_callers"
        elif called and called != cfg.listen.ae_title:
            why = f"called AE title {called!r} is not ours ({cfg.listen.ae_title!r})"
        else:
            why = f"max_associations ({cfg.listen.max_associations}) reached"
        log.warning("association rejected: %s: %s", peer_name(event.assoc), why)

    return handler


def build_ae(cfg: NodeConfig) -> Any:
    """The pynetdicom application entity of the listening side, configured but not listening."""
    from pynetdicom import AE

    ae = AE(ae_title=cfg.listen.ae_title)
    ae.require_called_aet = True
    ae.require_calling_aet = list(cfg.listen.allowed_callers)
    ae.maximum_associations = cfg.listen.max_associations
    ae.network_timeout = 60
    ae.acse_timeout = 30
    ae.dimse_timeout = 60
    syntaxes = accepted_transfer_syntaxes()
    for sop_class in STORAGE_SOP_CLASSES:
        ae.add_supported_context(sop_class, syntaxes)
    ae.add_supported_context(VERIFICATION)
    return ae


def start_scp(cfg: NodeConfig, spool: Spool, on_stored: Callable[[Stored], None]) -> ThreadedAssociationServer:
    """Start listening on ``cfg.listen.address:port`` (threads; returns the server to shut down).

    The only place mura-node opens a listening socket.
    """
    from pynetdicom import evt

    ssl_context = None
    if cfg.listen.tls is not None:
        from desktop.node.tls import server_context

        ssl_context = server_context(cfg.listen.tls, cfg.path)
    handlers: list = [
        (evt.EVT_C_STORE, StoreHandler(spool, on_stored)),
        (evt.EVT_C_ECHO, lambda event: 0x0000),
        (evt.EVT_ACCEPTED, _log_event("accepted")),
        (evt.EVT_REJECTED, _log_rejection(cfg)),
        (evt.EVT_ABORTED, _log_event("aborted", logging.WARNING)),
    ]
    ae = build_ae(cfg)
    try:
        server = ae.start_server((cfg.listen.address, cfg.listen.port), block=False,
                                 ssl_context=ssl_context, evt_handlers=handlers)
    except OSError as e:
        raise DicomNetworkError(f"{cfg.listen.address}:{cfg.listen.port}",
                                f"cannot listen there ({e.strerror or e}): another program on "
                                "the port, or an address this machine does not have") from e
    log.info("listening as %s on %s:%d%s; callers allowed: %s", cfg.listen.ae_title,
             cfg.listen.address, cfg.listen.port, " (TLS)" if ssl_context else "",
             ", ".join(cfg.listen.allowed_callers))
    return server
