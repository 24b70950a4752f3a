"""Study report export: a real PDF and a non-blank PNG, the right words, originals untouched."""

from __future__ import annotations

import copy
import hashlib
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from desktop.viewer.export_report import report_content
from models.errors import ConfigError

WAIT_MS = 60_000


def _digests(paths) -> dict[str, str]:
    return {p: hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in paths}


@pytest.fixture
def shown(qtbot, win, phantom):
    with qtbot.waitSignal(win.analysis_ready, timeout=WAIT_MS):
        win.open_paths([phantom / "dicom" / "study_0004"])
    qtbot.waitUntil(lambda: not win.busy, timeout=WAIT_MS)
    return win


def test_pdf_and_png_are_written_and_sources_unchanged(shown, tmp_path):
    win = shown
    sources = [v.ref.path for v in win.current_outcome.images]
    before = _digests(sources)
    pdf = win.export_report(tmp_path / "out" / "report.pdf")
    png = win.export_report(tmp_path / "out" / "report.png")
    data = pdf.read_bytes()
    assert data.startswith(b"%PDF")
    assert len(re.findall(rb"/Type\s*/Page(?!s)", data)) >= 1
    img = np.asarray(Image.open(png).convert("RGB"))
    assert img.shape[1] == 1240 and img.shape[0] > 1000
    assert img.std() > 20 and len(np.unique(img.reshape(-1, 3), axis=0)) > 100
    # the radiographs are in it: a dark image tile with many gray levels
    gray = img.mean(axis=2)
    assert (gray < 40).mean() > 0.02
    assert _digests(sources) == before
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["report.pdf", "report.png"]


def test_export_refuses_to_overwrite_a_source(shown, tmp_path):
    win = shown
    src = win.current_outcome.images[0].ref.path
    before = _digests([src])
    alias = tmp_path / "alias.png"  # a name that leads to the original itself
    alias.symlink_to(src)
    with pytest.raises(ConfigError, match="source image"):
        win.export_report(alias)
    assert _digests([src]) == before and alias.is_symlink()
    with pytest.raises(ConfigError, match=r"\.pdf or \.png"):
        win.export_report(tmp_path / "report.docx")


def test_content_words_scores_and_card(shown):
    win = shown
    out = win.current_outcome
    card = win.engine.bundle.card
    c = report_content(out, card, win.engine.bundle.model_id)
    text = "\n".join([c.title, c.disclaimer, c.verdict, *c.study_lines, *c.operating_lines,
                      *(" ".join(r) for r in c.image_rows), *(i.caption for i in c.images),
                      *c.model_lines, c.footer])
    assert "research use only — not for diagnostic use" in text.lower()
    assert "abnormality" in text and "fracture" not in text.lower()
    assert card["name"] in text and str(card["version"]) in text
    assert win.engine.bundle.model_id in text
    assert f"{out.prediction.probability:.3f}" in text
    assert len(c.operating_lines) == 2
    th = card["thresholds"]
    for line, key in zip(c.operating_lines, ("suspicious", "likely"), strict=True):
        assert f"{th[key]:.3f}" in line
        assert ("POSITIVE" in line) == (out.prediction.probability >= th[key])
    for v, row in zip(out.images, c.image_rows, strict=True):
        assert row[2] == f"{v.prediction.probability:.3f}"
    assert any(line.startswith("Training data:") for line in c.model_lines)
    assert any(line.startswith("Validation data:") for line in c.model_lines)
    assert all(i.rgb is not None for i in c.images)
    # patient identifiers stay out of a file that travels
    info = out.images[0].image.info
    assert info.patient_name not in text and info.patient_id not in text

    frac = copy.deepcopy(card)
    frac["task"] = {**frac["task"], "name": "fracture", "display_word": "fracture"}
    c2 = report_content(out, frac, "x")
    assert "fracture" in c2.title and "abnormality" not in " ".join(c2.operating_lines)


def test_the_proposed_file_name_comes_from_the_study():
    """Issue 15 §5: the save dialog proposed 'report.pdf' for every study."""
    from desktop.screening.discovery import Study
    from desktop.viewer.export_report import report_file_name

    st = Study("1.2.3.4", study_date="2024-09-12", accession="ACC 77/1", patient_name="DOE^JOHN")
    name = report_file_name(st, "pdf")
    assert name.startswith("mura-report_2024-09-12_ACC-77-1_") and name.endswith(".pdf")
    assert "DOE" not in name and len(name.split("_")[-1]) == len("0123abcd.pdf")
    assert report_file_name(Study("file:a.png"), "png").startswith("mura-report_")
    assert report_file_name(Study("x"), "pdf") != report_file_name(Study("y"), "pdf")


def test_a_weak_models_report_carries_the_red_banner(shown, tmp_path):
    """Issue 15 §2: the phantom-trained, chance-level test model must look like what it is."""
    from desktop.viewer.export_report import write_report_png

    win = shown
    c = report_content(win.current_outcome, win.engine.bundle.card, win.engine.bundle.model_id)
    assert c.warnings and all(w.startswith("NOT A CLINICALLY MEANINGFUL MODEL") for w in c.warnings)
    import dataclasses

    def red_share(content, name: str) -> float:
        png = np.asarray(Image.open(write_report_png(content, tmp_path / name)).convert("RGB"))[:500].astype(int)
        return float((np.abs(png - np.array([0xB3, 0x26, 0x1E])).sum(axis=2) < 10).mean())

    # the banner's red band near the top, beyond whatever the verdict badge shows
    assert red_share(c, "r.png") > red_share(dataclasses.replace(c, warnings=[]), "plain.png") + 0.02
