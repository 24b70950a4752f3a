"""Series fields travel from discovery to the study's series grouping (Qt-free).

Opening a study used to read every image's header a second time just to group the series;
discovery already reads the whole header, so it records the series there.
"""

from __future__ import annotations

from pathlib import Path

import pydicom

import desktop.studies as studies
from desktop.discovery import SeriesFields, discover


def _write_series(src: Path, out: Path) -> list[Path]:
    out.mkdir(parents=True)
    files = sorted(p for p in src.iterdir() if p.is_file())[:3]
    written = []
    for k, p in enumerate(files, 1):
        ds = pydicom.dcmread(p)
        ds.SeriesInstanceUID = "1.2.3.9" if k == 2 else "1.2.3.8"
        ds.SeriesNumber = 1 if k == 2 else 2
        ds.SeriesDescription = "PA" if k == 2 else "LATERAL"
        ds.InstanceNumber = k
        q = out / f"im{k}"
        ds.save_as(q, enforce_file_format=True)
        written.append(q)
    return written


def test_discovery_records_each_images_series(phantom, tmp_path):
    _write_series(phantom / "dicom" / "study_0004", tmp_path / "s")
    (study,) = discover(tmp_path / "s").studies
    got = {Path(r.path).name: r.series for r in study.images}
    modality = pydicom.dcmread(tmp_path / "s" / "im1").Modality
    assert got == {"im1": SeriesFields("1.2.3.8", 2, "LATERAL", modality),
                   "im2": SeriesFields("1.2.3.9", 1, "PA", modality),
                   "im3": SeriesFields("1.2.3.8", 2, "LATERAL", modality)}


def test_study_series_reads_no_header_again(phantom, tmp_path, monkeypatch):
    _write_series(phantom / "dicom" / "study_0004", tmp_path / "s")
    (study,) = discover(tmp_path / "s").studies

    def no_read(*_a, **_k):
        raise AssertionError("study_series read a header discovery had already read")

    monkeypatch.setattr(studies.pydicom, "dcmread", no_read)
    refs, series, idx = studies.study_series(study)
    assert [Path(r.path).name for r in refs] == ["im2", "im1", "im3"]
    assert [(s.number, s.description, s.count) for s in series] == [(1, "PA", 1),
                                                                      (2, "LATERAL", 2)]
    assert idx == [0, 1, 1]


def test_refs_without_series_fields_are_read_from_the_header(phantom, tmp_path):
    """A ref made elsewhere (no series fields) still groups right; an empty Series Number is
    None, not an error."""
    files = _write_series(phantom / "dicom" / "study_0004", tmp_path / "s")
    ds = pydicom.dcmread(files[1])
    ds.SeriesNumber = None
    ds.save_as(files[1], enforce_file_format=True)
    (study,) = discover(tmp_path / "s").studies
    assert {Path(r.path).name: r.series.number for r in study.images} == {
        "im1": 2, "im2": None, "im3": 2}
    for r in study.images:
        r.series = None
    refs, series, _idx = studies.study_series(study)
    # numbered series first, the unnumbered one after them
    assert [(s.uid, s.number) for s in series] == [("1.2.3.8", 2), ("1.2.3.9", None)]
    assert [Path(r.path).name for r in refs] == ["im1", "im3", "im2"]
