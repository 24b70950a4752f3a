"""Make ``samples/``: eight FracAtlas radiographs to try the screener and the viewer on.

    .venv/bin/python samples/make_samples.py /path/to/fracatlas     # e.g. ../shared/data/fracatlas

Why these eight: they come from the *internal-validation* part of the project's FracAtlas split
(``models.datasources.group_split(records, 0.15, 0)``, the split ``mura-train`` uses for the
reference model), so the shipped model is not shown its own training images; five are
fractured and three not, across hand, leg, hip and shoulder. The script checks each choice
against the split and against FracAtlas's own labels, and stops if either disagrees (another
FracAtlas version, or another split) rather than writing mislabelled samples.

What it writes, and nothing else: each image downscaled to a long side of at most 768 px (never
enlarged), as 8-bit grayscale PNG in a folder of its own (the screener and viewer group plain
images by folder into one study, so one folder per image keeps them separate studies); two of
them wrapped instead as DICOM Secondary Capture (MONOCHROME2, 8-bit, uncompressed) with a
synthetic patient (``SAMPLE-000n``, ``Sample^FracAtlas``) and UIDs derived from the image id, so
a rerun writes the same files; and ``README.md`` with the credit and the list of files.
"""

from __future__ import annotations

import argparse
import csv
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # run as a script from anywhere: the repo's packages

from models.datasources import group_split, load_source  # noqa: E402

LONG_SIDE = 768
VAL_FRACTION, SEED = 0.15, 0  # trainer.train.TrainConfig defaults = results/reference/train.yaml
#: Software that made the DICOM files (DICOM Manufacturer); also seeds the UIDs.
MAKER = "mura-fracture samples/make_samples.py"


@dataclass(frozen=True)
class Sample:
    """One chosen image: FracAtlas id, the label and body part FracAtlas gives it, and whether
    it is written as DICOM."""

    image_id: str
    body_part: str
    fractured: bool
    dicom: bool = False

    @property
    def rel_path(self) -> str:
        stem = f"{self.body_part}-{self.image_id.removesuffix('.jpg')}"
        if self.dicom:
            return f"dicom/{stem}.dcm"
        return f"{stem}/{self.image_id.removesuffix('.jpg')}.png"


SAMPLES = (
    Sample("IMG0002126.jpg", "hand", True),
    Sample("IMG0002413.jpg", "hand", True),
    Sample("IMG0002455.jpg", "leg", True),
    Sample("IMG0002451.jpg", "leg", True, dicom=True),
    Sample("IMG0002448.jpg", "mixed", True),  # flagged leg and hip: a femoral fracture
    Sample("IMG0000644.jpg", "hand", False),
    Sample("IMG0001232.jpg", "hip", False),
    Sample("IMG0001733.jpg", "shoulder", False, dicom=True),
)


def check_choices(root: Path) -> dict[str, dict[str, str]]:
    """Each sample is in the internal-validation part and FracAtlas labels it as listed.

    Returns FracAtlas's ``dataset.csv`` rows by image id (the README cites their flags).
    """
    records = load_source(f"fracatlas:{root}", "train").records
    _train, val = group_split(records, VAL_FRACTION, SEED)
    val_ids = {r.study_id: r for r in val}
    with (root / "dataset.csv").open(newline="", encoding="utf-8") as fh:
        rows = {r["image_id"]: r for r in csv.DictReader(fh)}
    for s in SAMPLES:
        rec = val_ids.get(s.image_id)
        if rec is None:
            raise SystemExit(f"{s.image_id} is not in the internal-validation part of the "
                             f"FracAtlas split (val_fraction {VAL_FRACTION}, seed {SEED})")
        if (rec.label == 1) != s.fractured or rec.body_part != s.body_part:
            raise SystemExit(f"{s.image_id}: FracAtlas says fractured={rec.label}, body part "
                             f"{rec.body_part!r}; this script expects {s}")
    return rows


def load_downscaled(path: Path) -> np.ndarray:
    """8-bit grayscale, long side at most LONG_SIDE (FracAtlas images are grey stored as RGB)."""
    with Image.open(path) as im:
        im = im.convert("L")
        scale = LONG_SIDE / max(im.size)
        if scale < 1:
            im = im.resize((round(im.width * scale), round(im.height * scale)),
                           Image.Resampling.LANCZOS)
        return np.asarray(im, dtype=np.uint8)


def write_dicom(pixels: np.ndarray, s: Sample, number: int, out: Path) -> None:
    """A minimal, valid Secondary Capture: synthetic patient, deterministic UIDs, no dates
    (none is known, and a made-up one would look real), the source credited in ImageComments."""
    def uid(kind: str) -> str:
        return generate_uid(entropy_srcs=[MAKER, s.image_id, kind])

    sop = uid("instance")
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = sop
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = SecondaryCaptureImageStorage, sop
    ds.PatientName, ds.PatientID = "Sample^FracAtlas", f"SAMPLE-{number:04d}"
    ds.PatientBirthDate = ds.PatientSex = ""
    ds.StudyInstanceUID, ds.SeriesInstanceUID = uid("study"), uid("series")
    ds.StudyDate = ds.StudyTime = ""  # type 2: present, empty; FracAtlas gives no dates
    ds.StudyID, ds.AccessionNumber, ds.ReferringPhysicianName = "1", "", ""
    ds.StudyDescription = f"FracAtlas sample {s.image_id.removesuffix('.jpg')} ({s.body_part})"
    ds.Modality, ds.SeriesNumber, ds.InstanceNumber = "OT", 1, 1
    ds.SeriesDescription = "FracAtlas radiograph, downscaled"
    ds.BodyPartExamined = {"leg": "LEG", "hand": "HAND", "hip": "HIP",
                           "shoulder": "SHOULDER"}.get(s.body_part, "")
    ds.Manufacturer, ds.ConversionType = MAKER, "WSD"
    ds.PatientOrientation = ""
    ds.BurnedInAnnotation = "NO"
    ds.ImageComments = (f"FracAtlas image {s.image_id} (Abedeen et al., Scientific Data 2023), "
                        "CC BY 4.0; downscaled")
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows, ds.Columns = pixels.shape
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = np.ascontiguousarray(pixels).tobytes()
    out.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(out, enforce_file_format=True)


README_HEAD = """# Sample radiographs

Eight radiographs from **FracAtlas** to try the screener and the viewer on:

    mura-screen samples --out runs/samples    # worklist of the eight, with the shipped model
    mura-viewer samples                       # or File → Open sample radiographs

Source and licence: FracAtlas — I. Abedeen, M. A. Rahman, F. Z. Prottyasha, T. Ahmed,
T. M. Chowdhury, S. Shatabda, "FracAtlas: A Dataset for Fracture Classification, Localization
and Segmentation of Musculoskeletal Radiographs", *Scientific Data* 10 (2023),
<https://doi.org/10.1038/s41597-023-02432-4>; data at
<https://figshare.com/articles/dataset/The_dataset/22363012>, licensed
[CC BY 4.0](https://creativecommons.org/licenses/by/4.0/). Changes: downscaled (the copy they
were taken from is already reduced from FracAtlas's originals; the script caps the long side at
768 px and never enlarges; sizes below), converted to 8-bit grayscale and re-encoded as PNG; two
of them wrapped as DICOM Secondary Capture (`dicom/`, MONOCHROME2, 8-bit, with a synthetic
patient `SAMPLE-000n` / `Sample^FracAtlas`: FracAtlas has no patient data, and none was added).

All eight are from the *internal-validation* part of the project's FracAtlas split (blocks of
20 consecutive ids, 15 % of blocks, seed 0: what `mura-train` holds out), so the shipped
reference model was not trained on them (that part did pick its best epoch, its calibration and
its thresholds, and the INT8 gate scored it). Labels are FracAtlas's own (`fractured` column); a
"mixed" image carries more than one body-part flag. Each image sits in a folder of its own
because the screener and the viewer group plain images by folder into one study.

**Research use only — not for diagnostic use.** These are examples, not a test set: eight images
say nothing about how well a model works (the model card does).

| file | FracAtlas image | body part | label | pixels (w × h) |
| --- | --- | --- | --- | --- |
"""

README_TAIL = """
Made by `.venv/bin/python samples/make_samples.py /path/to/fracatlas` (the script checks every
choice against the split and the labels, and writes the same files on every run).
"""


def write_readme(rows: dict[str, dict[str, str]], sizes: dict[str, tuple[int, int]]) -> str:
    """The README above plus one table row per file, from FracAtlas's own flags and the
    ``(width, height)`` written."""
    lines = []
    for s in SAMPLES:
        row = rows[s.image_id]
        part = s.body_part
        if part == "mixed":
            flags = [p for p in ("hand", "leg", "hip", "shoulder") if row.get(p) == "1"]
            part = f"mixed ({' + '.join(flags)})"
        label = "fractured" if s.fractured else "not fractured"
        w, h = sizes[s.image_id]
        lines.append(f"| `{s.rel_path}` | {s.image_id} | {part} | {label} | {w} × {h} |")
    return README_HEAD + "\n".join(lines) + "\n" + README_TAIL


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("fracatlas", type=Path, help="FracAtlas root (dataset.csv + images/)")
    ap.add_argument("--out", type=Path, default=HERE, help="where to write (default: samples/)")
    a = ap.parse_args(argv)
    rows = check_choices(a.fracatlas)
    n_dicom = 0
    sizes: dict[str, tuple[int, int]] = {}
    for s in SAMPLES:
        pixels = load_downscaled(a.fracatlas / "images" / s.image_id)
        sizes[s.image_id] = (pixels.shape[1], pixels.shape[0])
        dest = a.out / s.rel_path
        if s.dicom:
            n_dicom += 1
            write_dicom(pixels, s, n_dicom, dest)
        else:
            dest.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels).save(dest, optimize=True)
        print(f"{dest}  {pixels.shape[1]}x{pixels.shape[0]}  {dest.stat().st_size / 1e3:.0f} kB")
    (a.out / "README.md").write_text(write_readme(rows, sizes), encoding="utf-8")
    total = sum(p.stat().st_size for p in a.out.rglob("*") if p.is_file())
    print(f"{len(SAMPLES)} samples, {total / 1e6:.2f} MB in {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
