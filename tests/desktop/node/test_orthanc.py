"""The round trip against a real PACS: Debian's Orthanc, started here on free loopback ports with
a generated configuration in a temporary folder (no system service, no plugins), torn down after.

Orthanc stores the studies (REST upload), sends them to mura-node with C-STORE (its REST API:
/modalities/{id}/store), mura-node screens them and sends SR and SC back; the test then checks in
Orthanc that the results arrived, sit in the source study as new series, cite the source
instances, and that the originals are byte for byte what was uploaded. Skipped when the Orthanc
binary is not installed (apt-get install orthanc; .ci/run installs it)."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from desktop.node.received import SENT, received_studies
from models.dicom import read_dataset, read_header
from tests.conftest import REPO
from tests.desktop.node.conftest import free_port, running_node, study_files, wait_for, write_config

SR_CLASS = "1.2.840.10008.5.1.4.1.1.88.33"
SC_CLASS = "1.2.840.10008.5.1.4.1.1.7"


def _orthanc_binary() -> str | None:
    return shutil.which("Orthanc") or next(
        (p for p in ("/usr/sbin/Orthanc", "/usr/bin/Orthanc") if Path(p).is_file()), None)


class Orthanc:
    """A private Orthanc: ``rest(method, path, body)`` talks to its REST API."""

    def __init__(self, folder: Path, node_port: int) -> None:
        self.http, self.dicom = free_port(), free_port()
        self.folder = folder
        self.config = folder / "orthanc.json"
        self.config.write_text(json.dumps({
            "Name": "mura-node-test", "StorageDirectory": str(folder / "storage"),
            "IndexDirectory": str(folder / "index"), "HttpPort": self.http, "DicomPort": self.dicom,
            "DicomAet": "ORTHANC", "RemoteAccessAllowed": False, "AuthenticationEnabled": False,
            "HttpServerEnabled": True, "DicomServerEnabled": True, "Plugins": [],
            "DicomModalities": {"mura": ["MURA_NODE", "127.0.0.1", node_port]},
            "DicomAlwaysAllowStore": True, "DicomCheckCalledAet": False, "StorageCompression": False,
            "HttpThreadsCount": 4, "ConcurrentJobs": 1, "StableAge": 3600, "LuaScripts": [],
        }))
        self.proc: subprocess.Popen | None = None

    def start(self, binary: str) -> Orthanc:
        log = (self.folder / "orthanc.log").open("wb")
        self.proc = subprocess.Popen([binary, str(self.config)], stdout=log, stderr=subprocess.STDOUT,
                                     cwd=self.folder)
        wait_for(lambda: self.proc.poll() is not None or self._up(), 60, "Orthanc to start")
        assert self.proc.poll() is None, (self.folder / "orthanc.log").read_text(errors="replace")
        return self

    def _up(self) -> bool:
        try:
            return bool(self.rest("GET", "/system"))
        except OSError:
            return False

    def rest(self, method: str, path: str, body: bytes | dict | list | None = None):
        data = json.dumps(body).encode() if isinstance(body, (dict, list)) else body
        req = urllib.request.Request(f"http://127.0.0.1:{self.http}{path}", data=data, method=method)
        with urllib.request.urlopen(req, timeout=120) as r:
            raw = r.read()
        return json.loads(raw) if r.headers.get_content_type() == "application/json" else raw

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:  # Orthanc takes ~3.5 s to stop cleanly; its temporary folder needs no clean stop
                self.proc.wait(1)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)


@pytest.fixture
def orthanc_and_node(tmp_path, node_engine) -> Iterator[tuple[Orthanc, object]]:
    binary = _orthanc_binary()
    if binary is None:
        pytest.skip("Orthanc is not installed (apt-get install -y orthanc)")
    node_port = free_port()
    (tmp_path / "orthanc").mkdir()
    pacs = Orthanc(tmp_path / "orthanc", node_port).start(binary)
    cfg = write_config(tmp_path, dest_port=pacs.dicom, port=node_port)
    cfg.write_text(cfg.read_text().replace('ae_title = "COLLECTOR"', 'ae_title = "ORTHANC"'))
    try:
        with running_node(cfg, node_engine) as node:
            yield pacs, node
    finally:
        pacs.stop()


def _instances(pacs: Orthanc, study: str) -> list[dict]:
    return pacs.rest("GET", f"/studies/{study}/instances?expand")


def test_orthanc_sends_studies_and_gets_sr_and_sc_back(orthanc_and_node, tmp_path, phantom_studies):
    pacs, node = orthanc_and_node
    files = sorted((REPO / "samples" / "dicom").glob("*.dcm")) + study_files(phantom_studies / "study_0001")
    originals = {}
    for f in files:
        up = pacs.rest("POST", "/instances", f.read_bytes())
        originals[up["ID"]] = (f, hashlib.sha256(f.read_bytes()).hexdigest(), up["ParentStudy"])
    studies = sorted({s for _, _, s in originals.values()})
    assert len(studies) == 3
    t0 = time.monotonic()
    for study in studies:  # what a PACS user's "send to" does
        job = pacs.rest("POST", "/modalities/mura/store", {"Resources": [study], "Synchronous": True})
        assert job.get("FailedInstancesCount", 0) == 0 and job.get("InstancesCount") >= 1, job
    expected = {s: sum(1 for *_, st in originals.values() if st == s) for s in studies}
    # every study: its originals + one SR + one SC per scored image (the samples and phantom are scored)
    wait_for(lambda: all(len(_instances(pacs, s)) == 2 * n + 1 for s, n in expected.items()), 90,
             "SR and SC in every study in Orthanc")
    print(f"round trip of {len(files)} images in {time.monotonic() - t0:.1f} s")
    for study in studies:
        _check_study(pacs, study, originals, tmp_path)
    assert len(pacs.rest("GET", "/studies")) == 3  # nothing filed in a study of its own
    wait_for(lambda: all(s.status == SENT for s in received_studies(tmp_path / "data")), 10,
             "the node to record every result as sent")


def _check_study(pacs: Orthanc, study: str, originals: dict, tmp_path: Path) -> None:
    insts = _instances(pacs, study)
    mine = {i["ID"]: v for i, v in ((i, originals.get(i["ID"])) for i in insts) if v}
    for oid, (f, digest, _) in mine.items():  # the originals, byte for byte
        assert hashlib.sha256(pacs.rest("GET", f"/instances/{oid}/file")).hexdigest() == digest, f
    source = {str(read_header(f).SOPInstanceUID): read_header(f) for f, _, _ in mine.values()}
    source_series = {str(h.SeriesInstanceUID) for h in source.values()}
    results = [i for i in insts if i["ID"] not in originals]
    datasets = []
    for i in results:
        p = tmp_path / f"{i['ID']}.dcm"
        p.write_bytes(pacs.rest("GET", f"/instances/{i['ID']}/file"))
        datasets.append(read_dataset(p))
    srs = [d for d in datasets if d.SOPClassUID == SR_CLASS]
    scs = [d for d in datasets if d.SOPClassUID == SC_CLASS]
    assert len(srs) == 1 and len(scs) == len(source)
    study_uid = {str(h.StudyInstanceUID) for h in source.values()}
    for d in datasets:
        assert {str(d.StudyInstanceUID)} == study_uid and str(d.SeriesInstanceUID) not in source_series
    cited = {str(r.ReferencedSOPInstanceUID) for ev in srs[0].CurrentRequestedProcedureEvidenceSequence
             for se in ev.ReferencedSeriesSequence for r in se.ReferencedSOPSequence}
    assert cited == set(source)
    assert {str(sc.SourceImageSequence[0].ReferencedSOPInstanceUID) for sc in scs} == set(source)
