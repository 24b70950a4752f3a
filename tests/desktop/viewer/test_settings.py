"""Settings persist in (isolated) QSettings; changing device or bundle reloads the engine in the
worker and re-analyses the study; the default window applies to new images."""

from __future__ import annotations

from pathlib import Path

import numpy as np

import desktop.viewer.app
import desktop.viewer.dialogs
from desktop.screening import render
from desktop.viewer.settings import ViewerSettings, device_choices, preset_index, settings_store
from models.engine import Engine

WAIT_MS = 60_000


def _open(qtbot, win, folder: Path) -> None:
    with qtbot.waitSignal(win.analysis_ready, timeout=WAIT_MS):
        win.open_paths([folder])
    qtbot.waitUntil(lambda: not win.busy, timeout=WAIT_MS)


def test_settings_round_trip_in_the_isolated_location(isolated_settings):
    assert ViewerSettings.load() == ViewerSettings()  # nothing leaks in from the real user
    s = ViewerSettings(device="AUTO", model_path="/opt/bundles/b0", wl_preset="bone")
    s.save()
    assert ViewerSettings.load() == s
    path = Path(settings_store().fileName())
    assert path.is_file() and isolated_settings in path.parents
    text = path.read_text()
    assert "AUTO" in text and "/opt/bundles/b0" in text
    # garbage in the file falls back to defaults instead of failing
    raw = settings_store()
    raw.setValue("display/default_window", "sepia")
    raw.sync()
    assert ViewerSettings.load().wl_preset == "file"


def test_device_choices_and_presets():
    assert device_choices([]) == ["AUTO", "CPU", "GPU"]
    assert device_choices(["CPU", "GPU.0", "GPU.1", "NPU"]) == ["AUTO", "CPU", "GPU", "GPU.0",
                                                                  "GPU.1", "NPU"]
    names = ["File window 1", "Full range", "Bone", "Soft tissue"]
    assert preset_index(names, "file") is None
    assert preset_index(names, "bone") == 2 and preset_index(names, "soft") == 3
    assert preset_index([], "bone") is None  # plain images have no presets


def test_dialog_offers_what_openvino_reports(qtbot, win, monkeypatch):
    monkeypatch.setattr(desktop.viewer.dialogs, "available_devices", lambda: ["CPU", "GPU.0"])
    dlg = win.show_settings()
    qtbot.addWidget(dlg)
    combo = dlg.device_combo
    assert [combo.itemData(i) for i in range(combo.count())] == ["AUTO", "CPU", "GPU", "GPU.0"]
    assert "not reported" in combo.itemText(2) and "not reported" not in combo.itemText(3)
    # the dialog starts from what is in use
    assert combo.currentData() == win.engine.device
    assert Path(dlg.model_edit.text()) == Path(win.engine.bundle.root)
    dlg.reject()


def test_changing_device_reloads_the_engine_and_reanalyses(qtbot, win, phantom, tiny_bundle):
    folder = phantom / "dicom" / "study_0002"
    _open(qtbot, win, folder)
    old = win.engine
    shown = win.study_prob_label.text()
    dlg = win.show_settings()
    qtbot.addWidget(dlg)
    dlg.device_combo.setCurrentIndex(dlg.device_combo.findData("AUTO"))
    with qtbot.waitSignal(win.engine_changed, timeout=WAIT_MS), \
            qtbot.waitSignal(win.analysis_ready, timeout=WAIT_MS):
        dlg.accept()
    qtbot.waitUntil(lambda: not win.busy, timeout=WAIT_MS)
    assert win.engine is not old and win.engine.device == "AUTO"
    assert "AUTO" in win.model_label.text()
    assert win.study_prob_label.text() == shown  # same model, same study: same number
    assert ViewerSettings.load().device == "AUTO"  # persisted

    # a folder that is no bundle: the error is shown, the images stay viewable
    bad = dlg.settings()
    bad.model_path = str(phantom / "dicom")
    with qtbot.waitSignal(win.engine_changed, timeout=WAIT_MS):
        win.apply_settings(bad)
    qtbot.waitUntil(lambda: not win.busy, timeout=WAIT_MS)
    assert win.engine is None and win.model_error
    assert "could not be loaded" in win.model_label.text()
    assert win.current_rgb is not None and not win.heatmap_check.isEnabled()

    # and back to the bundle
    good = ViewerSettings(device="CPU", model_path=str(tiny_bundle))
    with qtbot.waitSignal(win.engine_changed, timeout=WAIT_MS):
        win.apply_settings(good)
    qtbot.waitUntil(lambda: not win.busy, timeout=WAIT_MS)
    assert win.engine is not None and win.engine.device == "CPU" and not win.model_error
    assert win.study_prob_label.text() == shown


def test_default_window_applies_to_new_images(qtbot, engine, phantom):
    from desktop.viewer.app import ViewerWindow

    ViewerSettings(wl_preset="full").save()
    w = ViewerWindow(engine)
    qtbot.addWidget(w)
    w.show()
    _open(qtbot, w, phantom / "dicom" / "study_0004")
    img = w.current_image.image
    full = next((c, wd) for name, c, wd in img.window_presets() if name == "Full range")
    assert w.current_window == full
    assert w.preset_combo.currentText().startswith("Full range")
    np.testing.assert_array_equal(w.current_rgb, render.render_rgb(img.display(full)))


def test_main_takes_model_and_device_from_settings(phantom, tiny_bundle, tmp_path, monkeypatch):
    ViewerSettings(device="AUTO", model_path=str(tiny_bundle)).save()
    calls = []

    def recording_engine(path, device):
        calls.append((str(path), device))
        return Engine(path, device=device)

    monkeypatch.setattr(desktop.viewer.app, "Engine", recording_engine)
    out = tmp_path / "shot.png"
    assert desktop.viewer.app.main([str(phantom / "dicom" / "study_0001"), "--screenshot",
                                str(out)]) == 0
    assert calls == [(str(tiny_bundle), "AUTO")]
    desktop.viewer.app.main([str(phantom / "dicom" / "study_0001"), "--device", "CPU",
                         "--screenshot", str(out)])
    assert calls[-1] == (str(tiny_bundle), "CPU")  # the command line wins


def test_settings_dialog_is_as_tall_as_its_rows(qtbot):
    """Issue 15 §5: a fixed 220 px height left an empty band under the buttons."""
    from desktop.viewer.dialogs import SettingsDialog
    from desktop.viewer.settings import ViewerSettings

    d = SettingsDialog(ViewerSettings())
    qtbot.addWidget(d)
    d.show()
    assert d.height() <= d.sizeHint().height() + 2
    assert "default model" in d.model_edit.placeholderText()
