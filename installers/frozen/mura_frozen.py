"""Start-up shared by the frozen executables (``mura-viewer``, ``mura-screen``).

The frozen app is started by clinic staff from a shortcut or a file association, with no
terminal: errors must land in a per-user log file (never in the read-only install folder), and
IT needs a way to check an install without Python (``--version``, ``--card``,
``--check-decode``). The bundled model is found without a ``--model`` flag by the programs
themselves (:func:`models.reference.default_bundle_path`: ``<install>/model``), not added here:
the viewer must let a model chosen in its Settings beat the installed default, which an added
``--model`` would override. The desktop modules' own ``main`` functions stay unchanged: this
wrapper adds the frozen-only behaviour around them.

The support flags (``--version``, ``--card``, ``--check-decode``) live in
:mod:`desktop.screening.support`, so the development install answers them exactly as the frozen app does.
"""

from __future__ import annotations

import faulthandler
import logging
import logging.handlers
import platform
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from desktop.screening import paths
from desktop.screening.support import build_info, dispatch, project_version  # noqa: F401 - re-exported

log = logging.getLogger("mura.frozen")
_keep_open: list = []  # files faulthandler/stdio point at must outlive run()


def _setup_logging(app: str) -> Path:
    """Log to ``<logs>/<app>.log`` (rotated); give a windowed app somewhere to print."""
    logs = paths.log_dir()
    logfile = logs / f"{app}.log"
    handler = logging.handlers.RotatingFileHandler(logfile, maxBytes=1_000_000, backupCount=3,
                                                   encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    if sys.stdout is None or sys.stderr is None:
        # A windowed Windows executable has no console: print() would raise on None.
        stream = open(logs / f"{app}.out.log", "a", encoding="utf-8", buffering=1)  # noqa: SIM115
        _keep_open.append(stream)
        sys.stdout = sys.stdout or stream
        sys.stderr = sys.stderr or stream
    faults = open(logs / f"{app}.crash.log", "a", encoding="utf-8")  # noqa: SIM115
    _keep_open.append(faults)
    faulthandler.enable(file=faults)

    def excepthook(kind, value, tb) -> None:
        log.critical("uncaught exception", exc_info=(kind, value, tb))
        sys.__excepthook__(kind, value, tb)

    sys.excepthook = excepthook
    return logfile


def _wants_onnxruntime(argv: Sequence[str]) -> bool:
    return "--backend=onnxruntime" in argv or any(
        a == "--backend" and b == "onnxruntime" for a, b in zip(argv, argv[1:], strict=False))


def run(app: str, app_main: Callable[[list[str]], int], argv: Sequence[str] | None = None) -> int:
    """Entry point of a frozen executable: set up per-user files, then dispatch."""
    argv = list(sys.argv[1:] if argv is None else argv)
    t0 = time.perf_counter()
    logfile = _setup_logging(app)
    # platform.system/release/machine read uname(); platform.platform() would also run the
    # external `uname -p` program at every start.
    log.info("start %s %s (frozen=%s, python %s, %s %s %s)", app, project_version(),
             paths.is_frozen(), platform.python_version(), platform.system(), platform.release(),
             platform.machine())
    rc = dispatch(app, argv)
    if rc is not None:
        return rc
    if _wants_onnxruntime(argv):
        import importlib.util

        if importlib.util.find_spec("onnxruntime") is None:
            print(f"{app}: error: this installation has no ONNX Runtime (left out of the "
                  "installer to save 35 MB); use the default OpenVINO backend", file=sys.stderr)
            return 2
    try:
        rc = int(app_main(argv) or 0)
    except SystemExit as e:  # argparse errors and --help
        rc = e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
    except Exception as e:  # noqa: BLE001 - log it where IT can find it, then fail
        log.exception("%s failed", app)
        print(f"{app}: unexpected error: {type(e).__name__}: {e}; details in {logfile}",
              file=sys.stderr)
        return 3
    log.info("exit %s status %d after %.2f s", app, rc, time.perf_counter() - t0)
    return rc
