"""``mura-viewer``: look at a study next to the model's verdict (PySide6).

The viewer is where a reader checks *why* a study was flagged, so it must show exactly what the
model saw and said: the same decoded pixels as the screener, the study probability aggregated by
the same rule (:func:`models.engine.aggregate_study`), the verdict at the card's own operating
points and the task's own word ("abnormality" for MURA-trained models, never "fracture").

This module is the entry point (``mura-viewer = desktop.viewer.app:main``) and re-exports the
viewer's public names. The parts live in their own modules:

- :mod:`desktop.viewer.studies` - Qt-free discovery, decoding and inference that a worker runs;
- :mod:`desktop.viewer.tasks` - the worker (QRunnable with signals and cancel);
- :mod:`desktop.viewer.image_view` - the image canvas;
- :mod:`desktop.viewer.dialogs` - model card, tag browser, settings;
- :mod:`desktop.viewer.main_window` - the window that ties them together;
- :mod:`desktop.screening.render` - pixels and words, without Qt.

Patient names and IDs are shown in the image overlay only; nothing here logs or prints them.
"""

from __future__ import annotations

import argparse
import logging
import sys

from PySide6.QtCore import QEventLoop, QTimer
from PySide6.QtWidgets import QApplication

from desktop.screening import paths
from desktop.screening.support import EPILOG, dispatch, silence_library_warnings
from desktop.viewer.dialogs import ModelCardDialog
from desktop.viewer.image_view import ImageView, qimage_to_rgb, rgb_to_qimage
from desktop.viewer.main_window import ViewerWindow
from desktop.viewer.settings import ViewerSettings
from desktop.viewer.studies import (
    Cancelled,
    StudyOutcome,
    ViewImage,
    analyse_study,
    discover_paths,
)
from desktop.viewer.tasks import Task, TaskSignals
from models.engine import Engine
from models.reference import find_default_bundle

__all__ = [
    "Cancelled",
    "ImageView",
    "ModelCardDialog",
    "StudyOutcome",
    "Task",
    "TaskSignals",
    "ViewImage",
    "ViewerWindow",
    "analyse_study",
    "build_parser",
    "discover_paths",
    "main",
    "qimage_to_rgb",
    "resolve_model",
    "rgb_to_qimage",
]


# --------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="mura-viewer",
        description="Show radiograph studies (DICOM by content, PNG, JPEG) with a model's "
        "verdict, per-image probabilities and heatmap. Research use only — not for diagnostic "
        "use. Keys: ←/→ images, PgUp/PgDown studies, A heatmap, I invert, R/L rotate, H/V flip, "
        "= fit, +/- zoom, Space reset, F or F11 full screen; left-drag window/level, wheel "
        "zoom, middle-drag pan; drop files or folders on the window to open them.",
        epilog=EPILOG,
    )
    ap.add_argument("paths", nargs="*", metavar="PATH",
                    help="folders (searched recursively) or files to open; studies found in "
                    "several paths are merged by StudyInstanceUID")
    ap.add_argument("--model", metavar="BUNDLE", default=None,
                    help="model bundle folder (card.json + model files); default: the bundle "
                    "chosen in File > Settings, else $MURA_DEFAULT_MODEL, the installed app's "
                    "model or the shipped reference model models/reference/fracatlas-lite0 "
                    "(research use only; named on stderr); without any the viewer shows "
                    "images only")
    ap.add_argument("--device", default=None,
                    help="OpenVINO device for inference: CPU, GPU or AUTO (default: the "
                    "Settings value, CPU if never set)")
    ap.add_argument("--node", metavar="NODE", default=None,
                    help="show the studies a mura-node on this machine received and their "
                    "results (File > Received from the DICOM node): its configuration file "
                    "(node.toml) or data folder; read-only, the viewer never talks to the node")
    ap.add_argument("--screenshot", metavar="OUT.png", default=None,
                    help="open the paths, wait until the first study is analysed, save the "
                    "window to this PNG and exit (for tests and documentation)")
    ap.add_argument("--screenshot-timeout", type=float, default=120.0, metavar="SECONDS",
                    help="with --screenshot: give up waiting after this long, save what is "
                    "shown and exit with status 1 (default 120)")
    return ap


def _run_screenshot(win: ViewerWindow, out: str, timeout_s: float) -> int:
    """Wait for the first study (or for nothing to do), save; returns the exit status.

    Runs a local event loop, not ``app.exec()``/``app.quit()``: quitting the application closes
    every window, which would also hit a host application (or a test) that called ``main``.
    """
    loop = QEventLoop()
    state = {"rc": 1, "late": False}
    settle = QTimer()  # let queued paints and the overlay catch up before grabbing
    settle.setSingleShot(True)
    settle.setInterval(150)
    deadline = QTimer()
    deadline.setSingleShot(True)

    def save() -> None:
        try:
            path = win.save_screenshot(out)
            print(f"screenshot: {path}")
            state["rc"] = 1 if state["late"] else 0
        except OSError as e:
            print(f"mura-viewer: error: {e}", file=sys.stderr)
            state["rc"] = 2
        loop.quit()

    def on_deadline() -> None:
        state["late"] = True
        print(f"mura-viewer: still busy after {timeout_s:g} s; saving what is shown",
              file=sys.stderr)
        settle.start()

    def on_idle() -> None:
        if not win.busy:
            settle.start()

    settle.timeout.connect(save)
    deadline.timeout.connect(on_deadline)
    win.idle.connect(on_idle)
    deadline.start(int(timeout_s * 1000))
    if not win.busy:
        settle.start()
    loop.exec()
    deadline.stop()
    settle.stop()
    win.idle.disconnect(on_idle)
    return state["rc"]


def resolve_model(explicit: str | None, settings: ViewerSettings) -> str:
    """The bundle to load: ``--model``, else the one chosen in Settings, else the default
    bundle (announced on stderr and in the log); "" for none (images only).

    Settings beat the default because a site that chose a bundle there chose it on purpose;
    the default is what a fresh install or checkout should show rather than no scores at all.
    """
    if explicit:
        return explicit
    if settings.model_path:
        return settings.model_path
    found = find_default_bundle()
    if found is None:
        return ""
    notice = found.notice("mura-viewer")
    print(notice, file=sys.stderr)
    logging.getLogger("mura.viewer").info(notice)
    return str(found.path)


def main(argv: list[str] | None = None) -> int:
    """Start the viewer; returns the exit status (2 when the model or screenshot failed).

    The window appears at once: the model (compiling takes seconds) loads on a worker thread
    while the opened paths are decoded and shown, and their scores follow when it is ready.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    rc = dispatch("mura-viewer", argv)  # --version, --card, --check-decode: no window
    if rc is not None:
        return rc
    args = build_parser().parse_args(argv)
    silence_library_warnings(paths.log_dir() / "mura-viewer.warnings.log")  # not the terminal
    app = QApplication.instance() or QApplication([sys.argv[0]])
    app.setApplicationName("mura-viewer")
    settings = ViewerSettings.load()
    model = resolve_model(args.model, settings)
    device = args.device or settings.device
    win = ViewerWindow(None, settings=settings)

    def report_model_error() -> None:
        if win.model_error:
            print(f"mura-viewer: error: cannot load the model: {win.model_error}",
                  file=sys.stderr)

    win.engine_changed.connect(report_model_error)
    win.show()
    if model:
        # resolved here at call time, so a test can stand in for the engine; with paths to
        # open, the compile waits for the first image (it would compete with its decode)
        win.load_model(model, device, factory=lambda path, device: Engine(path, device=device),
                       after_first_image=bool(args.paths))
    if args.paths:
        win.open_paths(args.paths)
    if args.node and win.show_received(args.node, ask=False) is None:
        print(f"mura-viewer: error: {win.received.error}", file=sys.stderr)
    try:
        if args.screenshot:
            rc = _run_screenshot(win, args.screenshot, args.screenshot_timeout)
            return 2 if win.model_error else rc
        rc = int(app.exec())
        return 2 if win.model_error and rc == 0 else rc
    finally:
        win.shutdown()
        win.engine_changed.disconnect(report_model_error)
        win.close()
        win.deleteLater()


if __name__ == "__main__":
    sys.exit(main())
