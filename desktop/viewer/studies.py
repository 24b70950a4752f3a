"""Qt-free work of the viewer: find studies under paths, decode them and run the model.

Plain functions that a worker (:class:`desktop.viewer.tasks.Task`) runs off the UI thread; kept free of
Qt so they can be tested, benchmarked and reused by other front ends as they are. How a study's
images are grouped into series is :mod:`desktop.viewer.series`.
"""

from __future__ import annotations

import dataclasses
import os
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydicom.multival import MultiValue

from desktop.screening.discovery import (
    MEDIA_STORAGE_DIRECTORY,
    Discovery,
    ImageRef,
    Study,
    discover,
    split_key,
)
from desktop.screening.render import plural, thumbnail_u8
from desktop.viewer.series import SeriesInfo, study_series
from models import dicom
from models.engine import (
    Engine,
    ImagePrediction,
    StudyPrediction,
    aggregate_study,
)
from models.errors import ExportError, ImageDecodeError
from models.imageio import LoadedImage, load_image, rewindow_source, sniff_kind
from models.reduction import Reduction, validated_reduction
from models.scope import Indications, header_refusal, image_refusal, prediction_refusal


class Cancelled(Exception):
    """Raised inside a task when its cancel flag is set; the task then ends without a result."""


@dataclass
class ViewImage:
    """One image of a study as the viewer holds it: decoded, with the reason it is not, or
    still pending (neither ``image`` nor ``error``: the worker has not decoded it yet)."""

    ref: ImageRef
    image: LoadedImage | None = None
    error: str = ""
    prediction: ImagePrediction | None = None
    heat_cache: np.ndarray | None = field(default=None, repr=False)
    thumb: np.ndarray | None = field(default=None, repr=False)  # small uint8, for the strip
    series: int = 0  # index into StudyOutcome.series
    # ``image`` is a reduced-resolution stand-in, replaced when the full decode arrives: a
    # display-only preview (preview_image), or the validated decode it was scored from
    preview: bool = False
    refused: str = ""  # why the model is not indicated for this image (models.scope): no score

    @property
    def pending(self) -> bool:
        """Not decoded yet (a placeholder of a study that is still being opened)."""
        return self.image is None and not self.error

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
    """A study after decoding and inference; ``prediction`` is None when nothing could be scored.

    ``images`` are in display order: grouped by series (:func:`study_series`). ``scored_by`` is
    the engine that was run on it (None: decoded only, e.g. while the model was still loading),
    so the window can tell an outcome that still needs scores from one that has none to get.
    """

    study: Study
    images: list[ViewImage]
    prediction: StudyPrediction | None = None
    model_error: str = ""
    series: list[SeriesInfo] = field(default_factory=list)
    scored_by: Engine | None = field(default=None, repr=False, compare=False)
    scope: str = ""  # set when no image is one the model is for: "not indicated", and why
    #: the long side its ``preview`` images were decoded at to be scored (None: full decodes
    #: only); a model whose card validated exactly that may score them (:func:`scoring_side`)
    reduced_side: Reduction | None = None

    @property
    def failures(self) -> list[ViewImage]:
        return [v for v in self.images if v.image is None]


@dataclass
class DecodedImage:
    """A partial result of :func:`analyse_study`: image ``index`` of study ``key`` is decoded
    (or failed), delivered before the rest so the viewer can show it at once."""

    key: str
    index: int
    view: ViewImage


ProgressFn = Callable[[int, int, str], None]
CancelledFn = Callable[[], bool]
PartialFn = Callable[[object], None]


def check_cancelled(cancelled: CancelledFn | None) -> None:
    if cancelled is not None and cancelled():
        raise Cancelled


#: Directory records that reference something other than an image (reports, waveforms...).
NON_IMAGE_RECORDS = frozenset({"SR DOCUMENT", "KEY OBJECT DOC", "PRESENTATION", "WAVEFORM",
                               "ENCAP DOC", "REGISTRATION", "FIDUCIAL", "SPECTROSCOPY",
                               "RAW DATA", "PRIVATE", "HL7 STRUC DOC"})

#: The thumbnail strip's pictures are at most this many pixels on their long side (the
#: screener's report has its own, larger, thumbnails).
STRIP_THUMB_SIZE = 96

#: The first image of a study is first shown from a reduced-resolution decode whose long side is
#: at least this (JPEG 2000 and baseline JPEG DICOM only; see :func:`preview_image`).
PREVIEW_SIDE = 1024


def is_dicomdir(path: Path) -> bool:
    """A DICOMDIR (Media Storage Directory) file, recognised by its SOP class, not its name."""
    if not path.is_file():
        return False
    try:
        meta = dicom.read_header(path).file_meta
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
        ds = dicom.read_dataset(path)
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


def common_root(paths: Sequence[str | Path]) -> str:
    """The :attr:`Discovery.root` of several opened paths: the one path opened, else the folder
    that holds them all, or "" when they share none (nothing opened, or two drives)."""
    if len(paths) == 1:
        return str(Path(paths[0]))
    try:
        return os.path.commonpath([os.path.abspath(p) for p in paths])
    except ValueError:
        return ""


def discover_paths(
    paths: Sequence[str | Path],
    *,
    progress: ProgressFn | None = None,
    cancelled: CancelledFn | None = None,
) -> Discovery:
    """Discover every path (folder or file) and merge studies that share a StudyInstanceUID.

    A study split over two exported folders is still one study: MURA's rule averages over all of
    its images, so splitting it would change the verdict. The result is the screener's
    :class:`Discovery`, rooted at what the paths share (:func:`common_root`).
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
            prefix, rel = split_key(st.key)
            key = st.key if st.is_dicom else f"{prefix}{p.name}" + ("" if rel == "." else f"/{rel}")
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
    return Discovery(common_root(paths), list(merged.values()), skipped, duplicates)


def preview_image(path: str | Path, min_side: int = PREVIEW_SIDE) -> LoadedImage | None:
    """A quick reduced-resolution decode of a DICOM file, for display only; None where there is
    none (not JPEG 2000 / baseline JPEG, too small to reduce, or any problem).

    Why: a 2k x 2k JPEG 2000 radiograph takes about a second to decode in full, but a few tens
    of milliseconds at a quarter of its size (:func:`models.dicom.render_reduced`, the wavelet
    levels the file already holds). The viewer shows that at once and replaces it with the full
    decode, which alone is scored: the preview never reaches the model, the report or an export.
    It carries the header and modality values, so window/level works on it too.
    """
    try:
        p = Path(path)
        if sniff_kind(p) != "dicom":
            return None
        ds = dicom.read_dataset(p)
        reduced = dicom.render_reduced(ds, int(min_side))
        if reduced is None:
            return None
        stored, modality, pixels = reduced
        if modality is None or not np.isfinite(pixels).all():
            return None
        return LoadedImage(pixels=np.ascontiguousarray(pixels, dtype=np.float32), kind="dicom",
                           path=p, info=dicom.dicom_info(ds),
                           modality_pixels=np.ascontiguousarray(modality, dtype=np.float32),
                           dataset=ds, stored=rewindow_source(stored))
    except Exception:  # noqa: BLE001 - no preview; the full decode reports any real problem
        return None


def scoring_side(engine: object) -> Reduction | None:
    """The reduced decode ``engine``'s card validated (side and codecs:
    :func:`models.reduction.validated_reduction`), or None; an engine without a bundle (a test's
    stand-in) has none."""
    card = getattr(getattr(engine, "bundle", None), "card", None)
    return validated_reduction(card) if isinstance(card, dict) else None


def decode_view(ref: ImageRef, series: int, score_side: Reduction | None) -> ViewImage:
    """One image decoded (in full, or reduced as ``score_side`` says where it applies), or its reason."""
    try:
        img = (load_image(ref.path) if score_side is None
               else load_image(ref.path, min_side=score_side.min_side, codecs=score_side.codecs))
        return ViewImage(ref, image=img, thumb=thumbnail_u8(img.pixels, STRIP_THUMB_SIZE), series=series,
                         preview=img.reduced)
    except ImageDecodeError as e:
        return ViewImage(ref, error=e.reason, series=series)
    except Exception as e:  # noqa: BLE001 - a decoder bug must not take the viewer down
        return ViewImage(ref, error=f"unexpected {type(e).__name__}: {e}", series=series)


def decode_study(
    study: Study,
    *,
    progress: ProgressFn | None = None,
    cancelled: CancelledFn | None = None,
    partial: PartialFn | None = None,
    steps: int | None = None,
    preview_side: int | None = None,
    score_side: Reduction | None = None,
) -> StudyOutcome:
    """Decode every image of ``study`` (grouped by series), reporting each one as it is done.

    ``partial`` first gets the study's layout (a :class:`StudyOutcome` whose images are all
    pending placeholders, with its series), then a :class:`DecodedImage` per image in display
    order, so the viewer can show the first image after one decode instead of after all of them
    (a 2k x 2k JPEG 2000 radiograph takes about a second). Objects handed to ``partial`` are
    never changed afterwards: the worker and the window may both hold them. A file that does
    not decode is kept with its reason, never raised.

    With ``preview_side`` (and ``partial``) the first image is reported twice: first from a
    reduced-resolution decode (:func:`preview_image`, ``ViewImage.preview`` set), then in full.
    The outcome holds only full decodes.

    With ``score_side`` (a model whose card validated the reduced decode is in use or loading)
    every image is decoded as that model may score it: the codecs it validated (JPEG 2000,
    baseline JPEG) at a long side >= ``score_side.min_side`` (``preview`` set, ``reduced_side``
    on the outcome), the rest in full.
    Scores then come within a fraction of a second; the full images follow on another task
    (:mod:`desktop.viewer.resolution`).
    """
    refs, series, idx = study_series(study)
    images = [ViewImage(r, series=s) for r, s in zip(refs, idx, strict=True)]
    if partial is not None:
        partial(StudyOutcome(study, list(images), series=series))
    n = len(images)
    total = steps if steps is not None else n
    for k, ref in enumerate(refs):
        check_cancelled(cancelled)
        if progress is not None:
            progress(k, total, f"Decoding {Path(ref.path).name} ({k + 1}/{n})…")
        if k == 0 and partial is not None and preview_side and score_side is None:
            quick = preview_image(ref.path, preview_side)
            if quick is not None:
                partial(DecodedImage(study.key, 0, ViewImage(
                    ref, image=quick, thumb=thumbnail_u8(quick.pixels, STRIP_THUMB_SIZE),
                    series=idx[0], preview=True)))
                check_cancelled(cancelled)
        view = decode_view(ref, idx[k], score_side)
        images[k] = view
        if partial is not None:
            partial(DecodedImage(study.key, k, view))
    reduced = score_side if any(v.preview for v in images) else None
    return StudyOutcome(study, images, series=series, reduced_side=reduced)


def unscored(outcome: StudyOutcome) -> StudyOutcome:
    """The outcome without any model result (same decoded pixels): what is left when the model
    changes, to be scored again without decoding again."""
    images = [dataclasses.replace(v, prediction=None, heat_cache=None, refused="") for v in outcome.images]
    return StudyOutcome(outcome.study, images, series=outcome.series, reduced_side=outcome.reduced_side)


def score_outcome(
    outcome: StudyOutcome,
    engine: Engine,
    *,
    progress: ProgressFn | None = None,
    cancelled: CancelledFn | None = None,
) -> StudyOutcome:
    """Run the model on a decoded study like the screener does; returns a new outcome.

    Inference runs once over all decoded images, the same call the screener makes, so the
    numbers shown match its worklist. The given outcome is not changed (the window may be
    showing it): the result holds new :class:`ViewImage` objects sharing the decoded pixels.
    A model failure is kept in ``model_error``; the images stay viewable.

    Reduced stand-ins (``preview``) are scored only by a model whose card validated the decode
    they came from (:func:`scoring_side`); for any other model they are decoded in full first.
    """
    result = unscored(outcome)
    result.scored_by = engine
    if result.reduced_side is not None and scoring_side(engine) != result.reduced_side:
        check_cancelled(cancelled)
        result.images = [decode_view(v.ref, v.series, None) if v.preview else v for v in result.images]
        result.reduced_side = None
    indications = Indications.from_card(getattr(getattr(engine, "bundle", None), "card", {}))
    for v in result.images:  # the screener's checks, in its order (models.scope)
        if v.image is not None:
            r = ((header_refusal(v.ref.header, indications) if v.ref.header is not None else None)
                 or image_refusal(v.image.pixels, v.image.colour))
            v.refused = r.reason if r is not None else ""
    ok = [v for v in result.images if v.image is not None and not v.refused]
    if ok:
        check_cancelled(cancelled)
        n = len(result.images)
        if progress is not None:
            progress(n, n + 1, f"Running the model on {plural(len(ok), 'image')}…")
        try:
            for v, pred in zip(ok, engine.predict([v.image.pixels for v in ok]), strict=True):
                r = prediction_refusal(pred.body_part_probs, indications)
                v.prediction, v.refused = (pred, "") if r is None else (None, r.reason)
        except Exception as e:  # noqa: BLE001 - shown in the panel; the images stay viewable
            result.model_error = f"{type(e).__name__}: {e}"
            return result
    preds = [v.prediction for v in result.images if v.prediction is not None]
    if preds:
        result.prediction = aggregate_study(preds, engine.thresholds)
    else:
        result.scope = next((v.refused for v in result.images if v.refused), "")
    return result


def analyse_study(
    study: Study,
    engine: Engine | None,
    *,
    progress: ProgressFn | None = None,
    cancelled: CancelledFn | None = None,
    partial: PartialFn | None = None,
    preview_side: int | None = None,
    score_side: Reduction | None = None,
) -> StudyOutcome:
    """Decode every image of ``study`` and, with an engine, score them like the screener does.

    Decoding reports each image through ``partial`` as soon as it is done
    (:func:`decode_study`); scoring is one batched call over all decoded images
    (:func:`score_outcome`). Without an engine the outcome is decoded only
    (``scored_by`` None).
    """
    outcome = decode_study(study, progress=progress, cancelled=cancelled, partial=partial,
                           steps=len(study.images) + (engine is not None),
                           preview_side=preview_side, score_side=score_side)
    if engine is None:
        return outcome
    return score_outcome(outcome, engine, progress=progress, cancelled=cancelled)


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
    from desktop.screening.dicom_export import write_study_dicom

    if outcome.prediction is None:
        raise ExportError(f"{outcome.study.key}: the study has no model result to export")
    sources = [(Path(v.ref.path), load_image(v.ref.path).pixels if v.preview else v.image.pixels,
                v.prediction) for v in outcome.images if v.image is not None and v.prediction is not None]
    check_cancelled(cancelled)
    if progress is not None:
        progress(0, 1, f"Writing DICOM SC/SR for {plural(len(sources), 'image')}…")
    paths = write_study_dicom(sources, outcome.prediction, card, Path(out_dir), word=word)
    return DicomExport(Path(out_dir), list(paths))


def load_engine(path: str | Path, device: str, *, progress: ProgressFn | None = None,
                cancelled: CancelledFn | None = None,
                factory: Callable[..., Engine] | None = None) -> Engine:
    """Load a bundle for ``device`` (run by a worker: compiling takes seconds on a slow PC).

    ``factory`` (default :class:`Engine`) is called as ``factory(path, device=device)``.
    Raises the engine's own typed errors (:class:`~models.errors.BundleError`,
    :class:`~models.errors.ConfigError` for a device OpenVINO cannot use).
    """
    if progress is not None:
        progress(0, 1, f"Loading model {Path(path).name} on {device}…")
    check_cancelled(cancelled)
    return (factory or Engine)(path, device=device)
