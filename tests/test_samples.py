"""samples/: the sample radiographs stay few, small, decodable, credited and free of identifiers.

They ship in the repository (and a newcomer's first ``mura-screen samples`` reads them), so what
they are must be checkable without the dataset they came from.
"""

from __future__ import annotations

import re
import subprocess

import numpy as np
import pydicom
import pytest

from models.imageio import load_image
from models.reference import samples_dir
from tests.conftest import REPO

SAMPLES = REPO / "samples"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".dcm")  # what compress.ship records outputs for


def _images() -> list:
    return sorted(p for p in SAMPLES.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)


def test_few_small_images_that_all_decode():
    assert samples_dir() == SAMPLES
    images = _images()
    assert 1 <= len(images) <= 8, [p.name for p in images]
    total = sum(p.stat().st_size for p in SAMPLES.rglob("*") if p.is_file())
    assert total < 2e6, f"samples/ is {total / 1e6:.2f} MB (keep it under 2 MB)"
    for p in images:
        img = load_image(p)
        assert img.pixels.ndim == 2 and max(img.pixels.shape) <= 768, p
        assert float(np.std(img.pixels)) > 0.01, f"{p}: blank image"


def test_dicom_samples_are_monochrome2_8bit_with_a_synthetic_patient():
    dicoms = sorted((SAMPLES / "dicom").glob("*.dcm"))
    assert len(dicoms) == 2
    for p in dicoms:
        ds = pydicom.dcmread(p)
        assert ds.PhotometricInterpretation == "MONOCHROME2" and ds.BitsAllocated == 8
        assert re.fullmatch(r"SAMPLE-\d{4}", ds.PatientID), ds.PatientID
        assert str(ds.PatientName) == "Sample^FracAtlas"
        assert not ds.get("PatientBirthDate") and not ds.get("OtherPatientIDs")
        assert load_image(p).kind == "dicom"


def test_each_image_is_its_own_study():
    """Plain images are grouped by folder: one folder per image keeps them apart."""
    from desktop.screening.discovery import discover

    disc = discover(SAMPLES)
    assert len(disc.studies) == len(_images())


def test_readme_credits_fracatlas_and_lists_every_file_with_id_part_and_label():
    text = (SAMPLES / "README.md").read_text(encoding="utf-8")
    for needle in ("FracAtlas", "Abedeen", "Scientific Data", "2023", "CC BY 4.0",
                   "downscaled", "DICOM", "make_samples.py"):
        assert needle in text, needle
    rows = {m.group(1): m.group(0) for m in re.finditer(r"^\| `([^`]+)` \|.*$", text, re.M)}
    assert set(rows) == {p.relative_to(SAMPLES).as_posix() for p in _images()}
    for row in rows.values():
        assert re.search(r"IMG\d{7}\.jpg", row), row
        assert re.search(r"\| (fractured|not fractured) \|", row), row
        assert re.search(r"\| (hand|leg|hip|shoulder|mixed)", row), row


def test_samples_are_tracked_not_ignored():
    r = subprocess.run(["git", "check-ignore", "--no-index", *map(str, _images())], cwd=REPO,
                       capture_output=True, text=True)
    if r.returncode == 128:
        pytest.skip(f"not a git checkout: {r.stderr.strip()}")
    assert r.stdout.strip() == "", f"git ignores: {r.stdout}"
