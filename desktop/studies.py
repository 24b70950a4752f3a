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

from desktop.discovery import Discovery, ImageRef, Study, discover
from models.engine import Engine, ImagePrediction, StudyPrediction, aggregate_study
from models.errors import ImageDecodeError
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
    heat: np.ndarray | None = field(default=None, repr=False)

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
        disc: Discovery = discover(p)
        skipped += disc.skipped
        duplicates += disc.duplicates
        for st in disc.studies:
            rel = st.key[len("folder:"):]
            key = st.key if st.is_dicom else f"folder:{p.name}" + ("" if rel == "." else f"/{rel}")
            if key in merged:
                merged[key].images += st.images
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
            images.append(ViewImage(ref, image=load_image(ref.path)))
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
            v.heat = pred.heatmap(v.image.pixels.shape)
    except Exception as e:  # noqa: BLE001 - shown in the panel; the images stay viewable
        outcome.model_error = f"{type(e).__name__}: {e}"
    return outcome
