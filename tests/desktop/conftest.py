"""Fixtures shared by the GUI tests: one engine per module, a shown viewer window per test.

Every test here gets its own QSettings location (autouse), so no test reads or writes the real
user's viewer settings, and no test sees another's.
"""

from __future__ import annotations

import pytest
from PySide6.QtCore import QSettings

from desktop.viewer.app import ViewerWindow
from models.engine import Engine


@pytest.fixture(autouse=True)
def isolated_settings(tmp_path_factory):
    """Point the user-scope INI location at a fresh temporary folder for this test."""
    where = tmp_path_factory.mktemp("qsettings")
    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(where))
    yield where


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


@pytest.fixture
def bare_win(qtbot) -> ViewerWindow:
    """A shown viewer window without a model (the test loads one its own way); its workers are
    stopped afterwards, after anything the test released in its own ``finally``."""
    w = ViewerWindow(None)
    qtbot.addWidget(w)
    w.show()
    yield w
    w.shutdown()
