"""How often the scope checks refuse, per data set: out-of-scope images must all be refused,
in-scope ones almost never (issue 15: <= 2 % of the internal-validation images).

Each file goes through exactly the screener's chain (:mod:`models.scope`): header -> decoded
image -> the model's body-part confidence, with the shipped reference model unless ``--model``.

    python bench/scope.py [--model B] [--data ../shared/data] [--external-max 0]

Prints a table per set (n, scored, refused by each check, failed) and the machine's ISA (INT8
body-part probabilities, hence confidence refusals near the threshold, can move with it).
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from models.dicom import read_header  # noqa: E402
from models.engine import Engine  # noqa: E402
from models.errors import ImageDecodeError  # noqa: E402
from models.imageio import decode_for_model, sniff_kind  # noqa: E402
from models.scope import (  # noqa: E402
    HeaderFields,
    Indications,
    header_refusal,
    image_refusal,
    prediction_refusal,
)

#: The files of ../shared/data/dicom that are not extremity radiographs, and the extremity ones.
NON_EXTREMITY_DICOM = ("CR-MONO1-10-chest", "CR-ModalitySequenceLUT.dcm", "JPGLosslessP14SV1_1s_1f_8b.dcm",
                       "MR_truncated.dcm", "Monochrome1-Jpeg.dcm", "OBXXXX1A_rle_2frame.dcm", "RG1_J2KI.dcm",
                       "RG1_JLSN.dcm", "dx_image.dcm", "emri_small_jpeg_2k_lossless_too_short.dcm",
                       "mlut_18.dcm", "vlut_04.dcm")
EXTREMITY_DICOM = ("RG2_JLSL.dcm", "RG2_JLSN.dcm", "RG2_JPLL.dcm", "RG2_JPLY_fixed.dcm", "RG3_J2KI.dcm",
                   "RG3_J2KR.dcm")


@dataclass
class Outcome:
    status: str  # "scored", "refused", "failed"
    check: str = ""
    reason: str = ""


def assess(path: str | Path, engine: Engine, ind: Indications) -> Outcome:
    """The screener's scope chain for one file."""
    if sniff_kind(path) == "dicom":
        r = header_refusal(HeaderFields.from_dataset(read_header(path)), ind)
        if r is not None:
            return Outcome("refused", r.check, r.reason)
    try:
        pixels, colour = decode_for_model(path)
    except ImageDecodeError as e:
        return Outcome("failed", reason=e.reason)
    r = image_refusal(pixels, colour)
    if r is None:
        r = prediction_refusal(engine.predict([pixels])[0].body_part_probs, ind)
    return Outcome("scored") if r is None else Outcome("refused", r.check, r.reason)


def fracatlas_internal_validation(data: Path) -> list[str]:
    """The reference model's internal-validation images (results/reference/train.yaml's split)."""
    import yaml

    from models.datasources import group_split, load_source

    cfg = yaml.safe_load((REPO / "results" / "reference" / "train.yaml").read_text())
    full = load_source(f"fracatlas:{data / 'fracatlas'}")
    _train, val = group_split(full.records, float(cfg["val_fraction"]), int(cfg["seed"]))
    return [r.path for r in val]


def table(sets: dict[str, list[str]], engine: Engine) -> list[str]:
    ind = Indications.from_card(engine.bundle.card)
    lines = ["| set | n | scored | refused | by check | failed |", "| --- | --- | --- | --- | --- | --- |"]
    for name, paths in sets.items():
        outs = [assess(p, engine, ind) for p in paths]
        n = len(outs)
        refused = [o for o in outs if o.status == "refused"]
        checks = ", ".join(f"{k} {v}" for k, v in Counter(o.check for o in refused).most_common())
        lines.append(f"| {name} | {n} | {sum(o.status == 'scored' for o in outs)} | {len(refused)} "
                     f"({len(refused) / max(n, 1):.1%}) | {checks or '–'} | "
                     f"{sum(o.status == 'failed' for o in outs)} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    from models.ovruntime import cpu_isa
    from models.reference import require_default_bundle

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None, help="bundle (default: the shipped reference model)")
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data"))
    ap.add_argument("--external-max", type=int, default=0, help="Kaggle external images (0: none, -1: all)")
    a = ap.parse_args(argv)
    data = Path(a.data)
    engine = Engine(a.model or require_default_bundle().path)
    sets = {"dicom: not extremity": [str(data / "dicom" / f) for f in NON_EXTREMITY_DICOM],
            "dicom: extremity": [str(data / "dicom" / f) for f in EXTREMITY_DICOM],
            "imagenet photographs": sorted(str(p) for p in (data / "imagenet-samples").glob("*.png")),
            "FracAtlas internal validation": fracatlas_internal_validation(data)}
    if a.external_max:
        ext = sorted(str(p) for p in (data / "bone-fracture-binary").rglob("*.jp*g"))
        sets["Kaggle external (all body parts)"] = ext if a.external_max < 0 else ext[:: max(1, len(ext) // a.external_max)]
    print(f"model {engine.bundle.model_id}; CPU {cpu_isa()}")
    print("\n".join(table(sets, engine)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
