"""Fixtures shared by the GUI tests: one engine per module, a shown viewer window per test."""

from __future__ import annotations

import pytest

from desktop.viewer import ViewerWindow
from models.engine import Engine


@pytest.fixture(scope="module")
def engine(tiny_bundle) -> Engine:
    return Engine(tiny_bundle)


@pytest.fixture
def win(qtbot, engine) -> ViewerWindow:
    w = ViewerWindow(engine)
    qtbot.addWidget(w)
    w.show()
    qtbot.waitExposed(w)
    w.activateWindow()
    return w
