"""Fixtures of the mura-node tests: a model, configurations on free loopback ports, a running
node in this process, a pynetdicom sender (the "PACS" sending studies) and a pynetdicom
collector (the "PACS" receiving results)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import REPO

REFERENCE = REPO / "models" / "reference" / "fracatlas-lite0"
SENDER_AE = "PACS"
NODE_AE = "MURA_NODE"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def node_engine():
    """The shipped reference model: real SC/SR results on real radiographs, no training."""
    if not (REFERENCE / "card.json").is_file():
        pytest.skip(f"{REFERENCE} is absent (make reference-model)")
    from models.engine import Engine

    return Engine(REFERENCE, performance_hint="THROUGHPUT")


@pytest.fixture(scope="session")
def phantom_studies(tmp_path_factory) -> Path:
    """Three phantom CR/DX studies (explicit/implicit VR, RLE, JPEG-LS, JPEG 2000)."""
    from models.synth import write_dicom_studies

    out = tmp_path_factory.mktemp("node_phantoms")
    write_dicom_studies(out, seed=3, n_studies=3)
    return out


def study_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")
                  and p.suffix not in (".csv", ".json"))


def write_config(tmp_path: Path, *, dest_port: int, port: int = 0, extra: str = "",
                 node: str = "", study: str = "", workers: int = 0, quiet: float = 0.5) -> Path:
    """A node configuration on loopback; ``port`` 0 picks a free one now."""
    port = port or free_port()
    cfg = tmp_path / "node.toml"
    cfg.write_text(f"""
[node]
ae_title = "{NODE_AE}"
address = "127.0.0.1"
port = {port}
allowed_callers = ["{SENDER_AE}", "ORTHANC"]
data_dir = "data"
{node}
[destination]
ae_title = "COLLECTOR"
host = "127.0.0.1"
port = {dest_port}
retry_seconds = 0.3
retry_max_seconds = 1
[study]
quiet_seconds = {quiet}
{study}
[screening]
model = "{REFERENCE}"
workers = {workers}
{extra}
""")
    return cfg


@contextmanager
def running_node(cfg_path: Path, engine) -> Iterator:
    """A started node whose screening loop runs in a thread; stopped on exit."""
    from desktop.node.config import load_config
    from desktop.node.service import Node

    node = Node(load_config(cfg_path), engine=engine)
    node.start()
    stop = threading.Event()
    t = threading.Thread(target=node.run, args=(stop,), daemon=True)
    t.start()
    try:
        yield node
    finally:
        stop.set()
        t.join(60)
        node.stop()


@dataclass
class Collector:
    """A minimal storage SCP standing in for the PACS that receives results."""

    port: int
    received: dict[str, object] = field(default_factory=dict)  # SOP Instance UID -> dataset
    server: object = None

    def start(self, ssl_context=None) -> Collector:
        from pynetdicom import AE, AllStoragePresentationContexts, evt

        ae = AE(ae_title="COLLECTOR")
        ae.supported_contexts = AllStoragePresentationContexts
        ae.add_supported_context("1.2.840.10008.1.1")

        def on_store(event) -> int:
            ds = event.dataset
            ds.file_meta = event.file_meta
            self.received[str(ds.SOPInstanceUID)] = ds
            return 0x0000

        self.server = ae.start_server(("127.0.0.1", self.port), block=False, ssl_context=ssl_context,
                                      evt_handlers=[(evt.EVT_C_STORE, on_store)])
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server = None


@pytest.fixture
def collector() -> Iterator[Collector]:
    c = Collector(free_port()).start()
    yield c
    c.stop()


def send(port: int, files: list[Path], calling: str = SENDER_AE, called: str = NODE_AE,
         tls_args=None) -> list[int]:
    """C-STORE ``files`` to the node over one association; the statuses (-1: not sent)."""
    from pynetdicom import AE

    from models.dicom import read_dataset

    datasets = [read_dataset(f) for f in files]
    ae = AE(ae_title=calling)
    for uid, ts in sorted({(str(d.SOPClassUID), str(d.file_meta.TransferSyntaxUID)) for d in datasets}):
        ae.add_requested_context(uid, ts)
    assoc = ae.associate("127.0.0.1", port, ae_title=called, tls_args=tls_args)
    assert assoc.is_established, "the node refused the association"
    try:
        out = []
        for ds in datasets:
            status = assoc.send_c_store(ds)
            out.append(int(status.Status) if "Status" in status else -1)
        return out
    finally:
        assoc.release()


def echo(port: int, timeout: float = 0.5, tls_args=None) -> bool:
    """Whether the node answers a C-ECHO from the allowed sender (is it up yet?)."""
    from pynetdicom import AE

    ae = AE(ae_title=SENDER_AE)
    ae.connection_timeout = ae.acse_timeout = timeout
    ae.add_requested_context("1.2.840.10008.1.1")
    assoc = ae.associate("127.0.0.1", port, ae_title=NODE_AE, tls_args=tls_args)
    if not assoc.is_established:
        return False
    try:
        return bool(assoc.send_c_echo().get("Status") == 0)
    finally:
        assoc.release()


def wait_for(cond: Callable[[], object], timeout: float = 30.0, what: str = "condition") -> object:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = cond()
        if v:
            return v
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
