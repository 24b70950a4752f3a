"""Start-up shared by the frozen executables (``mura-viewer``, ``mura-screen``).

The frozen app is started by clinic staff from a shortcut or a file association, with no
terminal: errors must land in a per-user log file (never in the read-only install folder), and
IT needs a way to check an install without Python (``--version``, ``--card``,
``--check-decode``). The bundled model is found without a ``--model`` flag by the programs
themselves (:func:`models.reference.default_bundle_path`: ``<install>/model``), not added here:
the viewer must let a model chosen in its Settings beat the installed default, which an added
``--model`` would override. The desktop modules' own ``main`` functions stay unchanged: this
wrapper adds the frozen-only behaviour around them.

Support flags, handled here before the app's own parser sees the arguments:

* ``--version``: version, build commit, component versions, OpenVINO devices, where the model,
  settings, cache and logs are.
* ``--card``: the bundled (or ``--model``/``MURA_MODEL``) bundle's card, checksums verified.
* ``--check-decode FILE...``: decode each file as the screener would and print one JSON line per
  file (transfer syntax, shape, pixel hash or the error); exit 1 if any failed.

Nothing here prints patient identifiers: the decode check prints the file path, the transfer
syntax and pixel statistics, never DICOM header text.
"""

from __future__ import annotations

import faulthandler
import hashlib
import importlib.metadata as md
import json
import logging
import logging.handlers
import platform
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from desktop import paths

PROJECT = "mura-fracture"
BUILD_INFO = "build_info.json"
COMPONENTS = ("openvino", "pydicom", "pylibjpeg", "pylibjpeg-libjpeg", "pylibjpeg-openjpeg",
              "pyjpegls", "numpy", "pillow", "onnxruntime", "PySide6-Essentials")
TRAINING_ONLY = ("torch", "torchvision", "timm", "nncf", "onnx", "scipy", "sklearn")

log = logging.getLogger("mura.frozen")
_keep_open: list = []  # files faulthandler/stdio point at must outlive run()


def build_info() -> dict:
    """What the spec recorded at build time (version, git commit, date); {} from source."""
    base = Path(getattr(sys, "_MEIPASS", Path(__file__).resolve().parent))
    try:
        return json.loads((base / BUILD_INFO).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def project_version() -> str:
    info = build_info()
    if info.get("version"):
        return str(info["version"])
    try:
        return md.version(PROJECT)
    except md.PackageNotFoundError:
        return "unknown"


def _component_versions() -> dict[str, str]:
    out = {}
    for name in COMPONENTS:
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = "absent"
    return out


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


def _model_arg(argv: Sequence[str]) -> Path | None:
    """The bundle ``--version``/``--card`` describe: ``--model``, else the programs' default."""
    from models.reference import default_bundle_path

    for i, a in enumerate(argv):
        if a == "--model" and i + 1 < len(argv):
            return Path(argv[i + 1])
        if a.startswith("--model="):
            return Path(a.split("=", 1)[1])
    return default_bundle_path()


def print_version(app: str, argv: Sequence[str]) -> int:
    import importlib.util

    info = build_info()
    print(f"{app} {project_version()} ({PROJECT}; commit {info.get('commit', 'unknown')}, "
          f"built {info.get('built', 'unknown')})")
    print(f"python {platform.python_version()} on {platform.system()} {platform.machine()}; "
          f"frozen: {'yes' if paths.is_frozen() else 'no'}")
    print("components: " + ", ".join(f"{k} {v}" for k, v in _component_versions().items()))
    present = [m for m in TRAINING_ONLY if importlib.util.find_spec(m) is not None]
    print(f"training stack present: {', '.join(present) if present else 'no'}")
    try:
        from models import ovruntime

        print(f"openvino devices: {', '.join(ovruntime.core().available_devices) or 'none'}")
    except Exception as e:  # noqa: BLE001 - a diagnostic must report, not crash
        print(f"openvino devices: error: {type(e).__name__}: {e}")
    model = _model_arg(argv)
    print(f"install: {paths.install_dir() or 'source tree'}")
    print(f"model: {model or 'none (pass --model BUNDLE)'}")
    print(f"settings: {paths.settings_dir()}\ncache: {paths.cache_dir()}\nlogs: {paths.log_dir()}")
    return 0


def print_card(app: str, argv: Sequence[str]) -> int:
    """Load the bundle exactly as the app would (schema + checksums) and summarise its card."""
    from models.card import load_bundle
    from models.errors import MuraError

    model = _model_arg(argv)
    if model is None:
        print(f"{app}: error: no model bundle: pass --model BUNDLE or set {paths.MODEL_ENV}",
              file=sys.stderr)
        return 2
    try:
        bundle = load_bundle(model)
    except MuraError as e:
        print(f"{app}: error: {e}", file=sys.stderr)
        return 2
    c = bundle.card
    val = c["validation"]
    print(f"model: {c['name']} {c['version']} ({bundle.model_id})")
    print(f"folder: {bundle.root}")
    print(f"architecture: {c['architecture']}; task: {c['task']['name']}; "
          f"input: {c['input']['preprocessing']['input_size']} px")
    print(f"intended use: {c['intended_use']}")
    print(f"body parts: {', '.join(c['body_parts'])}")
    print(f"thresholds: suspicious {c['thresholds']['suspicious']:.4f}, "
          f"likely {c['thresholds']['likely']:.4f}")
    print(f"validation: {val['verdict']}; precision {val['precision']}; "
          f"inference precision {val.get('inference_precision', 'unset')}")
    for name, m in c.get("metrics", {}).items():
        aucs = ", ".join(f"{k} {v:.3f}" for k, v in m.items()
                         if "auc" in k and "drop" not in k and isinstance(v, (int, float)))
        print(f"metrics[{name}]: {m.get('n_images', '?')} images, "
              f"{m.get('n_studies', '?')} studies; {aucs or 'no AUC recorded'}")
    prov = c.get("provenance", {})

    def data_name(d: object) -> str:
        return str(d.get("dataset", d)) if isinstance(d, dict) else str(d)

    print(f"trained on: {data_name(prov.get('training_data'))}; "
          f"validated on: {data_name(prov.get('validation_data'))}")
    print(f"checksums: {len(c['files'])} files verified")
    return 0


def check_decode(app: str, files: Sequence[str]) -> int:
    """Decode each file with the app's own reader; one JSON line per file."""
    import numpy as np

    from models.errors import MuraError
    from models.imageio import load_image

    if not files:
        print(f"{app}: error: --check-decode needs at least one file", file=sys.stderr)
        return 2
    failed = 0
    for f in files:
        row: dict = {"path": f}
        try:
            img = load_image(f)
            px = np.ascontiguousarray(img.pixels, dtype=np.float32)
            meta = getattr(img.dataset, "file_meta", None) if img.dataset is not None else None
            row.update(ok=True, kind=img.kind, frames=img.frames, shape=list(px.shape),
                       transfer_syntax=str(getattr(meta, "TransferSyntaxUID", "") or ""),
                       mean=float(px.mean()), sha256=hashlib.sha256(px.tobytes()).hexdigest())
        except (MuraError, OSError, ValueError, IndexError, AttributeError) as e:
            failed += 1
            row.update(ok=False, error=type(e).__name__, message=str(e))
        print(json.dumps(row), flush=True)
    return 1 if failed else 0


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
    if "--version" in argv:
        return print_version(app, argv)
    if "--card" in argv:
        return print_card(app, [a for a in argv if a != "--card"])
    if "--check-decode" in argv:
        i = argv.index("--check-decode")
        return check_decode(app, argv[i + 1:])
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
