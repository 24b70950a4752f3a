"""``mura-synth``: write every phantom layout under one output folder."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from models.errors import ConfigError
from models.synth.dicom_writer import write_dicom_studies
from models.synth.layouts import write_external, write_mura

# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------

_KINDS = ("mura", "external", "dicom")


def _parse_only(text: str) -> list[str]:
    kinds = [k.strip() for k in text.split(",") if k.strip()]
    bad = [k for k in kinds if k not in _KINDS]
    if bad or not kinds:
        raise ConfigError(f"--only {text!r}: expected a comma list of {', '.join(_KINDS)}")
    return kinds


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mura-synth",
        description=(
            "Write deterministic phantom radiographs in the layouts the project reads: "
            "OUT/mura/MURA-v1.1 (MURA tree + CSVs), OUT/external ({train,test}/{fractured,"
            "not fractured}/*.jpg) and OUT/dicom (DICOM studies + labels.csv). "
            "Synthetic data for development and tests only; not for diagnostic use."
        ),
        epilog=(
            "Rerunning into the same OUT replaces what an earlier mura-synth run wrote there "
            "(recorded in hidden .mura-synth-*.json markers) and refuses to overwrite anything "
            "else."
        ),
    )
    p.add_argument("out", metavar="OUT", help="output folder (created if missing)")
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="random seed (default 0); equal seeds give byte-identical files",
    )
    p.add_argument(
        "--mura-patients",
        type=int,
        default=300,
        metavar="N",
        help="patients in the MURA phantom, split ~80/20 into train/valid (default 300)",
    )
    p.add_argument(
        "--external-images",
        type=int,
        default=200,
        metavar="N",
        help="images in the external-set phantom, ~balanced, ~80/20 train/test (default 200)",
    )
    p.add_argument(
        "--dicom-studies",
        type=int,
        default=12,
        metavar="N",
        help="DICOM studies of 1-3 images covering CR/DX, MONOCHROME1/2, 8-16 bits and "
        "uncompressed, RLE, JPEG-LS and JPEG 2000 encodings (default 12)",
    )
    p.add_argument(
        "--jobs",
        type=int,
        default=None,
        metavar="N",
        help="worker processes for rendering (default: CPU count); output does not depend on it",
    )
    p.add_argument(
        "--only",
        default=",".join(_KINDS),
        metavar="KINDS",
        help="comma list of what to write, from mura,external,dicom (default: all three)",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``mura-synth``; bad options exit with status 2 and name the value."""
    parser = _parser()
    args = parser.parse_args(argv)
    out = Path(args.out)
    start = time.perf_counter()
    try:
        kinds = _parse_only(args.only)
        if "mura" in kinds:
            c = write_mura(
                out / "mura", seed=args.seed, n_patients=args.mura_patients, jobs=args.jobs
            )
            for split, n in c.items():
                print(
                    f"mura/{split}: {n['patients']} patients, {n['studies']} studies "
                    f"({n['positive_studies']} positive), {n['images']} images"
                )
        if "external" in kinds:
            e = write_external(
                out / "external", seed=args.seed, n_images=args.external_images, jobs=args.jobs
            )
            for split, n in e.items():
                print(f"external/{split}: " + ", ".join(f"{v} {k}" for k, v in n.items()))
        if "dicom" in kinds:
            d = write_dicom_studies(
                out / "dicom", seed=args.seed, n_studies=args.dicom_studies, jobs=args.jobs
            )
            n_files = sum(len(s["images"]) for s in d)
            print(f"dicom: {len(d)} studies, {n_files} files, labels in {out / 'dicom/labels.csv'}")
    except ConfigError as exc:
        parser.error(str(exc))
    print(f"wrote {out} in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
