"""File → Received from the DICOM node: a real mura-node (pynetdicom on both sides) receives
studies, screens them and sends the results; the viewer lists them read-only from the node's
folder while it runs, opens one in the window, and says so when the node has removed its images."""

from __future__ import annotations

from pathlib import Path

from desktop.node.received import SENT, received_studies
from desktop.node.spool import study_key
from desktop.viewer import window_received
from desktop.viewer.dialogs import SettingsDialog
from desktop.viewer.received_dialog import ReceivedDialog
from desktop.viewer.settings import ViewerSettings
from models.dicom import read_header
from tests.conftest import REPO
from tests.desktop.node.conftest import (  # noqa: F401 (fixtures)
    collector,
    node_engine,
    running_node,
    send,
    wait_for,
    write_config,
)

SAMPLES = sorted((REPO / "samples" / "dicom").glob("*.dcm"))


def _read(qtbot, dialog: ReceivedDialog) -> list[str]:
    """Refresh now and wait for the list; the keys shown, in order."""
    dialog.refresh()
    assert dialog.reading
    qtbot.waitUntil(lambda: not dialog.reading, timeout=10000)
    return [s.key for s in dialog.studies]


def _cells(dialog: ReceivedDialog, row: int) -> dict[str, str]:
    t = dialog.table
    return {t.horizontalHeaderItem(c).text(): t.item(row, c).text() for c in range(t.columnCount())}


def test_received_list_follows_the_node_and_opens_a_study(qtbot, bare_win, tmp_path,
                                                          collector, node_engine):  # noqa: F811
    cfg = write_config(tmp_path, dest_port=collector.port, study="retain_hours = 0")
    data = tmp_path / "data"
    keys = [study_key(str(read_header(f).StudyInstanceUID)) for f in SAMPLES]
    with running_node(cfg, node_engine) as node:
        assert send(node.port, SAMPLES[:1]) == [0]
        wait_for(lambda: [s for s in received_studies(data) if s.status == SENT], 60, "sent")
        dialog = bare_win.show_received(cfg, ask=False)
        assert isinstance(dialog, ReceivedDialog) and dialog.isVisible()
        assert _read(qtbot, dialog) == keys[:1]
        row = _cells(dialog, 0)
        assert row["Status"] == "Results sent to the PACS (2/2)"
        assert row["Verdict"].endswith("fracture")  # the node's model's task, not the viewer's
        assert row["Probability"] not in ("", "—")
        assert row["Images"] == "1" and row["Patient ID"]  # the worklist's identity fields
        # a study arriving while the list is open shows up, newest first
        assert send(node.port, SAMPLES[1:]) == [0]
        wait_for(lambda: len([s for s in received_studies(data) if s.status == SENT]) == 2, 60,
                 "second study sent")
        assert _read(qtbot, dialog) == [keys[1], keys[0]]
        # opening a study opens its received images in the window
        dialog.table.selectRow(1)
        assert dialog.open_button.isEnabled() and dialog.report_button.isEnabled()
        assert dialog.open_row(1)
        qtbot.waitUntil(lambda: bare_win.current_key is not None, timeout=30000)
        study = bare_win.loader.study(bare_win.current_key)
        assert study is not None and Path(study.images[0].path).parent.name == keys[0]
        # once the node's retention removed the images, the list says so and keeps the report
        assert sorted(node.sweep()) == sorted(keys)
    assert _read(qtbot, dialog) == [keys[1], keys[0]]
    dialog.table.selectRow(0)
    assert not dialog.open_button.isEnabled() and dialog.report_button.isEnabled()
    assert not dialog.open_row(0)
    assert "no longer on this machine" in dialog.message.text()
    assert "report is kept" in dialog.message.text()
    dialog.close()


def test_the_chosen_node_is_remembered_and_a_bad_one_explained(qtbot, bare_win, tmp_path,
                                                                monkeypatch):
    (tmp_path / "data" / "results").mkdir(parents=True)
    dialog = bare_win.show_received(tmp_path / "data", ask=False)
    assert dialog is not None and _read(qtbot, dialog) == []
    assert "0 studies" in dialog.summary.text()
    assert ViewerSettings.load().node_location == str(tmp_path / "data")
    # the Settings dialog, which does not edit it, keeps it
    kept = SettingsDialog(bare_win.settings, bare_win).settings()
    assert kept.node_location == str(tmp_path / "data")
    dialog.close()
    assert bare_win.show_received(tmp_path / "nothing-here", ask=False) is None
    assert "no such file or folder" in bare_win.received.error
    assert "nothing-here" in bare_win.statusBar().currentMessage()
    # nothing chosen and no system node: the reader is asked; cancelled, the viewer says so
    bare_win.settings.node_location = ""
    monkeypatch.setattr(window_received, "default_node_location", lambda: None)
    asked = []
    monkeypatch.setattr(window_received, "ask_node_location", lambda parent: asked.append(1) or "")
    assert bare_win.show_received() is None and asked == [1]
    assert "No mura-node chosen" in bare_win.received.error
