"""models.reference: which bundle is the default, in which order, and the shipped one itself.

The lookup is tested against temporary folders, never against the real reference bundle, so
these tests say the same thing before and after ``models/reference/fracatlas-lite0`` exists;
the last test checks that bundle itself when it is there, and says why it skips when not.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from models import reference
from models.errors import BundleError, NoModelError
from tests.conftest import REPO


@pytest.fixture
def no_env(monkeypatch, tmp_path) -> Path:
    """No override set, not frozen, and no reference bundle: nothing to find until a test adds
    it. Returns the (empty) folder standing in for the reference bundle."""
    for var in (reference.DEFAULT_MODEL_ENV, reference.INSTALL_MODEL_ENV):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(sys, "frozen", False, raising=False)
    ref = tmp_path / "repo" / "models" / "reference" / reference.REFERENCE_NAME
    monkeypatch.setattr(reference, "reference_dir", lambda: ref)
    return ref


def _bundle(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "card.json").write_text("{}")
    return folder


def test_reference_folder_is_in_the_models_package():
    assert reference.REFERENCE_NAME == "fracatlas-lite0"
    assert reference.reference_dir() == REPO / "models" / "reference" / "fracatlas-lite0"


def test_nothing_anywhere_is_none_and_require_names_model(no_env):
    assert reference.default_bundle_path() is None
    with pytest.raises(NoModelError, match="--model") as err:
        reference.require_default_bundle()
    assert isinstance(err.value, BundleError)
    assert reference.DEFAULT_MODEL_ENV in str(err.value) and "fracatlas-lite0" in str(err.value)


def test_reference_bundle_is_found_only_with_a_card(no_env):
    no_env.mkdir(parents=True)
    assert reference.default_bundle_path() is None  # an empty folder is not a bundle
    _bundle(no_env)
    found = reference.find_default_bundle()
    assert found is not None and found.path == no_env
    assert "shipped reference model" in found.origin


def test_env_beats_installed_beats_reference(no_env, monkeypatch, tmp_path):
    _bundle(no_env)
    inst = _bundle(tmp_path / "opt" / "mura-fracture" / "model")
    (inst.parent / "mura-screen").write_text("")
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "executable", str(inst.parent / "mura-screen"))
    assert reference.default_bundle_path() == inst.resolve()
    monkeypatch.setenv(reference.INSTALL_MODEL_ENV, str(tmp_path / "site-bundle"))
    assert reference.default_bundle_path() == tmp_path / "site-bundle"
    monkeypatch.setenv(reference.DEFAULT_MODEL_ENV, str(tmp_path / "mine"))
    found = reference.find_default_bundle()
    # returned even though it does not exist: loading it then fails naming it
    assert found.path == tmp_path / "mine" and reference.DEFAULT_MODEL_ENV in found.origin


def test_from_source_the_install_folder_is_not_looked_at(no_env, monkeypatch, tmp_path):
    inst = _bundle(tmp_path / "bin" / "model")
    monkeypatch.setattr(sys, "executable", str(tmp_path / "bin" / "python"))
    assert reference.installed_bundle_dir() is None
    assert reference.default_bundle_path() is None
    assert inst.is_dir()


def test_notice_is_one_line_naming_the_program_the_model_and_research_use(no_env, monkeypatch):
    _bundle(no_env)
    monkeypatch.chdir(no_env.parents[2])  # the "repo": the notice shows a relative path
    line = reference.find_default_bundle().notice("mura-screen")
    assert line == ("mura-screen: no --model given: using the shipped reference model "
                    "models/reference/fracatlas-lite0 (research use only)")
    assert reference.find_default_bundle().path.is_absolute()  # what is loaded stays absolute


def test_samples_dir_is_the_repository_samples_folder():
    assert reference.samples_dir() == REPO / "samples"


def test_the_shipped_reference_bundle_loads_with_checksums_verified():
    from models.card import load_bundle

    ref = REPO / "models" / "reference" / reference.REFERENCE_NAME
    if not (ref / "card.json").is_file():
        pytest.skip(f"{ref.relative_to(REPO)} has no card.json yet: the reference model is "
                    "still being trained (make reference-model ships it)")
    bundle = load_bundle(ref)  # schema, every file's sha256, real input/output names
    assert bundle.card["name"] == reference.REFERENCE_NAME
    for rel in bundle.card["artifacts"].values():  # the card names only the files shipped
        assert (ref / rel).is_file() and (ref / rel).with_suffix(".bin").is_file(), rel
    size = sum(p.stat().st_size for p in ref.iterdir() if p.is_file())
    assert size < 20e6, f"the shipped bundle is {size / 1e6:.1f} MB (installer budget: ~12 MB)"


def test_the_shipped_model_scores_the_samples_as_recorded():
    """The shipped files reproduce the outputs recorded when they were made (compress.ship).

    FP16 weights run in f32 on every CPU (tight tolerance). INT8 kernels differ between AVX2,
    AVX-512 VNNI and AMX: on the recorded ISA INT8 reproduces its recording, elsewhere it is held
    to FP32's recorded output within what the gate measured INT8 to differ from FP32 on thousands
    of validation images (see :func:`compress.ship.verify_samples`).
    """
    import json

    from compress.ship import verify_samples

    ref = REPO / "models" / "reference" / reference.REFERENCE_NAME
    if not (ref / "expected_samples.json").is_file():
        pytest.skip(f"{ref.relative_to(REPO)} is not shipped yet (make reference-model ships it)")
    rec = json.loads((ref / "expected_samples.json").read_text())
    assert len(rec["samples"]) >= 8 and 0 < rec["int8_tolerance"] < 0.5
    assert verify_samples(ref, REPO / "samples", rec) == []
