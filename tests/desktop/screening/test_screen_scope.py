"""The screener gives no verdict where the model is not indicated (issue 15 §1-2): a chest film,
an ultrasound, a colour photograph go to their own section of the worklist, the report and the
SR say why, and a weak model is announced as such."""

from __future__ import annotations

import csv
import shutil
import sqlite3

import numpy as np
import pydicom
import pytest
from PIL import Image

from desktop.screening.cli import main
from desktop.screening.run import screen
from desktop.screening.state import SCHEMA_VERSION, ScreenState
from models.engine import Engine


def _files(folder):
    return sorted(p for p in folder.iterdir() if p.is_file())


@pytest.fixture
def clinic_folder(phantom, tmp_path):
    """The phantom DICOM studies, one of them relabelled CHEST, one ultrasound, and a photo."""
    src = tmp_path / "src"
    shutil.copytree(phantom / "dicom", src)
    studies = sorted(p for p in src.iterdir() if p.is_dir())
    for f in _files(studies[0]):
        ds = pydicom.dcmread(f)
        ds.BodyPartExamined, ds.StudyDescription, ds.SeriesDescription = "CHEST", "THORAX PA", "CHEST"
        ds.save_as(f)
    for f in _files(studies[1]):
        ds = pydicom.dcmread(f)
        ds.Modality = "US"
        ds.save_as(f)
    rng = np.random.default_rng(0)
    photo = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
    photo[..., 0] = 250  # strongly red: a colour photograph
    Image.fromarray(photo).save(src / "holiday.jpg")
    return src, studies


def test_not_indicated_studies_are_listed_apart_with_their_reason(clinic_folder, tiny_bundle):
    src, studies = clinic_folder
    res = screen(src, Engine(tiny_bundle))
    apart = {r.study.key: r for r in res.not_indicated}
    chest_uid = str(pydicom.dcmread(_files(studies[0])[0]).StudyInstanceUID)
    us_uid = str(pydicom.dcmread(_files(studies[1])[0]).StudyInstanceUID)
    assert "CHEST" in apart[chest_uid].scope and "modality US" in apart[us_uid].scope
    assert "colour" in apart["file:holiday.jpg"].scope
    assert all(r.probability is None and r.verdict == "not_indicated" for r in apart.values())
    assert not set(apart) & {r.study.key for r in res.ranked}  # never ranked among the scored
    assert res.ranked and all(r.probability is not None for r in res.ranked)
    assert len(res.refusals) == sum(len(r.study.images) for r in apart.values())


def test_cli_outputs_say_not_indicated_and_warn_about_a_weak_model(clinic_folder, tiny_bundle, tmp_path, capsys):
    src, studies = clinic_folder
    out = tmp_path / "out"
    assert main([str(src), "--model", str(tiny_bundle), "--out", str(out), "--no-progress", "--dicom-out"]) == 0
    captured = capsys.readouterr()
    # the tiny test model is phantom-trained and near chance: said before the run and after it
    assert "NOT A CLINICALLY MEANINGFUL MODEL: trained on phantom images" in captured.err
    assert "NOT A CLINICALLY MEANINGFUL MODEL" in captured.out and "Validated performance: AUC" in captured.out
    assert "Not indicated (3 studies" in captured.out
    rows = list(csv.DictReader((out / "worklist.csv").open()))
    ranked = [r for r in rows if r["rank"]]
    apart = [r for r in rows if r["verdict"] == "not_indicated"]
    assert len(apart) == 3 and all(r["rank"] == "" and r["probability"] == "" for r in apart)
    assert rows[: len(ranked)] == ranked  # the not-indicated rows come after the worklist
    failures = list(csv.DictReader((out / "failures.csv").open()))
    assert sum(r["kind"] == "not indicated" for r in failures) == len(_files(studies[0])) + len(_files(studies[1])) + 1
    html = (out / "report.html").read_text()
    assert 'data-count="not_indicated_studies">3<' in html and html.count('class="study not_indicated"') == 3
    assert 'class="weak"' in html and "validated performance" in html and "indicated for" in html
    chest_uid = str(pydicom.dcmread(_files(studies[0])[0]).StudyInstanceUID)
    sr = pydicom.dcmread(out / "dicom" / chest_uid / "SR.dcm")
    texts = [str(getattr(i, "TextValue", "")) for i in sr.ContentSequence]
    assert any(t.startswith("Not indicated") for t in texts) and any("CHEST" in t for t in texts)
    assert not any(hasattr(i, "MeasuredValueSequence") for i in sr.ContentSequence)  # no probability
    assert not list((out / "dicom" / chest_uid).glob("SC_*.dcm"))
    # a rerun resumes every study, the not-indicated ones included (their SR is there)
    assert main([str(src), "--model", str(tiny_bundle), "--out", str(out), "--no-progress", "--dicom-out"]) == 0
    assert f"{len(rows)} studies ({len(rows)} resumed from the state)" in capsys.readouterr().out


def test_a_state_from_before_the_scope_checks_is_rescored(clinic_folder, tiny_bundle, tmp_path):
    """A version-2 state ranked chest films; its studies are dropped, not resumed."""
    src, _ = clinic_folder
    out = tmp_path / "out"
    assert main([str(src), "--model", str(tiny_bundle), "--out", str(out), "--no-progress"]) == 0
    db = sqlite3.connect(out / "screen.sqlite")
    with db:  # make it look like version 2: no scope columns
        db.execute("UPDATE run SET schema_version = 2")
        db.execute("ALTER TABLE images DROP COLUMN refused")
        db.execute("ALTER TABLE studies DROP COLUMN n_refused")
        db.execute("ALTER TABLE studies DROP COLUMN scope")
    db.close()
    state = ScreenState(out)
    assert state.run_info()["schema_version"] == SCHEMA_VERSION and state.studies() == []
    state.close()
