"""Data sources: every source becomes a list of :class:`Record` (torch-free; trainer and compress).

One interface for MURA v1.1 (its real layout and headerless CSVs), the external
``{split}/{fractured,not fractured}/`` folder set, FracAtlas, a generic CSV and the phantom sets of
``mura-synth`` (any of those layouts, marked). The split lives here too (:func:`split_source`):
the trainer splits a pool by patient with the run's ``val_fraction`` and ``seed``, and compress
rebuilds that very split from the run manifest to keep training images out of its gate.
Readers never crash on one bad row or one missing file: they report it in
``DatasetSplit.problems`` (with the file and line) and skip it, and raise :class:`DataError` only
when the source as a whole is unusable.
"""

from __future__ import annotations

import csv
import random
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from models.errors import ConfigError, DataError
from models.imageio import is_ignored_file, sniff_kind
from models.labels import MURA_BODY_PARTS


@dataclass(frozen=True)
class Record:
    path: str
    label: int  # 1 = abnormal / fractured
    body_part: str
    study_id: str
    patient_id: str


@dataclass
class DatasetSplit:
    name: str  # e.g. "mura-v1.1/valid"
    task: str  # "abnormality" (MURA) or "fracture"
    records: list[Record]
    body_parts: list[str]
    source: str  # the folder or file it came from
    problems: list[str] = field(default_factory=list)

    def summary(self) -> dict:
        return {
            "dataset": self.name,
            "source": self.source,
            "task": self.task,
            "n_images": len(self.records),
            "n_studies": len({r.study_id for r in self.records}),
            "n_patients": len({r.patient_id for r in self.records}),
            "n_positive_images": sum(r.label for r in self.records),
            "body_parts": dict(sorted(Counter(r.body_part for r in self.records).items())),
            "n_problems": len(self.problems),
        }

    def subset(self, records: list[Record], name: str) -> DatasetSplit:
        return DatasetSplit(name, self.task, records, self.body_parts, self.source, [])


# --- MURA v1.1 -----------------------------------------------------------------------------

_MURA_STUDY = re.compile(
    r"^MURA-v1\.1/(?P<split>train|valid)/XR_(?P<part>[A-Z]+)/(?P<patient>patient\d+)/"
    r"(?P<study>study\d+_(?:positive|negative))/?$"
)


def find_mura_root(root: str | Path) -> Path:
    """Accept either the folder that holds ``MURA-v1.1`` or ``MURA-v1.1`` itself."""
    root = Path(root)
    if (root / "MURA-v1.1").is_dir():
        return root
    if root.name == "MURA-v1.1" and root.is_dir():
        return root.parent
    raise DataError(f"{root}: not a MURA v1.1 root (expected a 'MURA-v1.1' folder in it)")


def _read_rows(path: Path) -> list[list[str]]:
    if not path.is_file():
        raise DataError(f"{path}: MURA CSV not found")
    try:
        with path.open(newline="", encoding="utf-8") as f:
            return list(csv.reader(f))
    except (UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"{path}: not a readable CSV ({e})") from e


def read_mura(root: str | Path, split: str, *, check_files: bool = True) -> DatasetSplit:
    """Read ``{split}_image_paths.csv`` and ``{split}_labeled_studies.csv`` (headerless).

    Labels are per study (the study CSV); body part and patient come from the path.
    """
    if split not in ("train", "valid"):
        raise ConfigError(f"MURA split must be 'train' or 'valid', got {split!r}")
    base = find_mura_root(root)
    mura = base / "MURA-v1.1"
    problems: list[str] = []
    study_csv = mura / f"{split}_labeled_studies.csv"
    labels: dict[str, int] = {}
    for i, row in enumerate(_read_rows(study_csv), 1):
        if not row or not "".join(row).strip():
            continue
        m = _MURA_STUDY.match(row[0].strip()) if len(row) == 2 else None
        if m is None or row[1].strip() not in ("0", "1"):
            problems.append(f"{study_csv}:{i}: not a '<study path>/,<0|1>' row: {','.join(row)[:120]!r}")
            continue
        labels[row[0].strip().rstrip("/")] = int(row[1])
    if not labels:
        raise DataError(f"{study_csv}: no valid study rows ({len(problems)} malformed)")
    image_csv = mura / f"{split}_image_paths.csv"
    records: list[Record] = []
    for i, row in enumerate(_read_rows(image_csv), 1):
        if not row or not row[0].strip():
            continue
        rel = row[0].strip()
        study_path, _, fname = rel.rpartition("/")
        m = _MURA_STUDY.match(study_path)
        if len(row) != 1 or m is None or not fname:
            problems.append(f"{image_csv}:{i}: not a MURA image path: {rel[:120]!r}")
            continue
        if study_path not in labels:
            problems.append(f"{image_csv}:{i}: image of a study with no label row: {rel}")
            continue
        part = m["part"].lower()
        if part not in MURA_BODY_PARTS:
            problems.append(f"{image_csv}:{i}: unknown body part XR_{m['part']}")
            continue
        path = base / rel
        if check_files and not path.is_file():
            problems.append(f"{path}: image listed in {image_csv.name}:{i} is missing")
            continue
        records.append(Record(str(path), labels[study_path], part, study_path, m["patient"]))
    if not records:
        raise DataError(f"{image_csv}: no usable image rows ({len(problems)} problems, first: {problems[:1]})")
    return DatasetSplit(f"mura-v1.1/{split}", "abnormality", records, list(MURA_BODY_PARTS), str(mura), problems)


# --- external folder set -------------------------------------------------------------------

EXTERNAL_CLASSES = {"fractured": 1, "not fractured": 0}
_COPY_SUFFIX = re.compile(r"(\._jumbo)?( - Copy)?( \(\d+\))?$")


def original_group(name: str) -> str:
    """'57-rotated2-rotated1 - Copy (1).jpg' -> '57': copies of one original stay in one split.

    The Kaggle set is mostly rotated copies (``-rotatedN`` chains) and duplicates (`` - Copy``,
    `` (1)``); splitting them image by image would measure memory, not skill.
    """
    stem = Path(name).stem.split("-rotated")[0]
    return _COPY_SUFFIX.sub("", stem)


def read_image_folder(root: str | Path, splits: tuple[str, ...] = ("train", "test", "val")) -> DatasetSplit:
    """The Bone Fracture Binary Classification layout: ``{split}/{fractured,not fractured}/*``.

    All splits found are taken together (as an external set should be). Files are kept by content
    (a PNG named .jpg is fine); system files are ignored; non-images are reported.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: image folder not found")
    records: list[Record] = []
    problems: list[str] = []
    found_any = False
    for split in splits:
        for cls, label in EXTERNAL_CLASSES.items():
            d = root / split / cls
            if not d.is_dir():
                continue
            found_any = True
            for p in sorted(d.iterdir()):
                if not p.is_file() or is_ignored_file(p):
                    continue
                if sniff_kind(p) is None:
                    problems.append(f"{p}: not an image file (skipped)")
                    continue
                group = f"{cls}:{original_group(p.name)}"
                records.append(Record(str(p), label, "unknown", f"{split}/{cls}/{p.name}", group))
    if not found_any:
        raise DataError(
            f"{root}: no '{{split}}/fractured' or '{{split}}/not fractured' folders "
            f"(looked for splits {', '.join(splits)})"
        )
    return DatasetSplit(f"folder:{root.name}", "fracture", records, ["unknown"], str(root), problems)


# --- FracAtlas ------------------------------------------------------------------------------

#: FracAtlas's dataset.csv lists the body-part flags between ``image_id`` and ``hardware``.
_FRACATLAS_FIRST_NON_PART = "hardware"


def read_fracatlas(root: str | Path, *, block_size: int = 20) -> DatasetSplit:
    """FracAtlas (``dataset.csv`` + ``images/``): label ``fractured``, body part from its flags.

    Body-part classes are the flag columns the file itself declares (hand, leg, hip, shoulder,
    mixed), not MURA's seven; an image with several flags is "mixed". FracAtlas has no patient
    ids and neighbouring ids are often one patient, so ``patient_id`` is a block of
    ``block_size`` consecutive ids: splitting by it keeps neighbours together.
    """
    root = Path(root)
    table = root / "dataset.csv"
    if not table.is_file():
        raise DataError(f"{table}: FracAtlas dataset.csv not found")
    with table.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        cols = reader.fieldnames or []
        if "image_id" not in cols or "fractured" not in cols or _FRACATLAS_FIRST_NON_PART not in cols:
            raise DataError(f"{table}: expected columns image_id, <body parts>, hardware, ..., fractured; got {cols}")
        parts = cols[cols.index("image_id") + 1 : cols.index(_FRACATLAS_FIRST_NON_PART)]
        rows = list(enumerate(reader, 2))
    files = {p.name: p for p in (root / "images").rglob("*") if p.is_file()} if (root / "images").is_dir() else {}
    records, problems = [], []
    for line, row in rows:
        name = (row.get("image_id") or "").strip()
        m = re.search(r"(\d+)", name)
        if not name or m is None or row.get("fractured", "").strip() not in ("0", "1"):
            problems.append(f"{table}:{line}: malformed row {dict(row)!r:.120}")
            continue
        if name not in files:
            problems.append(f"{root / 'images' / name}: image listed in dataset.csv:{line} is missing")
            continue
        flagged = [p for p in parts if (row.get(p) or "0").strip() == "1"]
        part = flagged[0] if len(flagged) == 1 else ("mixed" if flagged else "unknown")
        block = int(m.group(1)) // block_size
        records.append(Record(str(files[name]), int(row["fractured"]), part, name, f"block{block:05d}"))
    if not records:
        raise DataError(f"{table}: no usable rows ({len(problems)} problems)")
    body_parts = sorted({*parts, *(r.body_part for r in records)})
    return DatasetSplit("fracatlas", "fracture", records, body_parts, str(root), problems)


def read_fracatlas_boxes(root: str | Path) -> dict[str, list[tuple[float, float, float, float]]]:
    """``boxes.csv``: image id -> fracture boxes (x, y, width, height) in image pixels."""
    path = Path(root) / "boxes.csv"
    if not path.is_file():
        raise DataError(f"{path}: FracAtlas boxes.csv not found")
    out: dict[str, list[tuple[float, float, float, float]]] = {}
    with path.open(newline="", encoding="utf-8") as f:
        for i, row in enumerate(csv.DictReader(f), 2):
            try:
                box = tuple(float(row[k]) for k in ("x", "y", "width", "height"))
            except (KeyError, TypeError, ValueError) as e:
                raise DataError(f"{path}:{i}: malformed box row ({e})") from e
            out.setdefault(row["image_id"], []).append(box)  # type: ignore[arg-type]
    return out


# --- generic CSV ---------------------------------------------------------------------------


def read_csv_dataset(path: str | Path, *, task: str = "fracture") -> DatasetSplit:
    """``path,label[,body_part][,study_id][,patient_id]`` with a header; paths relative to the CSV."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: dataset CSV not found")
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or not {"path", "label"} <= set(reader.fieldnames):
            raise DataError(f"{path}: header must include 'path' and 'label', got {reader.fieldnames}")
        records, problems = [], []
        for i, row in enumerate(reader, 2):
            lab = (row.get("label") or "").strip()
            if lab not in ("0", "1"):
                problems.append(f"{path}:{i}: label must be 0 or 1, got {lab!r}")
                continue
            p = Path(row["path"].strip())
            p = p if p.is_absolute() else path.parent / p
            if not p.is_file():
                problems.append(f"{p}: image listed in {path.name}:{i} is missing")
                continue
            study = (row.get("study_id") or "").strip() or str(p)
            records.append(
                Record(
                    str(p),
                    int(lab),
                    (row.get("body_part") or "").strip().lower() or "unknown",
                    study,
                    (row.get("patient_id") or "").strip() or study,
                )
            )
    if not records:
        raise DataError(f"{path}: no usable rows ({len(problems)} problems)")
    parts = sorted({r.body_part for r in records})
    return DatasetSplit(f"csv:{path.name}", task, records, parts, str(path), problems)


# --- splitting and dispatch ----------------------------------------------------------------


def group_split(records: list[Record], val_fraction: float, seed: int) -> tuple[list[Record], list[Record]]:
    """Split by patient (group) so that no patient appears in both parts."""
    if not 0 < val_fraction < 1:
        raise ConfigError(f"val_fraction must be in (0, 1), got {val_fraction}")
    groups = sorted({r.patient_id for r in records})
    random.Random(seed).shuffle(groups)
    n_val = max(1, round(len(groups) * val_fraction))
    val_groups = set(groups[:n_val])
    return [r for r in records if r.patient_id not in val_groups], [r for r in records if r.patient_id in val_groups]


def load_source(spec: str, split: str = "train") -> DatasetSplit:
    """``mura:PATH`` | ``folder:PATH`` | ``fracatlas:PATH`` | ``csv:PATH`` -> records.

    ``split`` matters for MURA only (its official train/valid); the others are one pool that the
    trainer splits by group.
    """
    kind, sep, path = spec.partition(":")
    if not sep or not path:
        raise ConfigError(
            f"data source must look like 'mura:PATH', 'folder:PATH', 'fracatlas:PATH' or 'csv:PATH', got {spec!r}"
        )
    readers = {"mura": lambda: read_mura(path, split), "folder": lambda: read_image_folder(path),
               "csv": lambda: read_csv_dataset(path), "fracatlas": lambda: read_fracatlas(path)}
    if kind not in readers:
        raise ConfigError(f"unknown data source kind {kind!r} in {spec!r} (mura, folder, fracatlas, csv)")
    out = readers[kind]()
    if is_phantom(path):
        out.name = f"phantom {out.name}"
    return out



def split_source(spec: str, val_fraction: float, seed: int,
                 max_train_images: int = 0) -> tuple[DatasetSplit, DatasetSplit, DatasetSplit | None]:
    """(train, internal validation, test) of a source, as ``mura-train`` splits it.

    The pool (MURA: its official train split) is split by patient; MURA's official valid split
    is the test set, the other sources have none. ``max_train_images`` caps the train part (smoke
    runs). Compress calls this with the run manifest's ``val_fraction`` and ``seed`` to find the
    images the network was trained on.
    """
    full = load_source(spec, "train")
    train, val = group_split(full.records, val_fraction, seed)
    if max_train_images:
        train = random.Random(seed).sample(train, min(max_train_images, len(train)))
    test = load_source(spec, "valid") if spec.startswith("mura:") else None
    train_split = full.subset(train, f"{full.name} (train part)")
    train_split.problems = full.problems  # reported once, with the training data
    return train_split, full.subset(val, f"{full.name} (internal val)"), test


#: FracAtlas file names: IMG0000000.jpg ... (about 90 of them sit in the Kaggle set)
FRACATLAS_PREFIX = "IMG0"


def external_records(spec: str, train_spec: str) -> list[Record]:
    """The external set's records, without the images a FracAtlas-trained model has already seen.

    The Kaggle external set contains about 90 FracAtlas images (``IMG000xxxx``, some rotated); scoring
    them would reward memory, so a model trained on FracAtlas is evaluated without them.
    """
    records = load_source(spec, "valid").records
    if train_spec.startswith("fracatlas:"):
        records = [r for r in records if not Path(r.path).name.startswith(FRACATLAS_PREFIX)]
    return records

#: What ``mura-synth`` leaves in every folder it writes (models/synth's marker).
PHANTOM_MARKER_GLOB = ".mura-synth-*.json"


def is_phantom(path: str | Path) -> bool:
    """Was this data set drawn by ``mura-synth``? Then every name, card and report must say
    *phantom*: a model trained on it says nothing about radiographs."""
    p = Path(path)
    for folder in (p, *list(p.parents)[:2]):
        if folder.is_dir() and next(folder.glob(PHANTOM_MARKER_GLOB), None) is not None:
            return True
    return False
