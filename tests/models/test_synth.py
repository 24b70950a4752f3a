"""The phantom generator must reproduce the real datasets' layouts exactly and deterministically.

Every downstream loader is tested against these files, so a drift here (a header line in a MURA
CSV, a label that disagrees with its folder, a DICOM that pydicom cannot decode) would silently
invalidate the rest of the test suite.
"""

from __future__ import annotations

import csv
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from models import synth
from models.errors import ConfigError
from models.labels import MURA_BODY_PARTS

PARTS_RE = "|".join(p.upper() for p in MURA_BODY_PARTS)
IMAGE_RE = re.compile(
    rf"^MURA-v1\.1/(train|valid)/XR_({PARTS_RE})/patient(\d{{5}})/study(\d+)_(positive|negative)/"
    r"image(\d+)\.png$"
)
STUDY_RE = re.compile(
    rf"^MURA-v1\.1/(train|valid)/XR_({PARTS_RE})/patient(\d{{5}})/study(\d+)_(positive|negative)/$"
)
MURA_SIZE = (48, 64)


def _tree_bytes(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def _read_rows(path: Path) -> list[list[str]]:
    with path.open(newline="") as f:
        return list(csv.reader(f))


# --------------------------------------------------------------------------------------------
# render_radiograph
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("part", MURA_BODY_PARTS)
def test_render_is_float_image_with_bright_bone(part: str) -> None:
    img = synth.render_radiograph(np.random.default_rng(0), part, False, (160, 128))
    assert img.shape == (160, 128) and img.dtype == np.float32
    assert 0.0 <= img.min() and img.max() <= 1.0
    # bone is the brightest structure; background and soft tissue are darker
    assert np.percentile(img, 99.5) > 0.55
    assert np.percentile(img, 10) < 0.45


@pytest.mark.parametrize("part", MURA_BODY_PARTS)
def test_fracture_is_the_only_difference_of_a_matched_pair(part: str) -> None:
    """Equal generator states give the same anatomy, pose and noise, with or without the break."""
    shape = (192, 192)
    seeds = range(4)
    intact = [synth.render_radiograph(np.random.default_rng(s), part, False, shape) for s in seeds]
    again = [synth.render_radiograph(np.random.default_rng(s), part, False, shape) for s in seeds]
    broken = [synth.render_radiograph(np.random.default_rng(s), part, True, shape) for s in seeds]
    for a, b in zip(intact, again, strict=True):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(intact, broken, strict=True):
        changed = np.abs(a - b) > 0.1
        # visible (a real gap / shift in bone) yet local: the rest of the image is untouched
        assert changed.mean() > 0.001, part
        assert changed.mean() < 0.35, part
        assert np.abs(a - b).max() > 0.2, part


def test_render_rejects_bad_arguments_naming_the_value() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(ConfigError, match="'knee'"):
        synth.render_radiograph(rng, "knee", False, (64, 64))
    with pytest.raises(ConfigError, match=r"\(8, 64\)"):
        synth.render_radiograph(rng, "hand", False, (8, 64))


def test_importable_without_torch() -> None:
    """The generator runs on clinic PCs and in CI steps that have no torch installed."""
    code = "import sys; sys.modules['torch'] = None; import models.synth"
    root = Path(__file__).resolve().parents[2]
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root)


# --------------------------------------------------------------------------------------------
# MURA layout
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mura(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("mura")
    counts = synth.write_mura(root, seed=3, n_patients=30, size_range=MURA_SIZE, jobs=1)
    return root, counts


def test_mura_csvs_are_headerless_and_match_the_tree(mura: tuple[Path, dict]) -> None:
    root, counts = mura
    base = root / "MURA-v1.1"
    on_disk = {str(p.relative_to(root)) for p in base.rglob("*.png")}
    listed: set[str] = set()
    for split in ("train", "valid"):
        images = _read_rows(base / f"{split}_image_paths.csv")
        studies = _read_rows(base / f"{split}_labeled_studies.csv")
        assert images and studies
        study_labels = {}
        for row in studies:
            assert len(row) == 2, row
            m = STUDY_RE.match(row[0])
            assert m, row  # also rules out a header line
            assert m.group(1) == split
            assert row[1] == ("1" if m.group(5) == "positive" else "0")
            study_labels[row[0]] = row[1]
        per_study: dict[str, int] = defaultdict(int)
        for row in images:
            assert len(row) == 1 and IMAGE_RE.match(row[0]), row
            assert (root / row[0]).is_file()
            per_study[row[0].rsplit("/", 1)[0] + "/"] += 1
            listed.add(row[0])
        assert set(per_study) == set(study_labels)
        assert all(1 <= n <= 4 for n in per_study.values())
        assert counts[split]["images"] == len(images)
        assert counts[split]["studies"] == len(studies)
        assert counts[split]["positive_studies"] == sum(r[1] == "1" for r in studies)
    assert listed == on_disk  # no orphan images


def test_mura_csv_lines_have_the_exact_real_format(mura: tuple[Path, dict]) -> None:
    root, _ = mura
    text = (root / "MURA-v1.1/train_labeled_studies.csv").read_text()
    first = text.splitlines()[0]
    assert re.fullmatch(r"MURA-v1\.1/train/XR_[A-Z]+/patient\d{5}/study\d+_\w+/,[01]", first)
    assert text.endswith("\n") and "\r" not in text


def test_mura_patients_are_split_by_patient(mura: tuple[Path, dict]) -> None:
    root, counts = mura
    patients = {}
    for split in ("train", "valid"):
        rows = _read_rows(root / f"MURA-v1.1/{split}_labeled_studies.csv")
        patients[split] = {STUDY_RE.match(r[0]).group(3) for r in rows}  # type: ignore[union-attr]
        assert counts[split]["patients"] == len(patients[split])
    assert not patients["train"] & patients["valid"]
    assert len(patients["valid"]) == 6  # 20 % of 30
    # a patient's studies of one body part are numbered study1, study2, ...
    numbers: dict[tuple[str, str], list[int]] = defaultdict(list)
    for split in ("train", "valid"):
        for r in _read_rows(root / f"MURA-v1.1/{split}_labeled_studies.csv"):
            m = STUDY_RE.match(r[0])
            numbers[(m.group(2), m.group(3))].append(int(m.group(4)))  # type: ignore[union-attr]
    assert all(sorted(n) == list(range(1, len(n) + 1)) for n in numbers.values())


def test_mura_covers_all_parts_and_both_labels(mura: tuple[Path, dict]) -> None:
    root, counts = mura
    rows = [
        r
        for split in ("train", "valid")
        for r in _read_rows(root / f"MURA-v1.1/{split}_labeled_studies.csv")
    ]
    parts = {STUDY_RE.match(r[0]).group(2).lower() for r in rows}  # type: ignore[union-attr]
    assert parts == set(MURA_BODY_PARTS)
    positive = sum(r[1] == "1" for r in rows) / len(rows)
    assert 0.2 < positive < 0.6


def test_mura_images_are_8bit_grayscale_pngs_in_range(mura: tuple[Path, dict]) -> None:
    root, _ = mura
    for path in list((root / "MURA-v1.1").rglob("*.png"))[:40]:
        with Image.open(path) as im:
            assert im.format == "PNG" and im.mode == "L"
            assert all(MURA_SIZE[0] <= n <= MURA_SIZE[1] for n in im.size)


def test_mura_is_deterministic_and_independent_of_jobs(tmp_path: Path) -> None:
    kw = {"n_patients": 12, "size_range": (40, 48)}
    synth.write_mura(tmp_path / "a", seed=5, jobs=1, **kw)
    synth.write_mura(tmp_path / "b", seed=5, jobs=2, **kw)
    synth.write_mura(tmp_path / "c", seed=6, jobs=1, **kw)
    a, b = _tree_bytes(tmp_path / "a"), _tree_bytes(tmp_path / "b")
    assert a == b
    assert a != _tree_bytes(tmp_path / "c")


def test_mura_rewrite_replaces_its_own_output_only(tmp_path: Path) -> None:
    synth.write_mura(tmp_path, seed=1, n_patients=8, size_range=(40, 40), jobs=1)
    synth.write_mura(tmp_path, seed=1, n_patients=2, size_range=(40, 40), jobs=1)
    listed = {
        r[0]
        for split in ("train", "valid")
        for r in _read_rows(tmp_path / f"MURA-v1.1/{split}_image_paths.csv")
    }
    on_disk = {str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*.png")}
    assert listed == on_disk
    foreign = tmp_path / "other"
    (foreign / "MURA-v1.1").mkdir(parents=True)
    with pytest.raises(ConfigError, match="MURA-v1.1"):
        synth.write_mura(foreign, seed=1, n_patients=2)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"seed": 0, "n_patients": 1}, "n_patients"),
        ({"seed": 0, "n_patients": 4, "size_range": (64, 32)}, r"\(64, 32\)"),
        ({"seed": 0, "n_patients": 4, "size_range": (8, 32)}, "size_range"),
        ({"seed": -1, "n_patients": 4}, "seed"),
        ({"seed": 0, "n_patients": 4, "jobs": 0}, "jobs"),
    ],
)
def test_mura_rejects_bad_arguments(tmp_path: Path, kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        synth.write_mura(tmp_path, **kwargs)
    assert not (tmp_path / "MURA-v1.1").exists()


# --------------------------------------------------------------------------------------------
# External set
# --------------------------------------------------------------------------------------------


def test_external_layout_and_balance(tmp_path: Path) -> None:
    counts = synth.write_external(tmp_path, seed=0, n_images=20, size_range=(48, 64), jobs=1)
    modes = set()
    totals = defaultdict(int)
    for split in ("train", "test"):
        for cls in ("fractured", "not fractured"):
            files = sorted((tmp_path / split / cls).glob("*.jpg"))
            assert len(files) == counts[split][cls]
            totals[cls] += len(files)
            for f in files:
                with Image.open(f) as im:
                    assert im.format == "JPEG"
                    modes.add(im.mode)
    assert {p.name for p in tmp_path.iterdir() if not p.name.startswith(".")} == {"train", "test"}
    assert totals["fractured"] == totals["not fractured"] == 10
    assert sum(counts["test"].values()) == 4
    assert modes == {"L", "RGB"}
    again = tmp_path / "again"
    synth.write_external(again, seed=0, n_images=20, size_range=(48, 64), jobs=1)
    assert _tree_bytes(again) == {
        k: v for k, v in _tree_bytes(tmp_path).items() if not k.startswith("again")
    }


# --------------------------------------------------------------------------------------------
# DICOM
# --------------------------------------------------------------------------------------------

ALL_SYNTAXES = {
    "1.2.840.10008.1.2.1",
    "1.2.840.10008.1.2",
    "1.2.840.10008.1.2.5",
    "1.2.840.10008.1.2.4.80",
    "1.2.840.10008.1.2.4.90",
}
SOP_CLASS = {"CR": "1.2.840.10008.5.1.4.1.1.1", "DX": "1.2.840.10008.5.1.4.1.1.1.1"}


@pytest.fixture(scope="module")
def dicom(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict], list]:
    from pydicom import dcmread

    root = tmp_path_factory.mktemp("dicom")
    studies = synth.write_dicom_studies(root, seed=0, n_studies=6)
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.parent != root)
    return root, studies, [(p, dcmread(p)) for p in files]


def test_dicom_every_file_decodes(dicom: tuple[Path, list[dict], list]) -> None:
    _, studies, datasets = dicom
    assert len(datasets) == sum(len(s["images"]) for s in studies)
    syntaxes = set()
    for path, ds in datasets:
        arr = ds.pixel_array
        assert arr.shape == (ds.Rows, ds.Columns), path
        assert 512 <= ds.Rows <= 1024 and 512 <= ds.Columns <= 1024
        assert int(arr.max()) < 2**ds.BitsStored
        assert ds.BitsAllocated == (8 if ds.BitsStored == 8 else 16)
        syntaxes.add(str(ds.file_meta.TransferSyntaxUID))
    assert syntaxes == ALL_SYNTAXES
    assert any(p.suffix != ".dcm" for p, _ in datasets)
    assert any(p.suffix == ".dcm" for p, _ in datasets)


def test_dicom_covers_the_encodings_a_pacs_sends(dicom: tuple[Path, list[dict], list]) -> None:
    _, _, datasets = dicom
    dss = [ds for _, ds in datasets]
    assert {ds.PhotometricInterpretation for ds in dss} == {"MONOCHROME1", "MONOCHROME2"}
    assert {int(ds.BitsStored) for ds in dss} == {8, 10, 12, 16}
    assert {ds.Modality for ds in dss} == {"CR", "DX"}
    assert any("RescaleSlope" in ds for ds in dss) and any("RescaleSlope" not in ds for ds in dss)
    for ds in dss:
        assert ds.SOPClassUID == SOP_CLASS[ds.Modality]
        assert ds.file_meta.MediaStorageSOPClassUID == ds.SOPClassUID
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        slope, intercept = float(ds.get("RescaleSlope", 1)), float(ds.get("RescaleIntercept", 0))
        arr = ds.pixel_array.astype(np.float64) * slope + intercept
        center, width = float(ds.WindowCenter), float(ds.WindowWidth)
        assert center - width / 2 <= arr.min() + 1e-6 and arr.max() <= center + width / 2 + 1e-6


def test_dicom_monochrome1_stores_bone_dark(dicom: tuple[Path, list[dict], list]) -> None:
    """Most of a limb radiograph is dark background: stored high under MONOCHROME1."""
    _, _, datasets = dicom
    for _, ds in datasets:
        if ds.BodyPartExamined == "SHOULDER":  # the torso fills that frame
            continue
        level = float(np.median(ds.pixel_array)) / (2**ds.BitsStored - 1)
        if ds.PhotometricInterpretation == "MONOCHROME1":
            assert level > 0.6
        else:
            assert level < 0.4


def test_dicom_identifiers_and_labels_agree(dicom: tuple[Path, list[dict], list]) -> None:
    root, studies, datasets = dicom
    rows = _read_rows(root / "labels.csv")
    assert rows[0] == ["study_uid", "label", "body_part", "folder"]
    by_folder = {r[3]: r for r in rows[1:]}
    assert len(by_folder) == len(studies) == 6
    assert {r[1] for r in rows[1:]} == {"0", "1"}
    for s in studies:
        assert by_folder[s["folder"]] == [
            s["study_uid"],
            str(s["label"]),
            s["body_part"],
            s["folder"],
        ]
    uids_by_folder: dict[str, set[str]] = defaultdict(set)
    sop_uids = []
    for path, ds in datasets:
        folder = path.parent.name
        uids_by_folder[folder].add(ds.StudyInstanceUID)
        sop_uids.append(ds.SOPInstanceUID)
        assert ds.BodyPartExamined == by_folder[folder][2].upper()
        assert str(ds.PatientName).startswith("PHANTOM^")
        assert str(ds.PatientID).startswith("PHANTOM^")
        assert ds.StudyDescription and ds.SeriesNumber and ds.InstanceNumber
        assert len(ds.PixelSpacing) == 2
    assert all(len(u) == 1 for u in uids_by_folder.values())
    assert {next(iter(u)) for u in uids_by_folder.values()} == {s["study_uid"] for s in studies}
    assert len(set(sop_uids)) == len(sop_uids)


def test_dicom_is_deterministic(tmp_path: Path) -> None:
    a = synth.write_dicom_studies(tmp_path / "a", seed=9, n_studies=1)
    b = synth.write_dicom_studies(tmp_path / "b", seed=9, n_studies=1)
    assert a == b
    assert _tree_bytes(tmp_path / "a") == _tree_bytes(tmp_path / "b")


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def test_cli_help_explains_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        synth.main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for option in ("--seed", "--mura-patients", "--external-images", "--dicom-studies", "--only"):
        assert option in out


def test_cli_writes_the_selected_datasets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [str(tmp_path), "--only", "mura,external", "--mura-patients", "2"]
    assert synth.main([*argv, "--external-images", "4", "--jobs", "1"]) == 0
    assert (tmp_path / "mura/MURA-v1.1/train_labeled_studies.csv").is_file()
    assert (tmp_path / "external/train").is_dir()
    assert not (tmp_path / "dicom").exists()
    assert "mura/train" in capsys.readouterr().out


def test_cli_rejects_unknown_kind(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        synth.main([str(tmp_path), "--only", "mura,xray"])
    assert exc.value.code == 2
    assert "mura,xray" in capsys.readouterr().err
