"""Optional TLS for mura-node (DICOM over TLS, PS3.15 B.1): SSL contexts from the [tls] table.

Why a module of its own: :mod:`ssl` is imported only when a configuration asks for TLS, and both
directions (the listening Storage SCP and the SCU sending results) build their contexts the same
way, with the same minimum version, so a clinic's security review reads one place. A bad file
is a :class:`~models.errors.NodeConfigError` naming the key, never an ``ssl.SSLError`` traceback.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from models.errors import NodeConfigError

if TYPE_CHECKING:
    import ssl


@dataclass(frozen=True)
class TlsConfig:
    """The [tls] table: TLS for both directions. ``ca`` set: peers must present a certificate
    it signed (and the PACS's certificate is checked against it when we send)."""

    certificate: Path
    private_key: Path
    ca: Path | None = None


def _load(ctx: ssl.SSLContext, tls: TlsConfig, config_path: Path) -> ssl.SSLContext:
    import ssl

    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    for key, f in (("tls.certificate", tls.certificate), ("tls.private_key", tls.private_key),
                   ("tls.ca", tls.ca)):
        if f is not None and not f.is_file():
            raise NodeConfigError(config_path, key, f"{f}: no such file")
    try:
        ctx.load_cert_chain(str(tls.certificate), str(tls.private_key))
    except (ssl.SSLError, OSError) as e:
        raise NodeConfigError(config_path, "tls.certificate", f"{tls.certificate} with "
                              f"{tls.private_key}: not a usable certificate and key ({e})") from e
    if tls.ca is not None:
        try:
            ctx.load_verify_locations(cafile=str(tls.ca))
        except (ssl.SSLError, OSError) as e:
            raise NodeConfigError(config_path, "tls.ca", f"{tls.ca}: not a usable CA file ({e})") from e
    return ctx


def server_context(tls: TlsConfig, config_path: Path) -> ssl.SSLContext:
    """The listening side: our certificate; with ``ca``, callers must present one it signed."""
    import ssl

    ctx = _load(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER), tls, config_path)
    ctx.verify_mode = ssl.CERT_REQUIRED if tls.ca is not None else ssl.CERT_NONE
    return ctx


def client_context(tls: TlsConfig, config_path: Path) -> ssl.SSLContext:
    """The sending side: our certificate as client certificate; the PACS's certificate is checked
    against ``ca`` (host name included), or against the system's trusted CAs without one."""
    import ssl

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if tls.ca is None:
        ctx.load_default_certs(ssl.Purpose.SERVER_AUTH)
    return _load(ctx, tls, config_path)
