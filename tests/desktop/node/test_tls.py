"""DICOM over TLS, both ways: with [tls] and a CA, the node accepts only callers presenting a
certificate that CA signed, and sends its results over TLS to a PACS whose certificate it checks.
Certificates are made here with the openssl command (skipped without it)."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from pathlib import Path

import pytest

from desktop.node.tls import TlsConfig, client_context, server_context
from tests.desktop.node.conftest import (
    Collector,
    echo,
    free_port,
    running_node,
    send,
    study_files,
    wait_for,
    write_config,
)

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="the openssl command is absent")


def _openssl(folder: Path, *args: str) -> None:
    subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Path:
    """A CA and, signed by it, certificates for the node and the PACS (both 127.0.0.1)."""
    d = tmp_path_factory.mktemp("pki")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl(d, "req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
             "-subj", "/CN=clinic test CA")
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    for name in ("node", "pacs"):
        _openssl(d, "req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}")
        _openssl(d, "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                 "-CAcreateserial", "-out", f"{name}.crt", "-days", "2", "-extfile", "san.ext")
    return d


def _pacs_tls(pki: Path, with_cert: bool = True) -> tuple[ssl.SSLContext, str]:
    """What the sending PACS uses: its own certificate (or none), the CA to check the node."""
    if with_cert:
        return client_context(TlsConfig(pki / "pacs.crt", pki / "pacs.key", pki / "ca.crt"), pki), "127.0.0.1"
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(str(pki / "ca.crt"))
    return ctx, "127.0.0.1"


def test_tls_both_ways(tmp_path, node_engine, pki, phantom_studies):
    dest = Collector(free_port()).start(server_context(
        TlsConfig(pki / "pacs.crt", pki / "pacs.key", pki / "ca.crt"), pki))
    tls = f'[tls]\ncertificate = "{pki}/node.crt"\nprivate_key = "{pki}/node.key"\nca = "{pki}/ca.crt"\n'
    cfg = write_config(tmp_path, dest_port=dest.port, extra=tls)
    cfg.write_text(cfg.read_text().replace("retry_seconds = 0.3", "retry_seconds = 0.3\ntls = true"))
    try:
        with running_node(cfg, node_engine) as node:
            assert echo(node.port, tls_args=_pacs_tls(pki))
            assert not echo(node.port)  # plain DICOM on a TLS port
            assert not echo(node.port, tls_args=_pacs_tls(pki, with_cert=False))  # no client certificate
            files = study_files(phantom_studies / "study_0001")
            assert send(node.port, files, tls_args=_pacs_tls(pki)) == [0, 0]
            wait_for(lambda: len(dest.received) == 3, 30, "SR + 2 SC over TLS")
    finally:
        dest.stop()
