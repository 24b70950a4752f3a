"""The viewer opens no network connection: start, open a study, infer, browse, with sockets blocked.

Every way Python code reaches the network (``socket.connect``/``connect_ex``,
``create_connection``, name resolution) is replaced by a recorder that raises, for the whole
session from loading the engine (OpenVINO, whose telemetry package is installed alongside) to
the model card and the tag browser. A library that swallowed the error would still be recorded.
"""

from __future__ import annotations

import socket

import pytest
from PySide6.QtCore import Qt

from desktop.viewer.app import ViewerWindow
from models.engine import Engine, aggregate_study
from models.imageio import load_image

WAIT_MS = 60_000


@pytest.fixture
def no_network(monkeypatch):
    attempts: list[str] = []

    def blocked(name):
        def fn(*args, **kwargs):
            attempts.append(f"{name}{args[1:] if name.startswith('socket.') else args}")
            raise OSError(f"network access blocked by the test ({name})")
        return fn

    monkeypatch.setattr(socket.socket, "connect", blocked("socket.connect"))
    monkeypatch.setattr(socket.socket, "connect_ex", blocked("socket.connect_ex"))
    monkeypatch.setattr(socket, "create_connection", blocked("create_connection"))
    monkeypatch.setattr(socket, "getaddrinfo", blocked("getaddrinfo"))
    monkeypatch.setattr(socket, "gethostbyname", blocked("gethostbyname"))
    return attempts


def test_viewer_works_with_sockets_blocked(qtbot, no_network, tiny_bundle, phantom):
    # the block is real: a connection attempt is refused and recorded
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", 9))
    assert len(no_network) == 1
    no_network.clear()

    engine = Engine(tiny_bundle)  # OpenVINO core, compile, I/O check: all inside the block
    win = ViewerWindow(engine)
    qtbot.addWidget(win)
    win.show()
    folder = phantom / "dicom" / "study_0004"
    with qtbot.waitSignal(win.analysis_ready, timeout=WAIT_MS) as blocker:
        win.open_paths([folder])
    qtbot.waitUntil(lambda: not win.busy, timeout=WAIT_MS)
    out = win.current_outcome
    assert blocker.args[0] == out.study.key and out.prediction is not None
    # inference really ran: the numbers are the engine's
    paths = [v.ref.path for v in out.images]
    agg = aggregate_study(engine.predict([load_image(p).pixels for p in paths]),
                          engine.thresholds)
    assert win.study_prob_label.text() == f"{agg.probability:.3f}"
    qtbot.keyClick(win, Qt.Key.Key_A)
    qtbot.keyClick(win, Qt.Key.Key_T)
    win.show_model_card().close()
    win.tag_dialog.close()
    assert no_network == [], f"the viewer tried to reach the network: {no_network}"
