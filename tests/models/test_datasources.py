from pathlib import Path

import pytest

from models.datasources import (
    group_split,
    load_source,
    original_group,
    read_csv_dataset,
    read_image_folder,
    read_mura,
)
from models.errors import ConfigError, DataError
from tests.conftest import shared_data


def test_official_mura_csvs_full_scale():
    root = shared_data("mura-csv-full")
    train = read_mura(root, "train", check_files=False)
    valid = read_mura(root, "valid", check_files=False)
    assert (len(train.records), len({r.study_id for r in train.records})) == (36808, 13457)
    assert (len(valid.records), len({r.study_id for r in valid.records})) == (3197, 1199)
    assert set(train.summary()["body_parts"]) == set(train.body_parts)
    assert not train.problems and not valid.problems
    assert train.task == "abnormality"
    # patient-level split: no patient on both sides
    a, b = group_split(train.records, 0.15, seed=0)
    assert not {r.patient_id for r in a} & {r.patient_id for r in b}
    assert 0.1 < len(b) / len(train.records) < 0.2


def test_mura_mini_real_files():
    root = shared_data("mura-mini")
    train = read_mura(root / "MURA-v1.1", "train")  # the MURA-v1.1 folder itself is accepted too
    assert len(train.records) == 10 and all(Path(r.path).is_file() for r in train.records)
    r = train.records[0]
    assert r.body_part in train.body_parts and r.patient_id.startswith("patient")
    assert r.label == (1 if "positive" in r.study_id else 0)


def _copy_mura(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst / "MURA-v1.1"


def test_mura_bad_rows_and_missing_files_are_reported(phantom, tmp_path):
    mura = _copy_mura(phantom / "mura", tmp_path / "m")
    lines = (mura / "train_image_paths.csv").read_text().splitlines()
    Path(tmp_path / "m" / lines[0]).unlink()  # a missing image
    lines.append("garbage,row,here")
    (mura / "train_image_paths.csv").write_text("\n".join(lines) + "\n")
    s = read_mura(tmp_path / "m", "train")
    assert len(s.records) == len(lines) - 2
    assert any("missing" in p and lines[0].split("/")[-1] in p for p in s.problems)
    assert any("train_image_paths.csv:" in p and "garbage" in p for p in s.problems)


def test_mura_fatal_errors_are_clear(phantom, tmp_path):
    with pytest.raises(DataError, match="not a MURA v1.1 root"):
        read_mura(tmp_path, "train")
    mura = _copy_mura(phantom / "mura", tmp_path / "m")
    (mura / "valid_labeled_studies.csv").unlink()
    with pytest.raises(DataError, match="valid_labeled_studies.csv: MURA CSV not found"):
        read_mura(tmp_path / "m", "valid")
    (mura / "train_labeled_studies.csv").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(DataError, match="train_labeled_studies.csv"):
        read_mura(tmp_path / "m", "train")
    with pytest.raises(ConfigError, match="'test'"):
        read_mura(tmp_path / "m", "test")


def test_external_folder_layout_and_quirks(tmp_path):
    from PIL import Image

    for split, cls in [("train", "fractured"), ("test", "not fractured")]:
        d = tmp_path / split / cls
        d.mkdir(parents=True)
        Image.new("L", (8, 8), 100).save(d / "57-rotated2-rotated1.jpg", format="PNG")  # PNG bytes
        (d / "57.jpg:Zone.Identifier").write_text("[ZoneTransfer]")
        (d / ".DS_Store").write_bytes(b"\0\0")
        (d / "notes.txt").write_text("hello")
    s = read_image_folder(tmp_path)
    assert len(s.records) == 2 and {r.label for r in s.records} == {0, 1}
    assert {r.patient_id for r in s.records} == {"fractured:57", "not fractured:57"}
    assert len(s.problems) == 2 and all("notes.txt" in p for p in s.problems)
    with pytest.raises(DataError, match="fractured"):
        read_image_folder(tmp_path / "train" / "fractured")


def test_original_group():
    assert original_group("57-rotated2-rotated1.jpg") == "57"
    assert original_group("IMG0000019.jpg") == "IMG0000019"
    assert original_group("1-rotated1-rotated2 - Copy (1).jpg") == "1"
    assert original_group("0._jumbo (1).jpeg") == "0"


def test_external_real_set():
    root = shared_data("bone-fracture-binary")
    s = read_image_folder(root)
    assert len(s.records) == 3782
    rotated = [r for r in s.records if "rotated" in r.path]
    assert rotated and all("rotated" not in r.patient_id for r in rotated)  # grouped with originals
    assert len({r.patient_id for r in s.records}) < len(s.records) / 5


def test_generic_csv(tmp_path):
    from PIL import Image

    Image.new("L", (8, 8)).save(tmp_path / "a.png")
    (tmp_path / "d.csv").write_text("path,label,body_part\na.png,1,Hand\nmissing.png,0,hand\nb.png,x,hand\n")
    s = read_csv_dataset(tmp_path / "d.csv")
    assert [(r.label, r.body_part) for r in s.records] == [(1, "hand")]
    assert len(s.problems) == 2
    (tmp_path / "bad.csv").write_text("file,y\n")
    with pytest.raises(DataError, match="header"):
        read_csv_dataset(tmp_path / "bad.csv")


def test_load_source_dispatch(phantom):
    assert load_source(f"mura:{phantom / 'mura'}", "valid").name == "phantom mura-v1.1/valid"
    assert load_source(f"folder:{phantom / 'external'}").task == "fracture"
    with pytest.raises(ConfigError, match="unknown data source kind"):
        load_source("zip:/x")
    with pytest.raises(ConfigError, match="must look like"):
        load_source("/just/a/path")


def test_fracatlas_real_set():
    from models.datasources import read_fracatlas, read_fracatlas_boxes

    root = shared_data("fracatlas")
    s = read_fracatlas(root)
    assert len(s.records) == 3259 and sum(r.label for r in s.records) == 592
    assert {"hand", "leg", "hip", "shoulder"} <= set(s.body_parts) and "elbow" not in s.body_parts
    a, b = group_split(s.records, 0.2, seed=0)
    assert not {r.patient_id for r in a} & {r.patient_id for r in b}  # id blocks never straddle
    boxes = read_fracatlas_boxes(root)
    fractured = {Path(r.path).name for r in s.records if r.label}
    assert set(boxes) <= {Path(r.path).name for r in s.records} and len(set(boxes) & fractured) > 500


def test_fracatlas_layout_and_problems(tmp_path):
    from PIL import Image

    from models.datasources import read_fracatlas

    (tmp_path / "images" / "Fractured").mkdir(parents=True)
    for i in (1, 2, 45):
        Image.new("L", (8, 8)).save(tmp_path / "images" / "Fractured" / f"IMG{i:07d}.jpg")
    (tmp_path / "dataset.csv").write_text(
        "image_id,hand,leg,hip,shoulder,mixed,hardware,fractured\n"
        "IMG0000001.jpg,1,0,0,0,0,0,1\nIMG0000002.jpg,0,1,1,0,0,0,0\nIMG0000045.jpg,0,0,0,0,0,0,0\n"
        "IMG0000099.jpg,1,0,0,0,0,0,1\nbad,1,0,0,0,0,0,x\n")
    s = read_fracatlas(tmp_path)
    assert [(r.body_part, r.label, r.patient_id) for r in s.records] == [
        ("hand", 1, "block00000"), ("mixed", 0, "block00000"), ("unknown", 0, "block00002")]
    assert len(s.problems) == 2 and any("IMG0000099.jpg" in p and "missing" in p for p in s.problems)
    with pytest.raises(DataError, match="dataset.csv not found"):
        read_fracatlas(tmp_path / "nope")
