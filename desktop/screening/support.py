"""Support flags of both programs, in the development install and the frozen app alike.

IT checks an install without Python, a developer checks a checkout the same way:

* ``--version``: version, build commit, component versions, OpenVINO devices, where the model,
  settings, cache and logs are.
* ``--card``: the model bundle's card (``--model``, else the programs' default), checksums
  verified, with its validated performance, indications and any red-banner warning.
* ``--check-decode FILE...``: decode each file as the screener would and print one JSON line per
  file (transfer syntax, shape, pixel hash or the error); exit 1 if any failed.

:func:`dispatch` is called by ``mura-screen`` and ``mura-viewer`` before their own parsers, and
by the frozen wrapper (installers/frozen/mura_frozen.py). Nothing here prints patient
identifiers: the decode check prints the file path, the transfer syntax and pixel statistics,
never DICOM header text. Qt-free and torch-free.
"""

from __future__ import annotations

import hashlib
import importlib.metadata as md
import json
import platform
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from desktop.screening import paths

PROJECT = "mura-fracture"
BUILD_INFO = "build_info.json"
COMPONENTS = ("openvino", "pydicom", "pylibjpeg", "pylibjpeg-libjpeg", "pylibjpeg-openjpeg",
              "pyjpegls", "numpy", "pillow", "onnxruntime", "PySide6-Essentials")
TRAINING_ONLY = ("torch", "torchvision", "timm", "nncf", "onnx", "scipy", "sklearn")
FLAGS = ("--version", "--card", "--check-decode")
EPILOG = ("support: --version (versions, devices, where the model/settings/logs are), --card "
          "(the model's card, checksums verified), --check-decode FILE... (decode as the screener "
          "would, one JSON line per file)")


def dispatch(app: str, argv: Sequence[str]) -> int | None:
    """Run a support flag if ``argv`` has one (its exit status), else None: the app goes on."""
    argv = list(argv)
    if "--version" in argv:
        return print_version(app, argv)
    if "--card" in argv:
        return print_card(app, [a for a in argv if a != "--card"])
    if "--check-decode" in argv:
        return check_decode(app, argv[argv.index("--check-decode") + 1:])
    return None


def build_info() -> dict:
    """What the spec recorded at build time (version, git commit, date); {} from source."""
    base = getattr(sys, "_MEIPASS", None)
    if base is not None:
        try:
            return json.loads((Path(base) / BUILD_INFO).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
    return _git_info()


def _git_info() -> dict:
    """From a checkout: the commit it is at (the development install has no build_info.json)."""
    repo = Path(__file__).resolve().parents[1]
    try:
        r = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"], capture_output=True,
                           text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return {}
    return {"commit": r.stdout.strip(), "built": "never (development install)"} if r.returncode == 0 else {}


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
    from models.scope import Indications
    from models.trust import BANNER, model_warnings, performance_lines

    print("performance: " + "; ".join(performance_lines(c)))
    print(f"indicated for: {Indications.from_card(c).summary()}")
    for w in model_warnings(c):
        print(f"WARNING: {BANNER}: {w}")
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


def decode_probe(path: str, fast: bool = False) -> dict:
    """Decode ``path`` through the screener's door and say how it went, never raising: ``status``
    "ok", "typed" (a :class:`~models.errors.MuraError`, ``error`` its class) or "untyped" (any other
    exception: a bug), plus this process's peak RSS. The fuzz campaign (bench/fuzz_dicom.py) runs
    it in capped worker processes."""
    from models.errors import MuraError
    from models.imageio import decode_for_model

    row: dict = {"path": path, "status": "ok", "error": ""}
    try:
        px, _colour = decode_for_model(path, min_side=512 if fast else None)
        row["shape"] = list(px.shape)
    except MuraError as e:
        row.update(status="typed", error=type(e).__name__)
    except Exception as e:  # noqa: BLE001 - exactly what the campaign counts
        row.update(status="untyped", error=f"{type(e).__name__}: {e}"[:300])
    row["rss_mb"] = _peak_rss_mb()
    return row


def _peak_rss_mb() -> float:
    """This process's peak RSS. Linux's VmHWM belongs to the process's own memory map; ru_maxrss
    survives exec, so a spawned worker would report its parent's peak (a 3.5 GB pytest run)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def silence_library_warnings(log_file: Path | None = None) -> None:
    """Library warnings (pydicom's remarks on odd files name their paths) go to ``log_file``, or
    nowhere: never to the terminal, where they read like a crash and can leak a patient's name
    from a folder path. What matters about a file is in its failure reason anyway."""
    import logging

    logging.captureWarnings(True)
    handler: logging.Handler = logging.NullHandler()
    if log_file is not None:
        handler = logging.FileHandler(log_file, encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    for name in ("py.warnings", "pydicom"):
        lg = logging.getLogger(name)
        lg.handlers, lg.propagate = [handler], False
