"""Series fields travel from discovery to the study's series grouping (Qt-free).

Opening a study used to read every image's header a second time just to group the series;
discovery already reads the whole header, so it records the series there.
"""

from __future__ import annotations

from pathlib import Path

import pydicom

import desktop.viewer.studies as studies
from desktop.screening.discovery import SeriesFields, discover


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

    monkeypatch.setattr(pydicom, "dcmread", no_read)
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


def _png(path: Path, value: int = 90) -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("L", (16, 16), value).save(path)
    return path


def test_loose_images_are_one_study_each(tmp_path):
    """A folder of unrelated images (758 FracAtlas files once became one study with one verdict)."""
    for k in range(3):
        _png(tmp_path / "atlas" / f"IMG{k:04d}.jpg", 10 + k)
    keys = sorted(st.key for st in discover(tmp_path).studies)
    assert keys == [f"file:atlas/IMG{k:04d}.jpg" for k in range(3)]
    assert all(not st.is_dicom for st in discover(tmp_path).studies)
    (study,) = discover(tmp_path, group_by="folder").studies
    assert study.key == "folder:atlas" and len(study.images) == 3


def test_a_mura_layout_groups_by_study_folder(tmp_path):
    for k in range(2):
        _png(tmp_path / "XR_WRIST" / "patient00007" / "study1_positive" / f"image{k + 1}.png", 20 + k)
    _png(tmp_path / "XR_WRIST" / "patient00007" / "study2_negative" / "image1.png", 99)
    studies = {st.key: len(st.images) for st in discover(tmp_path).studies}
    assert studies == {"folder:XR_WRIST/patient00007/study1_positive": 2,
                       "folder:XR_WRIST/patient00007/study2_negative": 1}


def test_our_own_result_objects_are_skipped_not_screened(tmp_path):
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    ds = pydicom.Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.88.33"
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID, ds.SOPInstanceUID = "1.2.840.10008.5.1.4.1.1.88.33", ds.file_meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.Modality, ds.Manufacturer = generate_uid(), "SR", "mura-fracture"
    ds.save_as(tmp_path / "SR.dcm", enforce_file_format=True)
    disc = discover(tmp_path)
    assert disc.studies == []
    assert [("SR.dcm", "mura-fracture" in r) for p, r in [(Path(p).name, r) for p, r in disc.skipped]] == [("SR.dcm", True)]
