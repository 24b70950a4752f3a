"""Phantom DICOM studies in the encodings a clinic PACS export really contains.

Transfer syntaxes, photometric interpretations, bit depths and rescales rotate through fixed
cycles so a handful of studies exercises every decoder path of the screener and the viewer.
pydicom is imported lazily: the MURA/external writers do not need it.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict

import numpy as np

from models.labels import MURA_BODY_PARTS
from models.synth.anatomy import _anatomy
from models.synth.files import (
    _atomic_write,
    _check_count,
    _check_jobs,
    _claim,
    _csv_bytes,
    _parallel_map,
    _shape_for,
)
from models.synth.render import _MURA_STYLE, _render

# ---- DICOM ---------------------------------------------------------------------------------


class DicomStudyInfo(TypedDict):
    """One written study, as :func:`write_dicom_studies` returns it."""

    study_uid: str
    label: int
    body_part: str
    folder: str
    modality: str
    images: list[dict[str, object]]


_CR_STORAGE = "1.2.840.10008.5.1.4.1.1.1"
_DX_PRESENTATION_STORAGE = "1.2.840.10008.5.1.4.1.1.1.1"
_TRANSFER_SYNTAXES = (
    "1.2.840.10008.1.2.1",  # Explicit VR Little Endian
    "1.2.840.10008.1.2",  # Implicit VR Little Endian
    "1.2.840.10008.1.2.5",  # RLE Lossless
    "1.2.840.10008.1.2.4.80",  # JPEG-LS Lossless
    "1.2.840.10008.1.2.4.90",  # JPEG 2000 Lossless
)
_BITS = ((8, 8), (16, 10), (16, 12), (16, 16))  # (BitsAllocated, BitsStored)
_RESCALE: tuple[tuple[float, float] | None, ...] = (
    None,
    (1.0, 0.0),
    (1.0, -1024.0),
    None,
    (0.5, 0.0),
    (2.0, -100.0),
    None,
)
_PHOTOMETRIC = ("MONOCHROME1", "MONOCHROME2", "MONOCHROME2")


@dataclass(frozen=True)
class _DicomImage:
    """Encoding choices of one file, drawn from cycles so a few studies cover every case."""

    transfer_syntax: str
    photometric: str
    bits_allocated: int
    bits_stored: int
    rescale: tuple[float, float] | None


def _dicom_encoding(i: int, offsets: Sequence[int]) -> _DicomImage:
    ba, bs = _BITS[(i + offsets[2]) % len(_BITS)]
    return _DicomImage(
        _TRANSFER_SYNTAXES[(i + offsets[0]) % len(_TRANSFER_SYNTAXES)],
        _PHOTOMETRIC[(i + offsets[1]) % len(_PHOTOMETRIC)],
        ba,
        bs,
        _RESCALE[(i + offsets[3]) % len(_RESCALE)],
    )


def _stored_pixels(img: np.ndarray, enc: _DicomImage, rng: np.random.Generator) -> np.ndarray:
    """Quantise to BitsStored, leaving detector-like margins; MONOCHROME1 stores bone dark."""
    top = (1 << enc.bits_stored) - 1
    lo, hi = rng.uniform(0.0, 0.05) * top, rng.uniform(0.85, 1.0) * top
    raw = np.rint(lo + img * (hi - lo))
    if enc.photometric == "MONOCHROME1":
        raw = top - raw
    return raw.astype(np.uint8 if enc.bits_allocated == 8 else np.uint16)


@dataclass(frozen=True)
class _DicomStudy:
    """Study-level attributes shared by every file of one DICOM study."""

    index: int
    folder: str
    uid: str
    label: int
    part: str
    modality: str
    n_images: int
    date: str
    laterality: str
    spacing: str


def _uid(seed: int, *parts: object) -> str:
    """A valid UID that is a pure function of the seed: reruns must be byte-identical."""
    from pydicom.uid import generate_uid

    return str(generate_uid(entropy_srcs=[str(seed), *(str(p) for p in parts)]))


def _dicom_header(st: _DicomStudy, k: int, sop_uid: str, series_uid: str):
    """Patient/study/series/instance modules and file meta for image ``k`` of a study."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, UID, ExplicitVRLittleEndian

    sop_class = _CR_STORAGE if st.modality == "CR" else _DX_PRESENTATION_STORAGE
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = UID(sop_class)
    ds.file_meta.MediaStorageSOPInstanceUID = UID(sop_uid)
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds.file_meta.ImplementationVersionName = "MURA_SYNTH_1"
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, sop_uid
    ds.StudyInstanceUID, ds.SeriesInstanceUID = st.uid, series_uid
    ds.PatientName = ds.PatientID = f"PHANTOM^{st.index}"
    ds.PatientBirthDate = ds.PatientSex = ds.ReferringPhysicianName = ""
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = st.date
    ds.StudyTime = "101500"
    ds.AccessionNumber = f"SYN{st.index:06d}"
    ds.StudyID = str(st.index)
    ds.StudyDescription = f"XR {st.part.upper()} {st.n_images} VIEW{'S' * (st.n_images > 1)}"
    ds.SeriesDescription = f"{st.part.upper()} VIEW {k}"
    ds.Modality = st.modality
    ds.Manufacturer = "mura-synth phantom"
    ds.InstitutionName = "SYNTHETIC"
    ds.SeriesNumber = k if st.modality == "CR" else 1
    ds.InstanceNumber = k
    ds.BodyPartExamined = st.part.upper()
    ds.ViewPosition = ("AP", "LAT", "PA")[(k - 1) % 3]
    ds.ImageLaterality = ds.Laterality = st.laterality
    ds.PatientOrientation = ["A", "F"] if k % 2 else ["P", "F"]
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.BurnedInAnnotation = "NO"
    ds.PixelSpacing = ds.ImagerPixelSpacing = [st.spacing, st.spacing]
    if st.modality == "DX":
        ds.PresentationIntentType = "FOR PRESENTATION"
    return ds


def _dicom_pixels(ds, pixels: np.ndarray, enc: _DicomImage) -> None:
    """Image pixel module, modality and VOI LUT attributes, then the transfer syntax."""
    ds.PresentationLUTShape = "INVERSE" if enc.photometric == "MONOCHROME1" else "IDENTITY"
    ds.set_pixel_data(pixels, enc.photometric, enc.bits_stored, generate_instance_uid=False)
    slope, intercept = enc.rescale or (1.0, 0.0)
    if enc.rescale is not None:
        ds.RescaleSlope, ds.RescaleIntercept = f"{slope:g}", f"{intercept:g}"
        ds.RescaleType = "US"
    lo, hi = float(pixels.min()) * slope + intercept, float(pixels.max()) * slope + intercept
    # PS3.3 C.11.2.1.2: this centre/width maps lo to black and hi to white exactly
    ds.WindowCenter = f"{(lo + hi) / 2 + 0.5:.2f}"
    ds.WindowWidth = f"{hi - lo + 1.0:.2f}"
    if enc.transfer_syntax in _TRANSFER_SYNTAXES[2:]:
        ds.compress(enc.transfer_syntax, pixels, generate_instance_uid=False)
    else:
        ds.file_meta.TransferSyntaxUID = enc.transfer_syntax


def _write_dicom_study(task: tuple) -> list[dict[str, object]]:
    """Write one study's files; CR gets a series per view, DX one series for the study."""
    root, seed, st, anatomy, encodings = task
    images: list[dict[str, object]] = []
    for k, enc in enumerate(encodings, start=1):
        irng = np.random.default_rng([seed, 3, 2, st.index, k])
        # pydicom's RLE encoder is pure Python (~1 s per megapixel): keep those frames small
        sizes = (512, 600) if enc.transfer_syntax == _TRANSFER_SYNTAXES[2] else (512, 1024)
        shape = _shape_for(irng, st.part, sizes)
        pixels = _stored_pixels(_render(irng, anatomy, shape, _MURA_STYLE), enc, irng)
        sop_uid = _uid(seed, "sop", st.index, k)
        series = (st.index, k) if st.modality == "CR" else (st.index,)
        ds = _dicom_header(st, k, sop_uid, _uid(seed, "series", *series))
        _dicom_pixels(ds, pixels, enc)
        name = f"IM{k:05d}" if st.index % 3 == 0 else f"image{k}.dcm"
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True)
        _atomic_write(Path(root) / st.folder / name, buf.getvalue())
        images.append(
            {
                "file": f"{st.folder}/{name}",
                "sop_instance_uid": sop_uid,
                "transfer_syntax": enc.transfer_syntax,
                "photometric": enc.photometric,
                "bits_allocated": enc.bits_allocated,
                "bits_stored": enc.bits_stored,
                "rescale": None if enc.rescale is None else list(enc.rescale),
                "shape": list(shape),
            }
        )
    return images


def write_dicom_studies(
    root: str | os.PathLike[str], *, seed: int, n_studies: int, jobs: int | None = None
) -> list[DicomStudyInfo]:
    """Write phantom DICOM studies the way a PACS export delivers them, plus ``labels.csv``.

    Encodings (transfer syntax, photometric, bit depth, rescale) rotate through fixed cycles of
    coprime lengths, so even a handful of studies covers every decoder path the screening app
    must handle. Every third study names its files without the ``.dcm`` extension, as DICOMDIR
    exports do. Returns one dict per study: ``study_uid``, ``label`` (1 = fractured),
    ``body_part``, ``folder``, ``modality`` and ``images`` (per-file encoding details).
    ``jobs`` worker processes (default: CPU count) write studies in parallel.
    """
    n_studies = _check_count("n_studies", n_studies, 1)
    seed, jobs = _check_count("seed", seed, 0), _check_jobs(jobs)
    root = Path(root)
    folders = [f"study_{i:04d}" for i in range(1, n_studies + 1)]
    _claim(root, "dicom", [*folders, "labels.csv"], {"seed": int(seed), "n_studies": n_studies})
    rng = np.random.default_rng([seed, 3, 0])
    offsets = [int(x) for x in rng.integers(0, 7, size=4)]
    parts = [MURA_BODY_PARTS[int(i)] for i in rng.permutation(len(MURA_BODY_PARTS))]
    labels = (np.arange(n_studies) % 2 == 1).tolist()
    rng.shuffle(labels)
    tasks = []
    image_index = 0
    for i, folder in enumerate(folders, start=1):
        srng = np.random.default_rng([seed, 3, 1, i])
        st = _DicomStudy(
            index=i,
            folder=folder,
            uid=_uid(seed, "study", i),
            label=int(labels[i - 1]),
            part=parts[(i - 1) % len(parts)],
            modality=("CR", "DX")[i % 2],
            n_images=int(srng.integers(1, 4)),
            date=f"2024{int(srng.integers(1, 13)):02d}{int(srng.integers(1, 29)):02d}",
            laterality="L" if srng.random() < 0.5 else "R",
            spacing=f"{srng.uniform(0.1, 0.2):.3f}",
        )
        anatomy = _anatomy(srng, st.part, bool(st.label))
        encodings = [_dicom_encoding(image_index + k, offsets) for k in range(st.n_images)]
        image_index += st.n_images
        tasks.append((str(root), seed, st, anatomy, encodings))
    studies: list[DicomStudyInfo] = [
        {
            "study_uid": st.uid,
            "label": st.label,
            "body_part": st.part,
            "folder": st.folder,
            "modality": st.modality,
            "images": images,
        }
        for (_, _, st, _, _), images in zip(
            tasks, _parallel_map(_write_dicom_study, tasks, jobs), strict=True
        )
    ]
    rows = [[s["study_uid"], s["label"], s["body_part"], s["folder"]] for s in studies]
    header = ("study_uid", "label", "body_part", "folder")
    _atomic_write(root / "labels.csv", _csv_bytes(rows, header))
    return studies
