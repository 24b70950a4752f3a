"""Qt-free work of the viewer: find studies under paths, decode them and run the model.

Plain functions that a worker (:class:`desktop.tasks.Task`) runs off the UI thread; kept free of
Qt so they can be tested, benchmarked and reused by other front ends as they are.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
from pydicom.multival import MultiValue

from desktop.discovery import MEDIA_STORAGE_DIRECTORY, Discovery, ImageRef, Study, discover
from desktop.render import thumbnail_u8
from models.engine import Engine, ImagePrediction, StudyPrediction, aggregate_study
from models.errors import ExportError, ImageDecodeError
from models.imageio import LoadedImage, load_image


class Cancelled(Exception):
    """Raised inside a task when its cancel flag is set; the task then ends without a result."""


@dataclass
class ViewImage:
    """One image of a study as the viewer holds it: decoded or with the reason it is not."""

    ref: ImageRef
    image: LoadedImage | None = None
    error: str = ""
    prediction: ImagePrediction | None = None
    heat_cache: np.ndarray | None = field(default=None, repr=False)
    thumb: np.ndarray | None = field(default=None, repr=False)  # small uint8, for the strip

    @property
    def heat(self) -> np.ndarray | None:
        """The model's heatmap at image size, [0, 1]; None without a prediction.

        Computed on first use, not with the scores: upsampling the CAM to a 2k x 2k image costs
        about as much as the inference itself, and the overlay starts switched off. The viewer
        fills it in the background after showing the scores (:func:`compute_heatmaps`).
        """
        if self.heat_cache is None and self.prediction is not None and self.image is not None:
            self.heat_cache = self.prediction.heatmap(self.image.pixels.shape)
        return self.heat_cache

    @property
    def name(self) -> str:
        return Path(self.ref.path).name


@dataclass
class StudyOutcome:
    """A study after decoding and inference; ``prediction`` is None when nothing could be scored."""

    study: Study
    images: list[ViewImage]
    prediction: StudyPrediction | None = None
    model_error: str = ""

    @property
    def failures(self) -> list[ViewImage]:
        return [v for v in self.images if v.image is None]


@dataclass
class DiscoveryResult:
    """Studies of several command-line paths merged, plus what could not be used."""

    studies: list[Study]
    skipped: list[tuple[str, str]]
    duplicates: list[tuple[str, str]]

    @property
    def n_images(self) -> int:
        return sum(len(s.images) for s in self.studies)


ProgressFn = Callable[[int, int, str], None]
CancelledFn = Callable[[], bool]


def check_cancelled(cancelled: CancelledFn | None) -> None:
    if cancelled is not None and cancelled():
        raise Cancelled


#: Directory records that reference something other than an image (reports, waveforms...).
NON_IMAGE_RECORDS = frozenset({"SR DOCUMENT", "KEY OBJECT DOC", "PRESENTATION", "WAVEFORM",
                               "ENCAP DOC", "REGISTRATION", "FIDUCIAL", "SPECTROSCOPY",
                               "RAW DATA", "PRIVATE", "HL7 STRUC DOC"})

#: Thumbnails are at most this many pixels on their long side.
THUMB_SIZE = 96


def is_dicomdir(path: Path) -> bool:
    """A DICOMDIR (Media Storage Directory) file, recognised by its SOP class, not its name."""
    if not path.is_file():
        return False
    try:
        meta = pydicom.dcmread(path, stop_before_pixels=True, force=True).file_meta
    except Exception:  # noqa: BLE001 - not readable as DICOM: not a DICOMDIR
        return False
    return str(meta.get("MediaStorageSOPClassUID", "")) == MEDIA_STORAGE_DIRECTORY


def dicomdir_files(path: Path) -> tuple[list[Path], list[tuple[str, str]]]:
    """The image files a DICOMDIR references (its directory records), and those it lacks.

    A DICOMDIR on a CD lists every image of the disc under its patient/study/series records;
    opening it must open those images, grouped by study, whatever the files are called
    (``IM000001`` without an extension is the norm). The records' Referenced File IDs are read
    directly rather than through pydicom's ``FileSet``, which silently drops records whose file
    is missing: a reader must be told that a CD is incomplete. Never fatal.
    """
    try:
        ds = pydicom.dcmread(path, force=True)
        records = list(ds.DirectoryRecordSequence)
    except Exception as e:  # noqa: BLE001 - any pydicom failure: the DICOMDIR is unusable
        return [], [(str(path), f"unreadable DICOMDIR ({type(e).__name__}: {e})")]
    found: list[Path] = []
    missing: list[tuple[str, str]] = []
    for rec in records:
        ref = rec.get("ReferencedFileID")
        if ref is None or str(rec.get("DirectoryRecordType", "")).upper() in NON_IMAGE_RECORDS:
            continue
        parts = [str(x) for x in (ref if isinstance(ref, (list, tuple, MultiValue)) else [ref])]
        p = path.parent.joinpath(*parts)
        if not p.is_file():
            # CD file systems may have changed the case of the names
            alt = path.parent.joinpath(*(x.lower() for x in parts))
            p = alt if alt.is_file() else p
        if p.is_file():
            found.append(p)
        else:
            missing.append((str(p), f"referenced by {path.name} but missing"))
    if not found and not missing:
        missing.append((str(path), "lists no images (an empty or truncated DICOMDIR)"))
    return found, missing


def _expand(p: Path) -> tuple[list[Path], list[tuple[str, str]]]:
    """What to discover for one opened path: a DICOMDIR stands for the files it references."""
    if is_dicomdir(p):
        return dicomdir_files(p)
    return [p], []


def discover_paths(
    paths: Sequence[str | Path],
    *,
    progress: ProgressFn | None = None,
    cancelled: CancelledFn | None = None,
) -> DiscoveryResult:
    """Discover every path (folder or file) and merge studies that share a StudyInstanceUID.

    A study split over two exported folders is still one study: MURA's rule averages over all of
    its images, so splitting it would change the verdict.
    """
    merged: OrderedDict[str, Study] = OrderedDict()
    skipped: list[tuple[str, str]] = []
    duplicates: list[tuple[str, str]] = []
    for i, raw in enumerate(paths):
        check_cancelled(cancelled)
        p = Path(raw)
        if progress is not None:
            progress(i, len(paths), f"Looking for images in {p.name or p}…")
        if not p.exists():
            skipped.append((str(p), "no such file or folder"))
            continue
        targets, missing = _expand(p)
        skipped += missing
        studies: list[Study] = []
        for t in targets:
            check_cancelled(cancelled)
            disc: Discovery = discover(t)
            skipped += disc.skipped
            duplicates += disc.duplicates
            studies += disc.studies
        for st in studies:
            rel = st.key[len("folder:"):]
            key = st.key if st.is_dicom else f"folder:{p.name}" + ("" if rel == "." else f"/{rel}")
            if key in merged:
                # the same file dropped twice, or a copy in another folder: one image, once
                first = {r.sop_uid: r.path for r in merged[key].images if r.sop_uid}
                dup = [r for r in st.images if r.sop_uid in first]
                duplicates += [(r.path, first[r.sop_uid]) for r in dup]
                merged[key].images += [r for r in st.images if r.sop_uid not in first]
                merged[key].images.sort(key=lambda r: (r.instance, r.path))
            else:
                st.key = key
                merged[key] = st
    return DiscoveryResult(list(merged.values()), skipped, duplicates)


def analyse_study(
    study: Study,
    engine: Engine | None,
    *,
    progress: ProgressFn | None = None,
    cancelled: CancelledFn | None = None,
) -> StudyOutcome:
    """Decode every image of ``study`` and, with an engine, score them like the screener does.

    A file that does not decode is kept with its reason (the reader must see that the verdict
    rests on fewer images), never raised. Inference runs once over all decoded images, the same
    call the screener makes, so the numbers shown match its worklist.
    """
    images: list[ViewImage] = []
    n = len(study.images)
    for k, ref in enumerate(study.images):
        check_cancelled(cancelled)
        if progress is not None:
            progress(k, n + 1, f"Decoding {Path(ref.path).name} ({k + 1}/{n})…")
        try:
            img = load_image(ref.path)
            images.append(ViewImage(ref, image=img, thumb=thumbnail_u8(img.pixels, THUMB_SIZE)))
        except ImageDecodeError as e:
            images.append(ViewImage(ref, error=e.reason))
        except Exception as e:  # noqa: BLE001 - a decoder bug must not take the viewer down
            images.append(ViewImage(ref, error=f"unexpected {type(e).__name__}: {e}"))
    outcome = StudyOutcome(study, images)
    ok = [v for v in images if v.image is not None]
    if engine is None or not ok:
        return outcome
    check_cancelled(cancelled)
    if progress is not None:
        progress(n, n + 1, f"Running the model on {len(ok)} image(s)…")
    try:
        preds = engine.predict([v.image.pixels for v in ok])
        outcome.prediction = aggregate_study(preds, engine.thresholds)
        for v, pred in zip(ok, preds, strict=True):
            v.prediction = pred
    except Exception as e:  # noqa: BLE001 - shown in the panel; the images stay viewable
        outcome.model_error = f"{type(e).__name__}: {e}"
    return outcome


def compute_heatmaps(outcome: StudyOutcome, *, progress: ProgressFn | None = None,
                     cancelled: CancelledFn | None = None) -> str:
    """Fill every image's heatmap (run by the worker after the scores are shown); returns the
    study key. Cancelling leaves the rest to be computed on first use."""
    for v in outcome.images:
        check_cancelled(cancelled)
        _ = v.heat
    return outcome.study.key


@dataclass
class DicomExport:
    """What :func:`export_dicom_job` wrote: Secondary Captures, then the study's SR."""

    out_dir: Path
    paths: list[Path]


def export_dicom_job(outcome: StudyOutcome, card: dict, out_dir: str | Path, word: str, *,
                     progress: ProgressFn | None = None,
                     cancelled: CancelledFn | None = None) -> DicomExport:
    """Write the study's DICOM Secondary Captures and Structured Report (worker side).

    Only decoded, scored images are exported; the sources are only read. Raises
    :class:`~models.errors.ExportError` (e.g. no DICOM source) with the reason.
    """
    from desktop.dicom_export import write_study_dicom

    if outcome.prediction is None:
        raise ExportError(f"{outcome.study.key}: the study has no model result to export")
    sources = [(Path(v.ref.path), v.image.pixels, v.prediction) for v in outcome.images
               if v.image is not None and v.prediction is not None]
    check_cancelled(cancelled)
    if progress is not None:
        progress(0, 1, f"Writing DICOM SC/SR for {len(sources)} image(s)…")
    paths = write_study_dicom(sources, outcome.prediction, card, Path(out_dir), word=word)
    return DicomExport(Path(out_dir), list(paths))


def load_engine(path: str | Path, device: str, *, progress: ProgressFn | None = None,
                cancelled: CancelledFn | None = None) -> Engine:
    """Load a bundle for ``device`` (run by a worker: compiling takes seconds on a slow PC).

    Raises the engine's own typed errors (:class:`~models.errors.BundleError`,
    :class:`~models.errors.ConfigError` for a device OpenVINO cannot use).
    """
    if progress is not None:
        progress(0, 1, f"Loading model {Path(path).name} on {device}…")
    check_cancelled(cancelled)
    return Engine(path, device=device)
