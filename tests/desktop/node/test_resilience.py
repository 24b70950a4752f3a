"""mura-node survives what a clinic network does to it: a PACS that is down for a while, a node
restarted or killed -9 in the middle of a study, or between screening and queueing the results.
Nothing is lost, nothing is answered twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from desktop.node.received import SCREENED, SENT, received_studies
from desktop.node.spool import study_key
from models.dicom import read_header
from tests.conftest import REPO
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

SR_CLASS = "1.2.840.10008.5.1.4.1.1.88.33"


def _sr_sources(ds) -> set[str]:
    """Every source instance an SR's content tree cites."""
    out = set()

    def walk(items) -> None:
        for it in items:
            for ref in it.get("ReferencedSOPSequence", []):
                out.add(str(ref.ReferencedSOPInstanceUID))
            walk(it.get("ContentSequence", []))

    walk(ds.ContentSequence)
    return out


def test_a_pacs_that_is_down_gets_the_results_when_it_is_back(tmp_path, node_engine):
    """Results wait in the outbox while the destination is down, across a node restart, and are
    delivered once it listens; each object once."""
    dest = Collector(free_port())
    cfg = write_config(tmp_path, dest_port=dest.port)
    files = sorted((REPO / "samples" / "dicom").glob("*.dcm"))
    data = tmp_path / "data"
    with running_node(cfg, node_engine) as node:
        assert send(node.port, files) == [0, 0]
        studies = wait_for(lambda: (s := received_studies(data)) and all(
            x.status == SCREENED and x.send_error for x in s) and s, 30, "screened, not sent")
    assert len(studies) == 2 and all("cannot be reached" in s.send_error for s in studies)
    queued = sorted((data / "outbox" / "pending").rglob("*.dcm"))
    assert len(queued) == 4  # SR + SC per study, on disk
    dest.start()
    try:
        with running_node(cfg, node_engine):  # a new node on the same data folder
            wait_for(lambda: len(dest.received) == 4, 30, "the queued results")
            wait_for(lambda: all(s.status == SENT for s in received_studies(data)), 10, "sent")
    finally:
        dest.stop()
    assert {p.stem for p in queued} == set(dest.received)
    assert not list((data / "outbox" / "pending").rglob("*.dcm"))


def _start_node(cfg: Path, env_extra: dict[str, str] | None = None) -> subprocess.Popen:
    env = {**os.environ, **(env_extra or {})}
    return subprocess.Popen([sys.executable, "-m", "desktop.node.cli", str(cfg)], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _up(proc: subprocess.Popen, port: int) -> None:
    wait_for(lambda: proc.poll() is not None or echo(port), 60, "the node to listen")
    assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""


def _stop(proc: subprocess.Popen) -> str:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    return err


@pytest.fixture
def two_image_study(phantom_studies) -> list[Path]:
    return study_files(phantom_studies / "study_0001")


def test_a_node_killed_mid_study_screens_the_whole_study_after_restart(tmp_path, collector,
                                                                       two_image_study):
    """kill -9 after the first of two instances: the restarted node keeps it, receives the
    second, and screens the study once, with both (one SR citing both sources). The real process,
    with a decode worker pool (workers = 1), as systemd would run it."""
    port = free_port()
    cfg = write_config(tmp_path, dest_port=collector.port, port=port, workers=1, quiet=2)
    proc = _start_node(cfg)
    try:
        _up(proc, port)
        assert send(port, two_image_study[:1]) == [0]
        proc.kill()  # SIGKILL: no clean-up of any kind
        proc.wait(30)
        assert collector.received == {}
        proc = _start_node(cfg)
        _up(proc, port)
        assert send(port, two_image_study[1:]) == [0]
        srs = wait_for(lambda: [d for d in collector.received.values() if d.SOPClassUID == SR_CLASS],
                       60, "the SR")
        wait_for(lambda: len(collector.received) == 3, 10, "SR + 2 SC")
    finally:
        log = _stop(proc)
    assert len(srs) == 1
    assert _sr_sources(srs[0]) == {str(read_header(f).SOPInstanceUID) for f in two_image_study}
    logs = log + "".join(p.read_text() for p in (tmp_path / "data" / "logs").glob("*.log"))
    spooled = " ".join(str(p) for d in ("spool", "outbox") for p in (tmp_path / "data" / d).rglob("*"))
    for h in (read_header(f) for f in two_image_study):  # no identifier in a log or a spool name
        for value in (h.PatientName, h.PatientID, h.AccessionNumber, h.StudyInstanceUID,
                      h.SeriesInstanceUID, h.SOPInstanceUID):
            assert str(value) not in logs and str(value) not in spooled, value
    assert study_key(str(read_header(two_image_study[0]).StudyInstanceUID)) in log


def test_a_node_killed_between_screening_and_queueing_sends_the_results_after_restart(
        tmp_path, collector, two_image_study):
    """The screening core's own crash hook kills the node (os._exit) right after the study is
    committed, before the node queued its results: the restart takes the study from the state
    (not scored again) and sends its results, once."""
    port = free_port()
    cfg = write_config(tmp_path, dest_port=collector.port, port=port)
    proc = _start_node(cfg, {"MURA_SCREEN_DIE_AFTER": "1"})
    try:
        _up(proc, port)
        assert send(port, two_image_study) == [0, 0]
        assert proc.wait(60) == 137
        assert collector.received == {}
        proc = _start_node(cfg)
        _up(proc, port)
        wait_for(lambda: len(collector.received) == 3, 60, "SR + 2 SC")
    finally:
        log = _stop(proc)
    assert "screened in" in log
    studies = received_studies(tmp_path / "data")
    assert [s.status for s in studies] == [SENT] and studies[0].results_sent == 3
