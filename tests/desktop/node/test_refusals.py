"""What mura-node refuses, and that a refusal is clean: the sender is told (association rejected,
context rejected or a failure status), nothing is spooled, screened or sent for it, and the node
goes on serving the others."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest
from pydicom.uid import ExplicitVRLittleEndian

from desktop.node.received import REFUSED, received_studies
from desktop.node.scp import CR, DATASET_MISMATCH, StoreHandler
from desktop.node.spool import CANNOT_UNDERSTAND, OUT_OF_RESOURCES, Spool, study_key
from models.dicom import read_dataset, read_header
from tests.desktop.node.conftest import (
    NODE_AE,
    SENDER_AE,
    running_node,
    send,
    study_files,
    wait_for,
    write_config,
)

MAMMOGRAPHY = "1.2.840.10008.5.1.4.1.1.1.2"
CT = "1.2.840.10008.5.1.4.1.1.2"


def _associate(port: int, contexts: list[str], calling: str = SENDER_AE, called: str = NODE_AE):
    from pynetdicom import AE

    ae = AE(ae_title=calling)
    for uid in contexts:
        ae.add_requested_context(uid, ExplicitVRLittleEndian)
    return ae.associate("127.0.0.1", port, ae_title=called)


def _spooled(tmp_path) -> list:
    return sorted((tmp_path / "data" / "spool").rglob("*.dcm"))


@pytest.fixture
def node(tmp_path, node_engine, collector):
    cfg = write_config(tmp_path, dest_port=collector.port, node="max_associations = 2",
                       study="max_study_mb = 2\nmax_spool_mb = 3")
    with running_node(cfg, node_engine) as n:
        yield n


@pytest.mark.parametrize("calling, called, why", [
    ("INTRUDER", NODE_AE, "calling AE title 'INTRUDER' is not in allowed_callers"),
    (SENDER_AE, "SOMEONE_ELSE", "called AE title 'SOMEONE_ELSE' is not ours ('MURA_NODE')"),
], ids=["unknown-calling-ae", "wrong-called-ae"])
def test_an_unknown_ae_title_is_rejected_at_association(node, tmp_path, caplog, calling, called, why):
    assoc = _associate(node.port, [CR], calling, called)
    assert assoc.is_rejected and not assoc.is_established
    assert _spooled(tmp_path) == []
    wait_for(lambda: any(why in r.getMessage() for r in caplog.records), 5, "the log line saying why")


def test_unknown_sop_classes_are_refused_at_negotiation(node, tmp_path):
    """Mammography and CT: their presentation contexts are rejected ('abstract syntax not
    supported'), CR in the same association is accepted; only unknown classes: no association."""
    assoc = _associate(node.port, [CR, MAMMOGRAPHY, CT])
    try:
        assert assoc.is_established
        results = {cx.abstract_syntax: cx.result for cx in assoc.rejected_contexts}
        assert results == {MAMMOGRAPHY: 0x03, CT: 0x03}
        assert [cx.abstract_syntax for cx in assoc.accepted_contexts] == [CR]
    finally:
        assoc.release()
    assoc = _associate(node.port, [MAMMOGRAPHY])
    assert not assoc.is_established
    assert _spooled(tmp_path) == []


def test_a_dataset_that_does_not_match_its_sop_class_is_refused(tmp_path, phantom_studies):
    """A mammogram sent as CR (the request says CR, the dataset says mammography): status 0xA900;
    missing UIDs: 0xC000; nothing spooled either way."""
    f = study_files(phantom_studies)[0]
    ds = read_dataset(f)
    spool = Spool(tmp_path / "spool", 1 << 30, 1 << 30)
    kept = []
    handler = StoreHandler(spool, kept.append)

    def event(ds, sop_class=CR):
        req = SimpleNamespace(AffectedSOPClassUID=sop_class, AffectedSOPInstanceUID=ds.SOPInstanceUID)
        peer = SimpleNamespace(requestor=SimpleNamespace(ae_title="PACS", address="127.0.0.1", port=1))
        return SimpleNamespace(request=req, dataset=ds, assoc=peer,
                               encoded_dataset=lambda include_meta=True: f.read_bytes())

    ds.SOPClassUID = MAMMOGRAPHY
    assert handler(event(ds)) == DATASET_MISMATCH
    assert handler(event(ds, MAMMOGRAPHY)) == DATASET_MISMATCH
    ds.SOPClassUID = CR
    del ds.StudyInstanceUID
    assert handler(event(ds)) == CANNOT_UNDERSTAND
    assert kept == [] and list(spool.root.rglob("*.dcm")) == []


def test_an_oversized_study_is_refused_as_a_whole(node, tmp_path, phantom_studies, collector):
    """max_study_mb = 2: the 2.5 MB study gets 'out of resources' from the instance that crosses
    the limit on, what had arrived of it is dropped, it is never screened; a study within the
    limit sent afterwards is screened and answered."""
    big = study_files(phantom_studies / "study_0002")
    small = study_files(phantom_studies / "study_0001")
    statuses = send(node.port, big + big[:1])
    assert statuses[:2] == [0, 0] and statuses[2:] == [OUT_OF_RESOURCES, OUT_OF_RESOURCES]
    key = study_key(str(read_header(big[0]).StudyInstanceUID))
    assert list((tmp_path / "data" / "spool" / key).glob("*.dcm")) == []
    assert send(node.port, small) == [0, 0]
    wait_for(lambda: len(collector.received) >= 2, 30, "the small study's results")
    time.sleep(1.0)  # > quiet_seconds: the refused study would have been screened by now
    listed = {s.key: s for s in received_studies(tmp_path / "data")}
    assert listed[key].status == REFUSED and listed[key].n_instances == 0
    assert not (tmp_path / "data" / "results" / key).exists()
    sent_studies = {str(d.StudyInstanceUID) for d in collector.received.values()}
    assert sent_studies == {str(read_header(small[0]).StudyInstanceUID)}


def test_a_full_spool_refuses_instances(node, tmp_path, phantom_studies):
    """max_spool_mb = 3: two studies of 1.3 and 1.7 MB fit, the next instance does not."""
    first = study_files(phantom_studies / "study_0001") + study_files(phantom_studies / "study_0003")
    assert send(node.port, first) == [0] * 5
    extra = study_files(phantom_studies / "study_0002")[:1]
    assert send(node.port, extra) == [OUT_OF_RESOURCES]
    assert node.spool.used_bytes <= 3 << 20


def test_a_port_in_use_is_a_clear_error(tmp_path, collector):
    """The node cannot listen (another program has the port): exit 1, the address in the message."""
    import socket
    import subprocess
    import sys

    from tests.conftest import REPO

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cfg = write_config(tmp_path, dest_port=collector.port, port=port)
        r = subprocess.run([sys.executable, "-m", "desktop.node.cli", str(cfg)], cwd=REPO,
                           capture_output=True, text=True, timeout=120)
    assert r.returncode == 1
    assert f"mura-node: error: 127.0.0.1:{port}: cannot listen there (Address already in use)" in r.stderr


def test_associations_beyond_the_limit_are_rejected(node):
    """max_associations = 2: a third simultaneous association is rejected (local limit)."""
    held = [_associate(node.port, [CR]) for _ in range(2)]
    try:
        assert all(a.is_established for a in held)
        assert _associate(node.port, [CR]).is_rejected
    finally:
        for a in held:
            a.release()
    third = wait_for(lambda: (a := _associate(node.port, [CR])).is_established and a, 10,
                     "a free association slot")
    third.release()
