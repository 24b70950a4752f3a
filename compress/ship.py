"""Copy a gated bundle into the repository as the shipped model, with the outputs it must reproduce.

The shipped copy keeps what a clinic PC runs (INT8 IR, FP16 IR), the card and the validation
report; the FP32 IR and the ONNX file are reproducible (``make reference-model``) and would double
the repository's size, so they are left out and the card's artifacts name only what is there. When
INT8 failed the gate the FP16 IR becomes the primary artifact and the card says why.

Beside the bundle, ``expected_samples.json`` records each sample radiograph's probability from
the FP32 IR (the reference) and from the shipped files on the machine that made it. The test
allows the INT8 output on another CPU to differ from FP32 by what the gate measured INT8 to differ
on its thousands of validation images (``max_abs_prob_diff``): INT8 kernels differ between AVX2,
AVX-512 VNNI and AMX, but each is an approximation of the same FP32 model, and the gate bounded
that approximation. FP16 weights run in f32 on a CPU: 2e-3.

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

KEEP_ARTIFACTS = ("openvino_int8", "openvino_fp16")
EXTRA_FILES = ("validation.json", "validation.md", "roc.png")
FP16_TOLERANCE = 2e-3
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
    return {"model": dst.model_id, "int8_tolerance": gate_diff, "fp16_tolerance": FP16_TOLERANCE,
            "why": "INT8 on another CPU may differ from FP32 by as much as the gate measured on its "
                   "validation images (max |Δp|); FP16 weights run in f32 on a CPU",
            "samples": rows}


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
