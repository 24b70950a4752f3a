"""How the viewer groups a study's images into series for the thumbnail strip (Qt-free).

A study of several series (e.g. two views taken as separate series) is paged through one series
after the other, and the strip captions each group; that order is decided here, apart from
decoding (:mod:`desktop.viewer.studies`), because it needs only the headers discovery read.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from dataclasses import dataclass

from desktop.screening.discovery import ImageRef, SeriesFields, Study, series_fields
from models.dicom import read_header


@dataclass(frozen=True)
class SeriesInfo(SeriesFields):
    """One series of a study as the thumbnail strip groups it: the series discovery read
    (:class:`SeriesFields`, one series vocabulary) and how many of the study's images it holds.

    ``uid`` is the SeriesInstanceUID ("" for plain images, which a folder holds as one series,
    or for DICOM files whose header cannot be read).
    """

    count: int = 0

    @property
    def label(self) -> str:
        """What the strip writes over the series: number, description, modality, image count."""
        head = f"Series {self.number}" if self.number is not None else (
            "Series" if self.uid else "Images")
        parts = [head] + [x for x in (self.description, self.modality) if x]
        parts.append(f"{self.count} image{'s' * (self.count != 1)}")
        return " · ".join(parts)


#: Header elements :func:`study_series` reads (never the pixel data).
_SERIES_TAGS = ["SeriesInstanceUID", "SeriesNumber", "SeriesDescription", "Modality"]


def _series_header(ref: ImageRef) -> SeriesFields:
    if ref.series is not None:
        return ref.series
    if ref.kind != "dicom":
        return SeriesFields()
    try:
        ds = read_header(ref.path, specific_tags=_SERIES_TAGS)
        return series_fields(ds)
    except Exception:  # noqa: BLE001 - an unreadable header fails at decode time, with a reason
        return SeriesFields()


def study_series(study: Study) -> tuple[list[ImageRef], list[SeriesInfo], list[int]]:
    """The study's images grouped by series: (refs in display order, series, series index of
    each ref).

    Series are ordered by SeriesNumber (then by first appearance), images within a series keep
    the study's order (InstanceNumber, path), so paging through the study walks one series after
    the other, as the strip shows them. The series fields come from discovery
    (:attr:`ImageRef.series`); only refs without them have their header read here. Plain
    images, and files whose header cannot be read, form a series of their own. Never raises.
    """
    groups: OrderedDict[str, list[ImageRef]] = OrderedDict()
    meta: dict[str, tuple[int | None, str, str]] = {}
    for ref in study.images:
        uid, number, desc, modality = dataclasses.astuple(_series_header(ref))
        if uid not in groups:
            groups[uid] = []
            meta[uid] = (number, desc, modality)
        groups[uid].append(ref)
    first = list(groups)  # order of first appearance
    uids = sorted(first, key=lambda u: (meta[u][0] is None, meta[u][0] or 0, first.index(u)))
    refs: list[ImageRef] = []
    series: list[SeriesInfo] = []
    index: list[int] = []
    for s, uid in enumerate(uids):
        number, desc, modality = meta[uid]
        series.append(SeriesInfo(uid, number, desc, modality, len(groups[uid])))
        refs += groups[uid]
        index += [s] * len(groups[uid])
    return refs, series, index
