"""mura-screen --fast-decode is recorded and never mixed; report.html lists failed DICOM exports."""

from __future__ import annotations

import csv
import io
import sqlite3
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from desktop.screening.cli import main
from desktop.screening.state import DECODE_EXACT, DECODE_FAST, SCHEMA_VERSION, ScreenState
from models.errors import ConfigError


@pytest.fixture(scope="module")
def src(tmp_path_factory) -> Path:
    """Three single-image studies: JPEG 2000 lossless, baseline JPEG (DICOM) and explicit LE."""
    from PIL import Image
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.encaps import encapsulate
    from pydicom.uid import generate_uid

    from models.synth import render_radiograph

    root = tmp_path_factory.mktemp("fast") / "src"
    root.mkdir()
    rng = np.random.default_rng(5)
    for k, syntax in enumerate(("1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.50",
                                "1.2.840.10008.1.2.1")):
        img = render_radiograph(rng, "wrist", bool(k % 2), (560, 420))
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
        ds.PatientName, ds.PatientID, ds.Modality = "FAST^PHANTOM", f"F{k}", "DX"
        ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.1"
        if syntax.endswith(".50"):
            u8 = np.rint(img * 255).astype(np.uint8)
            ds.set_pixel_data(u8, "MONOCHROME2", 8, generate_instance_uid=False)
            buf = io.BytesIO()
            Image.fromarray(u8).save(buf, format="JPEG", quality=90)
            ds.file_meta.TransferSyntaxUID = syntax
            ds.PixelData = encapsulate([buf.getvalue()])
            ds["PixelData"].VR = "OB"
        else:
            raw = np.rint(img * 4095).astype(np.uint16)
            ds.set_pixel_data(raw, "MONOCHROME2", 12, generate_instance_uid=False)
            if syntax.endswith(".90"):
                ds.compress(syntax, raw, encoding_plugin="pylibjpeg", generate_instance_uid=False)
        p = root / f"study{k}" / "im1.dcm"
        p.parent.mkdir()
        ds.save_as(p, enforce_file_format=True)
    return root


def _worklist(out: Path) -> list[dict]:
    return list(csv.DictReader((out / "worklist.csv").open()))


class _Report(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.decode: str | None = None
        self.counts: dict[str, str] = {}
        self.export_errors: list[str] = []
        self._in_export = False
        self._count: str | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "data-decode" in a:
            self.decode = a["data-decode"]
        if "data-count" in a:
            self._count = a["data-count"]
        if tag == "li" and a.get("class") == "export-error":
            self._in_export = True
            self.export_errors.append("")

    def handle_endtag(self, tag):
        if tag == "li":
            self._in_export = False
        self._count = None

    def handle_data(self, data):
        if self._in_export:
            self.export_errors[-1] += data
        if self._count:
            self.counts[self._count] = data


def _report(out: Path) -> _Report:
    r = _Report()
    r.feed((out / "report.html").read_text())
    return r


def test_fast_decode_is_recorded_and_a_run_never_mixes_decodings(src, tiny_bundle, tmp_path, capsys):
    out = tmp_path / "out"
    args = [str(src), "--model", str(tiny_bundle), "--out", str(out), "--workers", "0", "--no-progress"]
    assert main(args + ["--fast-decode"]) == 0
    printed = capsys.readouterr().out
    assert "--fast-decode" in printed
    rows = _worklist(out)
    assert len(rows) == 3 and {r["decode"] for r in rows} == {DECODE_FAST}
    assert _report(out).decode == DECODE_FAST
    with sqlite3.connect(out / "screen.sqlite") as db:
        assert db.execute("SELECT decode, schema_version FROM run").fetchone() == (DECODE_FAST, SCHEMA_VERSION)
        fast_probs = dict(db.execute("SELECT path, probability FROM images"))
    # the same command resumes (nothing re-scored) ...
    assert main(args + ["--fast-decode"]) == 0
    assert "3 resumed" in capsys.readouterr().out
    # ... an exact run over these results is refused, naming the flag ...
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "--fast-decode" in err and "--restart" in err
    # ... and --restart re-scores every study exactly
    assert main(args + ["--restart"]) == 0
    assert "0 resumed" in capsys.readouterr().out
    rows = _worklist(out)
    assert {r["decode"] for r in rows} == {DECODE_EXACT} and _report(out).decode == DECODE_EXACT
    with sqlite3.connect(out / "screen.sqlite") as db:
        exact_probs = dict(db.execute("SELECT path, probability FROM images"))
    assert exact_probs.keys() == fast_probs.keys()
    # the explicit-LE image decodes the same either way; the others may move a little
    le = next(p for p in exact_probs if "study2" in p)
    assert exact_probs[le] == pytest.approx(fast_probs[le], abs=1e-6)
    assert max(abs(exact_probs[p] - fast_probs[p]) for p in exact_probs) < 0.2
    # a fast run over exact results is refused too
    assert main(args + ["--fast-decode"]) == 2


def test_state_of_schema_1_is_migrated_as_exact(tmp_path):
    db = sqlite3.connect(tmp_path / "screen.sqlite")
    db.executescript("""
        CREATE TABLE run (id INTEGER PRIMARY KEY CHECK (id = 1), schema_version INTEGER NOT NULL,
            model_id TEXT NOT NULL, model_name TEXT NOT NULL, model_version TEXT NOT NULL,
            source_root TEXT NOT NULL, salt TEXT NOT NULL, started_at REAL NOT NULL);
        INSERT INTO run VALUES (1, 1, 'm#1', 'm', '1', '/src', 'salt', 0);
    """)
    db.commit()
    db.close()
    state = ScreenState(tmp_path)
    try:
        assert state.decode == DECODE_EXACT and state.run_info()["schema_version"] == SCHEMA_VERSION
        state.begin(model_id="m#1", model_name="m", model_version="1", source_root="/src")
        with pytest.raises(ConfigError, match="--fast-decode"):
            state.begin(model_id="m#1", model_name="m", model_version="1", source_root="/src",
                        decode=DECODE_FAST)
        with pytest.raises(ConfigError, match="unknown decoding"):
            state.begin(model_id="m#1", model_name="m", model_version="1", source_root="/src",
                        decode="quick")
    finally:
        state.close()


@pytest.mark.parametrize("anonymize", [False, True])
def test_report_lists_failed_dicom_exports_with_their_reason(src, tiny_bundle, tmp_path, capsys,
                                                             monkeypatch, anonymize):
    import desktop.screening.dicom_export

    def disk_full(items, study, card, out_dir, word="fracture"):
        raise OSError(f"[Errno 28] No space left on device while writing SC of {items[0][0]}")

    monkeypatch.setattr(desktop.screening.dicom_export, "write_study_dicom", disk_full)
    out = tmp_path / "out"
    args = [str(src), "--model", str(tiny_bundle), "--out", str(out), "--workers", "0",
            "--no-progress", "--dicom-out"] + (["--anonymize"] if anonymize else [])
    assert main(args) == 1  # scores are all there, the exports are not
    printed = capsys.readouterr().out
    rep = _report(out)
    assert rep.counts["export_errors"] == "3" and len(rep.export_errors) == 3
    assert all("No space left on device" in e for e in rep.export_errors)
    assert sum("DICOM export failed" in line for line in printed.splitlines()) == 3
    html_text = (out / "report.html").read_text()
    sources = [str(p) for p in sorted(src.rglob("*.dcm"))]
    if anonymize:
        assert not any(s in html_text for s in sources)
        assert all("file-" in e and "study anon" not in e for e in rep.export_errors)
    else:
        assert all(any(s in e for s in sources) for e in rep.export_errors)
    # the scores themselves were committed
    assert len(_worklist(out)) == 3 and rep.counts["scored_images"] == "3"


def test_report_without_export_errors_says_none(src, tiny_bundle, tmp_path, capsys):
    out = tmp_path / "out"
    assert main([str(src), "--model", str(tiny_bundle), "--out", str(out), "--workers", "0",
                 "--no-progress"]) == 0
    rep = _report(out)
    assert rep.counts["export_errors"] == "0" and rep.export_errors == []
    assert rep.decode == DECODE_EXACT
