"""One run over the real DICOM edge cases plus the Kaggle set's undecodable files completes,
with DICOM outputs for every scored DICOM study."""

from __future__ import annotations

import csv
import os
from pathlib import Path

from desktop.screening.cli import main
from tests.conftest import shared_data


def _mirror(src: Path, dst: Path) -> list[Path]:
    """Symlink every file of ``src`` under ``dst`` (the discovery walk does not follow folder
    links, and nothing of the shared data may be copied)."""
    links = []
    for p in sorted(src.rglob("*")):
        if p.is_file():
            link = dst / p.relative_to(src)
            link.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(p, link)
            links.append(link)
    return links


def test_dicom_edge_cases_and_quirks_in_one_run(tiny_bundle, tmp_path, capsys):
    dicom, quirks = shared_data("dicom"), shared_data("bone-fracture-binary/quirks")
    src = tmp_path / "src"
    _mirror(dicom, src / "dicom")
    quirk_links = [p for p in _mirror(quirks, src / "quirks") if p.suffix.lower() == ".jpg"]
    assert len(quirk_links) == 5
    out = tmp_path / "out"
    rc = main([str(src), "--model", str(tiny_bundle), "--out", str(out), "--no-progress",
               "--dicom-out"])
    assert rc == 1
    rows = list(csv.DictReader((out / "failures.csv").open()))
    failed = {r["path"]: r["reason"] for r in rows if r["kind"] == "failed"}
    for link in quirk_links:
        assert failed.get(str(link)), f"{link.name} not listed as failed"
        assert "truncated" in failed[str(link)].lower() or "decode" in failed[str(link)].lower()
    names = {Path(p).name for p in failed}
    assert "Issue56-NoPixelData.dcm" in names
    refused = {Path(r["path"]).name: r["reason"] for r in rows if r["kind"] == "not indicated"}
    assert "modality MR" in refused["MR_truncated.dcm"]  # an MR gets no verdict, truncated or not
    dups = {Path(r["path"]).name for r in rows if r["kind"] == "duplicate"}
    assert "RG2_JPLY.dcm" in dups and "RG2_JPLY_fixed.dcm" not in names  # the copy that decodes is kept
    assert [Path(r["path"]).name for r in rows if r["kind"] == "skipped"] == ["quirks.csv"]
    worklist = list(csv.DictReader((out / "worklist.csv").open()))
    assert len(worklist) >= 5 and (out / "report.html").is_file()
    printed = capsys.readouterr().out
    assert "images failed" in printed
    # DICOM outputs for every study with a scored DICOM image, old ACR-NEMA files included, and
    # an SR saying "not indicated" for every DICOM study the model is not for
    assert "DICOM export failed" not in printed
    dicom_rows = [r for r in worklist if not r["study"].startswith(("folder:", "file:"))
                  and (r["probability"] or r["verdict"] == "not_indicated")]
    assert len(list((out / "dicom").glob("*/SR.dcm"))) == len(dicom_rows) >= 10
    assert {r["verdict"] for r in dicom_rows if not r["probability"]} == {"not_indicated"}
    assert all(r["rank"] == "" and r["not_indicated_reason"] for r in worklist if r["verdict"] == "not_indicated")
