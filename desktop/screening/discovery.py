"""Find images under a folder and group them into studies (Qt-free, torch-free).

DICOM is recognised by content (with or without ``.dcm``) and grouped by StudyInstanceUID. Plain
images (PNG/JPEG/...) carry no study identity, so each is its own study (``file:<path>``) unless
their folders follow MURA's ``patientNNNNN/studyN_*`` layout or ``group_by="folder"`` is asked for
(``folder:<folder>``): a folder of 758 unrelated images must not become one study with one
verdict. Duplicates (same SOP Instance UID, or for plain images the same bytes) are reported once;
a DICOMDIR and our own result objects (SC/SR written by mura-fracture) are recognised and skipped,
not failed or scored again. System files are ignored silently; files that are neither are
reported, never fatal.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

from models.dicom import read_header
from models.errors import MuraError
from models.imageio import is_ignored_file, load_image, sniff_kind
from models.scope import OWN_MANUFACTURER, HeaderFields

#: How plain images become studies: "auto" (MURA layout by folder, else one study per file) or
#: "folder" (every folder is a study).
GROUPINGS = ("auto", "folder")
PLAIN_PREFIXES = ("folder:", "file:")
_MURA_STUDY_DIR = re.compile(r"^study\d+(_(positive|negative))?$", re.IGNORECASE)
_MURA_PATIENT_DIR = re.compile(r"^patient\d+$", re.IGNORECASE)


@dataclass(frozen=True)
class SeriesFields:
    """The series an image belongs to, as its header says (read once, during discovery)."""

    uid: str = ""
    number: int | None = None
    description: str = ""
    modality: str = ""


@dataclass
class ImageRef:
    """One image file found by discovery.

    ``series`` is filled from the header discovery already reads, so opening the study does not
    read every header a second time to group its series; None means "not read" (plain images,
    refs made elsewhere), and :func:`desktop.viewer.series.study_series` then reads it itself.
    """

    path: str
    kind: str  # "dicom", "png", "jpeg", ...
    sop_uid: str = ""
    instance: int = 0
    series: SeriesFields | None = None
    header: HeaderFields | None = None  # what the scope check reads (models.scope); None: plain image


def series_fields(ds) -> SeriesFields:
    """(0020,000E) Series Instance UID, (0020,0011) Series Number, (0008,103E) Series
    Description and (0008,0060) Modality of a header; odd values become empty/None."""
    try:
        number: int | None = int(ds.get("SeriesNumber"))
    except (TypeError, ValueError):
        number = None
    return SeriesFields(str(ds.get("SeriesInstanceUID", "") or "").strip(), number,
                        str(ds.get("SeriesDescription", "") or "").strip(),
                        str(ds.get("Modality", "") or "").strip())


@dataclass
class Study:
    """A study as discovery found it. The identifiers let a clinic find it in its PACS; they are
    patient data: worklists and reports show them (hashed with ``--anonymize``), logs never do,
    and they are left out of ``repr()`` so that an accidental log line does not leak them."""

    key: str  # StudyInstanceUID, or "folder:<relative folder>" / "file:<relative path>" for plain images
    images: list[ImageRef] = field(default_factory=list)
    description: str = ""
    body_part_tag: str = ""
    modality: str = ""
    patient_id: str = field(default="", repr=False)
    patient_name: str = field(default="", repr=False)
    accession: str = field(default="", repr=False)
    study_date: str = field(default="", repr=False)  # YYYY-MM-DD, or as the header has it
    identified: bool = field(default=False, repr=False)  # the fields above were read from a header

    @property
    def is_dicom(self) -> bool:
        return not self.key.startswith(PLAIN_PREFIXES)


@dataclass
class Discovery:
    root: str
    studies: list[Study]
    skipped: list[tuple[str, str]]  # (path, reason): unreadable or not an image at all
    duplicates: list[tuple[str, str]]  # (path, path of the first copy)

    @property
    def n_images(self) -> int:
        return sum(len(s.images) for s in self.studies)


MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"  # the SOP class of a DICOMDIR


def _content_hash(path: Path) -> str:
    h = hashlib.blake2b(digest_size=16)
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def _dicom_header(path: Path):
    try:
        return read_header(path)
    except Exception:  # noqa: BLE001 - unreadable headers are decided at decode time
        return None


def iter_files(root: Path):
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            yield Path(dirpath) / name


def plain_key(path: Path, root: Path, group_by: str = "auto") -> str:
    """The study key of a plain image: its folder in a MURA layout or with ``group_by="folder"``,
    else the file itself."""
    parent = path.parent
    if group_by == "folder" or (_MURA_STUDY_DIR.match(parent.name) and _MURA_PATIENT_DIR.match(parent.parent.name)):
        return f"folder:{_rel(parent, root)}"
    return f"file:{_rel(path, root)}"


def split_key(key: str) -> tuple[str, str]:
    """("folder:" | "file:" | "", rest): the prefix of a plain-image study key and what follows."""
    prefix = next((p for p in PLAIN_PREFIXES if key.startswith(p)), "")
    return prefix, key[len(prefix):]


def own_output(ds) -> bool:
    """A result object we wrote ourselves (Manufacturer "mura-fracture"): never screened again."""
    try:
        return str(ds.get("Manufacturer", "") or "").strip() == OWN_MANUFACTURER
    except Exception:  # noqa: BLE001 - an unreadable value is not our marker
        return False


def discover(root: str | Path, group_by: str = "auto") -> Discovery:
    """Every study under ``root`` (a folder or one file); see the module docstring."""
    if group_by not in GROUPINGS:
        raise MuraError(f"unknown grouping {group_by!r}: choose one of {GROUPINGS}")
    root = Path(root)
    studies: OrderedDict[str, Study] = OrderedDict()
    skipped: list[tuple[str, str]] = []
    duplicates: list[tuple[str, str]] = []
    seen_sop: dict[str, tuple[ImageRef, str]] = {}  # SOP Instance UID -> (kept copy, its study key)
    seen_content: dict[str, str] = {}
    files = [root] if root.is_file() else list(iter_files(root))
    for p in files:
        if is_ignored_file(p):
            continue
        try:
            kind = sniff_kind(p)
        except OSError as e:
            skipped.append((str(p), f"cannot read file ({e})"))
            continue
        if kind is None:
            skipped.append((str(p), "not an image (neither DICOM nor a known image format)"))
            continue
        ref = ImageRef(str(p), kind)
        if kind == "dicom":
            ds = _dicom_header(p)
            meta = getattr(ds, "file_meta", None) if ds is not None else None
            if meta is not None and str(meta.get("MediaStorageSOPClassUID", "")) == MEDIA_STORAGE_DIRECTORY:
                skipped.append((str(p), "DICOMDIR index (its images are found by walking the folder)"))
                continue
            if ds is not None and own_output(ds):
                skipped.append((str(p), "a result object written by mura-fracture (not screened again)"))
                continue
            uid = str(getattr(ds, "StudyInstanceUID", "") or "") if ds is not None else ""
            ref.sop_uid = str(getattr(ds, "SOPInstanceUID", "") or "") if ds is not None else ""
            try:
                ref.instance = int(getattr(ds, "InstanceNumber", 0) or 0) if ds is not None else 0
            except (TypeError, ValueError):
                ref.instance = 0
            if ds is not None:
                try:
                    ref.series = series_fields(ds)
                except Exception:  # noqa: BLE001 - odd series tags: study_series reads again
                    ref.series = None
                ref.header = HeaderFields.from_dataset(ds)
            key = uid or f"folder:{_rel(p.parent, root)}"
            if ref.sop_uid and ref.sop_uid in seen_sop:
                first, first_key = seen_sop[ref.sop_uid]
                if _decodes(first.path) or not _decodes(ref.path):
                    duplicates.append((str(p), first.path))
                    continue
                studies[first_key].images.remove(first)  # a broken copy must not shadow a good one
                duplicates.append((first.path, str(p)))
            if ref.sop_uid:
                seen_sop[ref.sop_uid] = (ref, key)
            st = studies.setdefault(key, Study(key))
            if ds is not None and not st.identified:
                _identify(st, ds)
        else:
            digest = _content_hash(p)  # plain images have no UID: the same bytes are the same image
            if digest in seen_content:
                duplicates.append((str(p), seen_content[digest]))
                continue
            seen_content[digest] = str(p)
            key = plain_key(p, root, group_by)
            st = studies.setdefault(key, Study(key))
        st.images.append(ref)
    for st in studies.values():
        st.images.sort(key=lambda r: (r.instance, r.path))
    return Discovery(str(root), [st for st in studies.values() if st.images], skipped, duplicates)


def _text(ds, keyword: str) -> str:
    try:
        return str(ds.get(keyword, "") or "").strip()
    except Exception:  # noqa: BLE001 - a value pydicom cannot convert is an absent one
        return ""


def _identify(st: Study, ds) -> None:
    """(0008,1030) description, (0018,0015) body part, (0008,0060) modality, (0010,0020)
    Patient ID, (0010,0010) Patient's Name, (0008,0050) Accession Number, (0008,0020) Study Date."""
    st.description, st.body_part_tag = _text(ds, "StudyDescription"), _text(ds, "BodyPartExamined")
    st.modality, st.patient_id = _text(ds, "Modality"), _text(ds, "PatientID")
    st.patient_name = _text(ds, "PatientName").replace("^", " ").strip()
    st.accession, date = _text(ds, "AccessionNumber"), _text(ds, "StudyDate")
    st.study_date = f"{date[:4]}-{date[4:6]}-{date[6:8]}" if len(date) == 8 and date.isdigit() else date
    st.identified = True


def _decodes(path: str) -> bool:
    """Does the file decode? Asked only when two files share a SOP Instance UID (a resend), so
    that a truncated or corrupt copy never hides the complete one."""
    try:
        load_image(path)
    except (MuraError, OSError, ValueError, MemoryError):
        return False
    return True


def _rel(p: Path, root: Path) -> str:
    try:
        rel = p.relative_to(root if root.is_dir() else root.parent)
    except ValueError:
        return str(p)
    return str(rel) if str(rel) != "." else "."
