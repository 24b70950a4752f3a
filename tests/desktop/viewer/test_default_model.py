"""Without --model, mura-screen and mura-viewer use the default bundle and say so in one line.

The default is pointed at the tiny test bundle with ``MURA_DEFAULT_MODEL`` (or at nothing), so
these tests do not depend on the real reference bundle being in the checkout. The viewer's
order is --model, then the bundle chosen in Settings, then the default.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

import desktop.viewer.app
from desktop.screening.cli import main as screen_main
from desktop.viewer.settings import ViewerSettings
from models import reference
from models.card import load_bundle
from models.engine import Engine

WAIT_MS = 60_000
NOTICE = "no --model given: using"


@pytest.fixture
def no_default(monkeypatch, tmp_path) -> None:
    """No default bundle anywhere: no override set, not frozen, no reference bundle."""
    for var in (reference.DEFAULT_MODEL_ENV, reference.INSTALL_MODEL_ENV):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(sys, "frozen", False, raising=False)
    monkeypatch.setattr(reference, "reference_dir", lambda: tmp_path / "no-reference")


@pytest.fixture
def default_is_tiny(no_default, monkeypatch, tiny_bundle) -> Path:
    monkeypatch.setenv(reference.DEFAULT_MODEL_ENV, str(tiny_bundle))
    return tiny_bundle


# -- mura-screen --------------------------------------------------------------------------------
def test_screen_without_model_uses_the_default_and_says_so(default_is_tiny, phantom, capsys):
    rc = screen_main([str(phantom / "dicom" / "study_0001"), "--no-progress", "--workers", "0"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    notices = [ln for ln in err.splitlines() if NOTICE in ln]
    assert notices == [f"mura-screen: {NOTICE} the bundle named by MURA_DEFAULT_MODEL: "
                       f"{default_is_tiny} (research use only)"]
    assert f"Model {load_bundle(default_is_tiny).model_id}" in out


def test_screen_explicit_model_beats_the_default(no_default, monkeypatch, tiny_bundle, phantom,
                                                 tmp_path, capsys):
    monkeypatch.setenv(reference.DEFAULT_MODEL_ENV, str(tmp_path / "not-a-bundle"))
    rc = screen_main([str(phantom / "dicom" / "study_0001"), "--model", str(tiny_bundle),
                      "--no-progress", "--workers", "0"])
    assert rc == 0 and NOTICE not in capsys.readouterr().err


def test_screen_without_any_model_is_a_clear_error(no_default, tmp_path, capsys):
    assert screen_main([str(tmp_path), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mura-screen: error: no model bundle: pass --model BUNDLE")
    assert "MURA_DEFAULT_MODEL" in err and "Traceback" not in err and len(err.splitlines()) == 1


# -- mura-viewer: which bundle ---------------------------------------------------------------
def test_viewer_order_is_explicit_then_settings_then_default(default_is_tiny, capsys):
    chosen = ViewerSettings(model_path="/site/bundle")
    assert desktop.viewer.app.resolve_model("/x/cli", chosen) == "/x/cli"
    assert desktop.viewer.app.resolve_model(None, chosen) == "/site/bundle"
    assert NOTICE not in capsys.readouterr().err  # nothing to announce: both were chosen
    assert desktop.viewer.app.resolve_model(None, ViewerSettings()) == str(default_is_tiny)
    assert capsys.readouterr().err.strip() == (
        f"mura-viewer: {NOTICE} the bundle named by MURA_DEFAULT_MODEL: {default_is_tiny} "
        "(research use only)")


def test_viewer_without_any_model_opens_without_one(no_default, capsys):
    assert desktop.viewer.app.resolve_model(None, ViewerSettings()) == ""
    assert capsys.readouterr().err == ""


def test_viewer_main_loads_the_default_when_settings_have_none(default_is_tiny, phantom,
                                                               tmp_path, monkeypatch, capsys):
    calls = []

    def recording_engine(path, device):
        calls.append((str(path), device))
        return Engine(path, device=device)

    monkeypatch.setattr(desktop.viewer.app, "Engine", recording_engine)
    shot = tmp_path / "shot.png"
    assert desktop.viewer.app.main([str(phantom / "dicom" / "study_0001"), "--screenshot",
                                str(shot)]) == 0
    assert calls == [(str(default_is_tiny), "CPU")]
    assert f"mura-viewer: {NOTICE}" in capsys.readouterr().err


# -- mura-viewer: the samples ----------------------------------------------------------------
def test_viewer_offers_the_samples_and_opens_them(bare_win, qtbot):
    assert reference.samples_dir() is not None, "the repository's samples/ folder is missing"
    action = bare_win.ui.open_samples_action
    assert action.isVisible() and "sample" in action.text().lower()
    with qtbot.waitSignal(bare_win.discovery_ready, timeout=WAIT_MS) as found:
        action.trigger()
    assert found.args[0] >= 2  # one study per sample image
    qtbot.waitUntil(lambda: not bare_win.busy, timeout=WAIT_MS)
    assert bare_win.study_list.count() == found.args[0]


def test_without_samples_the_entry_is_hidden(qtbot, monkeypatch):
    import desktop.viewer.main_window

    monkeypatch.setattr(desktop.viewer.main_window, "samples_dir", lambda: None)
    w = desktop.viewer.app.ViewerWindow(None)
    qtbot.addWidget(w)
    try:
        assert not w.ui.open_samples_action.isVisible()
        assert w.open_samples() is False
    finally:
        w.shutdown()
