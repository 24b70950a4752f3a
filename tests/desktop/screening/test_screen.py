import csv
import shutil

import pytest

from desktop.screening.cli import main
from desktop.screening.discovery import discover
from desktop.screening.run import screen
from models.engine import Engine
from tests.conftest import shared_data


@pytest.fixture
def mixed_folder(phantom, tmp_path):
    src = tmp_path / "src"
    shutil.copytree(phantom / "dicom", src)
    dcms = sorted(src.rglob("*.dcm"))
    shutil.copy(dcms[0], src / "copy_of_first.dcm")  # duplicate SOP Instance UID
    import io

    import pydicom
    from pydicom.uid import generate_uid

    ds = pydicom.dcmread(dcms[1])
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    buf = io.BytesIO()
    ds.save_as(buf)
    data = buf.getvalue()
    (src / "bad").mkdir()
    (src / "bad" / "truncated.dcm").write_bytes(data[: len(data) // 3])  # decodable header, cut pixels
    (src / "bad" / "notes.txt").write_text("not an image")
    (src / "bad" / "._hidden").write_bytes(b"x")
    (src / "bad" / "Thumbs.db").write_bytes(b"x")
    return src


def test_discovery_groups_by_study_uid(phantom):
    disc = discover(phantom / "dicom")
    labels = list(csv.DictReader((phantom / "dicom" / "labels.csv").open()))
    assert {s.key for s in disc.studies} == {r["study_uid"] for r in labels}
    assert [p for p, _ in disc.skipped] == [str(phantom / "dicom" / "labels.csv")]


def test_screen_counts_good_bad_duplicate(mixed_folder, phantom, tiny_bundle):
    n_good = len([p for p in (phantom / "dicom").rglob("*") if p.is_file() and p.suffix != ".csv" and not p.name.startswith(".")])
    res = screen(mixed_folder, Engine(tiny_bundle))
    assert len(res.discovery.duplicates) == 1
    assert any(p.endswith("copy_of_first.dcm") for pair in res.discovery.duplicates for p in pair)
    assert [p.endswith("truncated.dcm") for p, _ in res.failures] == [True]
    skipped = sorted(p.rsplit("/", 1)[-1] for p, _ in res.discovery.skipped)
    assert skipped == ["labels.csv", "notes.txt"]
    assert res.n_scored_images == n_good
    probs = [r.probability for r in res.ranked if r.probability is not None]
    assert probs == sorted(probs, reverse=True)


def test_cli_writes_worklist_and_exit_code(mixed_folder, tiny_bundle, tmp_path, capsys):
    out = tmp_path / "out"
    rc = main([str(mixed_folder), "--model", str(tiny_bundle), "--out", str(out)])
    assert rc == 1  # one image failed
    rows = list(csv.DictReader((out / "worklist.csv").open()))
    assert [int(r["rank"]) for r in rows] == list(range(1, len(rows) + 1))
    assert all(r["model"].startswith("custom_cnn") for r in rows)
    fails = list(csv.DictReader((out / "failures.csv").open()))
    assert sorted(r["kind"] for r in fails) == ["duplicate", "failed", "skipped", "skipped"]
    assert (out / "screen.sqlite").is_file() and (out / "report.html").is_file()
    html_text = (out / "report.html").read_text()
    # the clinic finds its studies by patient ID, name, accession and date (issue 15 §3) ...
    assert "not for diagnostic use" in html_text.lower() and "PHANTOM" in html_text
    assert all(r["patient_id"] and r["accession"] and r["study_date"] for r in rows if r["probability"])
    captured = capsys.readouterr()
    text = captured.out
    assert "not for diagnostic use" in text.lower()
    assert "PHANTOM" not in text + captured.err  # ... but they are never printed
    before = sorted(tmp_path.rglob("*"))
    assert main([str(mixed_folder), "--model", str(tiny_bundle), "--no-progress"]) == 1
    assert sorted(tmp_path.rglob("*")) == before  # without --out nothing is written
    assert main([str(tmp_path / "nope"), "--model", str(tiny_bundle)]) == 2
    assert main([str(mixed_folder), "--model", str(tmp_path)]) == 2


def test_screen_real_dicom_folder(tiny_bundle):
    """Every decodable file of ../shared/data/dicom gets a score, every bad one a reason."""
    root = shared_data("dicom")
    res = screen(root, Engine(tiny_bundle))
    failed = {p.rsplit("/", 1)[-1] for p, _ in res.failures}
    refused = {p.rsplit("/", 1)[-1]: r for p, r in res.refusals}
    assert {"Issue56-NoPixelData.dcm", "CR000000.dcm"} <= failed
    # an MR is not indicated, truncated or not: refused by its header, never decoded
    assert "modality MR" in refused["MR_truncated.dcm"] and "MR_truncated.dcm" not in failed
    # RG2_JPLY.dcm (broken JPEG) and RG2_JPLY_fixed.dcm share a SOP Instance UID: the one that
    # decodes is scored, the broken resend is the duplicate
    assert ("RG2_JPLY.dcm", "RG2_JPLY_fixed.dcm") in {
        (p.rsplit("/", 1)[-1], q.rsplit("/", 1)[-1]) for p, q in res.discovery.duplicates}
    assert "RG2_JPLY_fixed.dcm" not in failed
    assert any(r.path.endswith("RG2_JPLY_fixed.dcm") for st in res.discovery.studies for r in st.images)
    assert all(reason for _, reason in res.failures)
    scored = sum(len(r.image_probs) for r in res.results)
    total = sum(len(s.images) for s in res.discovery.studies)
    assert scored + len(res.failures) + len(res.refusals) == total and scored >= 3


def test_dicomdir_and_content_duplicates(tmp_path):
    import pydicom
    from PIL import Image
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    d = tmp_path / "plain"
    d.mkdir()
    Image.new("L", (16, 16), 90).save(d / "a.png")
    (d / "copy of a.png").write_bytes((d / "a.png").read_bytes())
    Image.new("L", (16, 16), 10).save(d / "b.png")
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.1.3.10"
    ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.FileSetID = "TEST"
    ds.save_as(tmp_path / "DICOMDIR", enforce_file_format=True)
    disc = discover(tmp_path)
    assert [p.rsplit("/", 1)[-1] for p, _ in disc.duplicates] == ["copy of a.png"]
    assert [(p.rsplit("/", 1)[-1], "DICOMDIR" in r) for p, r in disc.skipped] == [("DICOMDIR", True)]
    assert disc.n_images == 2


def test_a_truncated_resend_does_not_shadow_the_complete_copy(phantom, tmp_path):
    """Two files with one SOP Instance UID: the copy that decodes is kept, whichever comes first
    (a truncated resend sorted first used to hide the complete image and fail the study)."""
    import pydicom

    good = sorted((phantom / "dicom").rglob("*.dcm"))[0]
    data = good.read_bytes()
    (tmp_path / "a_resend.dcm").write_bytes(data[: len(data) // 2])  # same UID, pixels cut
    shutil.copy(good, tmp_path / "b_complete.dcm")
    disc = discover(tmp_path)
    kept = [r.path for st in disc.studies for r in st.images]
    assert [p.rsplit("/", 1)[-1] for p in kept] == ["b_complete.dcm"]
    assert [(p.rsplit("/", 1)[-1], q.rsplit("/", 1)[-1]) for p, q in disc.duplicates] == [
        ("a_resend.dcm", "b_complete.dcm")]
    assert pydicom.dcmread(tmp_path / "a_resend.dcm", stop_before_pixels=True).SOPInstanceUID == \
        pydicom.dcmread(good, stop_before_pixels=True).SOPInstanceUID


def test_anonymize_keeps_identifiers_paths_and_descriptions_out_of_every_output(mixed_folder, tiny_bundle,
                                                                              tmp_path, capsys):
    """Issue 15 §3: --anonymize hashes the identifiers in the worklist and report, and keeps real
    paths and descriptions out of screen.sqlite and the terminal too."""
    import sqlite3

    out = tmp_path / "out"
    assert main([str(mixed_folder), "--model", str(tiny_bundle), "--out", str(out), "--anonymize"]) == 1
    captured = capsys.readouterr()
    rows = list(csv.DictReader((out / "worklist.csv").open()))
    scored = [r for r in rows if r["probability"]]
    assert scored and all(r["patient_id"].startswith("pid-") and r["patient_name"].startswith("name-")
                          and r["accession"].startswith("acc-") and r["description"] == "" for r in scored)
    db = sqlite3.connect(out / "screen.sqlite")
    stored = "\n".join(str(v) for table in ("studies", "images") for row in db.execute(
        f"SELECT * FROM {table}") for v in row if not isinstance(v, bytes))
    db.close()
    outputs = {"worklist": (out / "worklist.csv").read_text(), "failures": (out / "failures.csv").read_text(),
               "report": (out / "report.html").read_text(), "state": stored,
               "stdout": captured.out, "stderr": captured.err}
    uids = {r.study.key for r in screen(mixed_folder, Engine(tiny_bundle)).results}
    for name, text in outputs.items():
        assert str(mixed_folder) not in text, name
        assert "PHANTOM" not in text and "SYN0" not in text and "XR FINGER" not in text, name
        assert not any(uid in text for uid in uids), name  # Study Instance UIDs are hashed too
    # an anonymized state resumes only anonymized, and the rerun takes every study from it
    assert main([str(mixed_folder), "--model", str(tiny_bundle), "--out", str(out), "--anonymize",
                 "--no-progress"]) == 1
    assert f"({len(rows)} resumed from the state)" in capsys.readouterr().out
    assert main([str(mixed_folder), "--model", str(tiny_bundle), "--out", str(out), "--no-progress"]) == 2
    assert "--anonymize" in capsys.readouterr().err


def test_library_warnings_never_reach_the_terminal(mixed_folder, tiny_bundle, tmp_path):
    """pydicom warns 'End of file reached ... found in file /path' on a truncated file: on the
    terminal that reads like a crash and prints a path; it goes to OUT/screen.log instead."""
    import subprocess
    import sys

    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "desktop.screening.cli", str(mixed_folder), "--model", str(tiny_bundle),
                        "--out", str(out), "--no-progress", "--workers", "0"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 1, r.stderr
    assert "Warning" not in r.stderr and "warn_and_log" not in r.stderr, r.stderr
    assert "truncated.dcm" in (out / "screen.log").read_text()
