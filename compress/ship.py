"""Copy a gated bundle into the repository as the shipped model, with the outputs it must reproduce.

The shipped copy keeps what a clinic PC runs (INT8 IR, FP16 IR), the card and the validation
report; the FP32 IR and the ONNX file are reproducible (``make reference-model``) and would double
the repository's size, so they are left out and the card's artifacts name only what is there. When
INT8 failed the gate the FP16 IR becomes the primary artifact and the card says why.

Beside the bundle, ``expected_samples.json`` records each sample radiograph's probability from
the FP32 IR (the reference) and from the shipped files on the machine that made it, with that
machine's ISA. :func:`verify_samples` is what a test on any other machine checks:

* FP16 weights run in f32 on every CPU, so the FP16 IR reproduces its own recording within 1e-3.
  How far half-precision weights move it from FP32 is a property of the model, not of the CPU:
  recorded (``fp16_max_abs_diff_vs_fp32``; 0.018 on the stride-16 Lite0), not asserted.
* INT8 kernels (and so INT8's last digits) differ between AVX2, AVX-512 VNNI and AMX. On a CPU
  with the recorded ISA, INT8 reproduces its own recording within 1e-3; elsewhere it must stay
  within what the gate measured INT8 to differ from FP32 on thousands of validation images
  (``max_abs_prob_diff``): each ISA's kernels approximate the same FP32 model, and the gate
  bounded that approximation.

    python -m compress.ship runs/reference/bundle models/reference/fracatlas-lite0 --samples samples
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from models.card import CARD_FILE, load_bundle, write_bundle
from models.engine import Engine
from models.errors import MuraError
from models.fsutil import atomic_write_json
from models.imageio import load_image
from models.ovruntime import cpu_isa

KEEP_ARTIFACTS = ("openvino_int8", "openvino_fp16")
EXTRA_FILES = ("validation.json", "validation.md", "roc.png")
REPRODUCE_TOLERANCE = 1e-3  # f32 inference (or the same INT8 kernels) on another machine
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".dcm")


def sample_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)


def record_samples(full_bundle: Path, shipped: Path, samples: Path) -> dict:
    """Each sample's probability from FP32 (full bundle) and from each shipped artifact here."""
    src, dst = load_bundle(full_bundle), load_bundle(shipped)
    engines = {"fp32": Engine(src, artifact="openvino_fp32")}
    engines.update({k: Engine(dst, artifact=k) for k in KEEP_ARTIFACTS if k in dst.card["artifacts"]})
    rows = []
    for p in sample_files(samples):
        img = load_image(p).pixels
        rows.append({"file": p.relative_to(samples).as_posix(),
                     **{k: float(e.predict([img])[0].probability) for k, e in engines.items()}})
    gate_diff = max((float(r.get("max_abs_prob_diff", 0.0)) for r in
                     (src.card.get("metrics") or {}).values() if str(r.get("dataset", "")).find("@") < 0),
                    default=0.0)
    return {"model": dst.model_id, "isa": cpu_isa(), "int8_tolerance": gate_diff,
            "reproduce_tolerance": REPRODUCE_TOLERANCE,
            "fp16_max_abs_diff_vs_fp32": max((abs(r["openvino_fp16"] - r["fp32"]) for r in rows
                                              if "openvino_fp16" in r), default=0.0),
            "why": "FP16 runs in f32 everywhere and reproduces its recording; INT8 reproduces its "
                   "recording on a CPU with the recorded ISA, elsewhere it stays within what the "
                   "gate measured INT8 to differ from FP32 on its validation images (max |Δp|)",
            "samples": rows}


def verify_samples(shipped: Path, samples: Path, rec: dict) -> list[str]:
    """Every way the shipped files on this machine fail to reproduce ``rec``; empty when they do."""
    b = load_bundle(shipped)
    same_isa = rec.get("isa") == cpu_isa()
    tol = rec["reproduce_tolerance"]
    problems = []
    for art in (a for a in KEEP_ARTIFACTS if a in b.card["artifacts"]):
        eng = Engine(b, artifact=art)
        for s in rec["samples"]:
            p = float(eng.predict([load_image(samples / s["file"]).pixels])[0].probability)
            if art == "openvino_fp16" or same_isa:
                ref, allowed, what = s[art], tol, f"its recording on {'this' if same_isa else 'any'} CPU"
            else:
                ref, allowed, what = s["fp32"], rec["int8_tolerance"], "FP32 within the gate's max |Δp|"
            if not abs(p - ref) <= allowed + 1e-6:
                problems.append(f"{art} {s['file']}: {p:.6f} vs {ref:.6f} ({what}, ±{allowed:g})")
    return problems


def ship(full_bundle: Path, out: Path, samples: Path | None) -> Path:
    src = load_bundle(full_bundle)
    card = dict(src.card)
    card["artifacts"] = {k: v for k, v in card["artifacts"].items() if k in KEEP_ARTIFACTS}
    if card["validation"]["verdict"] != "passed":
        card["primary_artifact"] = "openvino_fp16"
        card["validation"] = {**card["validation"], "shipped": (
            "INT8 failed the gate (reasons above); the shipped primary model is the FP16 IR, run in f32")}
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    for rel in card["artifacts"].values():
        for f in (rel, str(Path(rel).with_suffix(".bin"))):
            shutil.copy2(full_bundle / f, out / f)
    for f in EXTRA_FILES:
        if (full_bundle / f).is_file():
            shutil.copy2(full_bundle / f, out / f)
    card.pop("files", None)
    write_bundle(out, {**card, "files": {}})
    load_bundle(out)  # checksums and the card's schema, as a clinic PC will check them
    if samples is not None:
        atomic_write_json(out / "expected_samples.json", record_samples(full_bundle, out, samples))
    return out / CARD_FILE


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m compress.ship", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bundle", type=Path, help="the gated bundle mura-compress wrote")
    ap.add_argument("out", type=Path, help="where the shipped copy goes (replaced)")
    ap.add_argument("--samples", type=Path, default=None, help="sample radiographs to record outputs for")
    a = ap.parse_args(argv)
    try:
        card = ship(a.bundle, a.out, a.samples)
    except MuraError as e:
        print(f"ship: error: {e}", file=sys.stderr)
        return 2
    size = sum(p.stat().st_size for p in a.out.iterdir()) / 1e6
    print(f"shipped {card.parent} ({size:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
