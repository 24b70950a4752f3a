"""DICOM outputs (Secondary Capture + Comprehensive SR) read back with pydicom, and --dicom-out."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image

from desktop.screening.cli import main
from desktop.screening.dicom_export import SR_NAME, write_study_dicom
from desktop.screening.discovery import discover
from models.engine import Engine
from models.errors import ExportError
from models.imageio import load_image

SC_STORAGE = "1.2.840.10008.5.1.4.1.1.7"
COMPREHENSIVE_SR = "1.2.840.10008.5.1.4.1.1.88.33"


@pytest.fixture(scope="module")
def engine(tiny_bundle) -> Engine:
    return Engine(tiny_bundle)


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _walk(items):
    for it in items:
        yield it
        yield from _walk(it.get("ContentSequence", []))


def _study_sources(phantom, engine):
    disc = discover(phantom / "dicom")
    st = max(disc.studies, key=lambda s: len(s.images))  # one with several images
    paths = [Path(r.path) for r in st.images]
    pixels = [load_image(p).pixels for p in paths]
    preds = engine.predict(pixels)
    return st, list(zip(paths, pixels, preds, strict=True)), engine.predict_study(pixels)


def test_sc_and_sr_read_back(phantom, engine, tmp_path):
    st, sources, study = _study_sources(phantom, engine)
    assert len(sources) >= 2
    before = {p: _sha(p) for p, _, _ in sources}
    out = write_study_dicom(sources, study, engine.bundle.card, tmp_path / "dcm", word="abnormality")
    assert [p.name for p in out] == [f"SC_{k:03d}.dcm" for k in range(1, len(sources) + 1)] + [SR_NAME]
    assert {p: _sha(p) for p, _, _ in sources} == before  # sources never modified
    refs = [pydicom.dcmread(p, stop_before_pixels=True) for p, _, _ in sources]

    scs = [pydicom.dcmread(p) for p in out[:-1]]
    for sc, ref, (_, pixels, pred) in zip(scs, refs, sources, strict=True):
        assert sc.SOPClassUID == SC_STORAGE
        assert sc.StudyInstanceUID == ref.StudyInstanceUID == st.key
        assert sc.SeriesInstanceUID != ref.SeriesInstanceUID
        assert sc.SOPInstanceUID != ref.SOPInstanceUID
        assert sc.PatientID == ref.PatientID and sc.PatientName == ref.PatientName
        assert sc.BurnedInAnnotation == "YES" and sc.PhotometricInterpretation == "RGB"
        arr = sc.pixel_array
        assert arr.dtype == np.uint8 and arr.ndim == 3 and arr.shape[2] == 3
        assert arr.shape[1] == pixels.shape[1] and arr.shape[0] > pixels.shape[0]  # text band on top
        assert sc.SourceImageSequence[0].ReferencedSOPInstanceUID == ref.SOPInstanceUID
        assert f"{pred.probability:.6f}" in sc.ImageComments
        band = arr[: arr.shape[0] - pixels.shape[0]]
        assert (band[..., 0] > 200).any()  # burned-in (yellow) text is there
    assert len({sc.SeriesInstanceUID for sc in scs}) == 1

    sr = pydicom.dcmread(out[-1])
    assert sr.SOPClassUID == COMPREHENSIVE_SR
    assert sr.StudyInstanceUID == st.key and sr.PatientID == refs[0].PatientID
    assert sr.SeriesInstanceUID not in {r.SeriesInstanceUID for r in refs} | {scs[0].SeriesInstanceUID}
    items = list(_walk(sr.ContentSequence))
    referenced = {i.ReferencedSOPSequence[0].ReferencedSOPInstanceUID for i in items
                  if i.ValueType == "IMAGE"}
    assert referenced == {r.SOPInstanceUID for r in refs}
    evidence = {s.ReferencedSOPInstanceUID for e in sr.CurrentRequestedProcedureEvidenceSequence
                for se in e.ReferencedSeriesSequence for s in se.ReferencedSOPSequence}
    assert evidence == {r.SOPInstanceUID for r in refs}
    nums = [i for i in items if i.ValueType == "NUM"]
    values = [float(n.MeasuredValueSequence[0].FloatingPointValue) for n in nums]
    assert values[0] == pytest.approx(study.probability, abs=1e-9)
    assert values[1:] == pytest.approx([p.probability for _, _, p in sources], abs=1e-9)
    assert all(float(n.MeasuredValueSequence[0].NumericValue) == pytest.approx(v, abs=1e-6)
               for n, v in zip(nums, values, strict=True))
    texts = {i.ConceptNameCodeSequence[0].CodeMeaning: i.TextValue for i in items
             if i.ValueType == "TEXT" and i.ConceptNameCodeSequence[0].CodeMeaning != "Comment"}
    assert texts["Algorithm Name"] == engine.bundle.card["name"]
    assert texts["Algorithm Version"] == str(engine.bundle.card["version"])
    assert texts["Finding Site"] == study.body_part
    assert study.verdict in texts["Finding"].lower() and "abnormality" in texts["Finding"]
    comments = [i.TextValue for i in items if i.ValueType == "TEXT"
                and i.ConceptNameCodeSequence[0].CodeMeaning == "Comment"]
    assert any("NOT FOR DIAGNOSTIC USE" in c for c in comments)


def test_non_dicom_sources_are_skipped_or_refused(phantom, engine, tmp_path):
    _, sources, study = _study_sources(phantom, engine)
    png = tmp_path / "plain.png"
    Image.fromarray((sources[0][1] * 255).astype(np.uint8)).save(png)
    mixed = [(png, sources[0][1], sources[0][2]), *sources[:1]]
    out = write_study_dicom(mixed, study, engine.bundle.card, tmp_path / "mixed")
    assert [p.name for p in out] == ["SC_001.dcm", SR_NAME]
    with pytest.raises(ExportError, match="plain.png"):
        write_study_dicom([(png, sources[0][1], sources[0][2])], study, engine.bundle.card,
                          tmp_path / "none")
    assert not (tmp_path / "none").exists()


def test_cli_dicom_out_per_study_and_resume(phantom, tiny_bundle, tmp_path, capsys):
    src = tmp_path / "src"
    shutil.copytree(phantom / "dicom", src, copy_function=shutil.copy2)
    out = tmp_path / "out"
    before = {p: _sha(p) for p in src.rglob("*") if p.is_file()}
    assert main([str(src), "--model", str(tiny_bundle), "--out", str(out), "--dicom-out",
                 "--no-progress"]) == 0
    disc = discover(src)
    folders = sorted((out / "dicom").iterdir())
    assert len(folders) == len(disc.studies)
    for st in disc.studies:
        d = out / "dicom" / st.key
        assert (d / SR_NAME).is_file()
        assert len(list(d.glob("SC_*.dcm"))) == len(st.images)
        assert pydicom.dcmread(d / SR_NAME).StudyInstanceUID == st.key
    assert {p: _sha(p) for p in src.rglob("*") if p.is_file()} == before
    capsys.readouterr()
    # A study whose SR is missing is redone on resume; the others are taken from the state.
    victim = out / "dicom" / disc.studies[0].key / SR_NAME
    victim.unlink()
    assert main([str(src), "--model", str(tiny_bundle), "--out", str(out), "--dicom-out",
                 "--no-progress"]) == 0
    assert f"({len(disc.studies) - 1} resumed" in capsys.readouterr().out
    assert victim.is_file()
    assert main([str(src), "--model", str(tiny_bundle), "--dicom-out"]) == 2  # needs --out
