"""Shared fixtures. Qt must run offscreen before anything imports it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def load_bench(name: str):
    """A ``bench/NAME.py`` script as a module (bench/ is not a package; the scripts run standalone)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"bench_{name}", REPO / "bench" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    import sys

    sys.modules[spec.name] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


def shared_data(sub: str = "") -> Path:
    """Path into ../shared/data, skipping the test (with the reason) when it is absent."""
    p = SHARED_DATA / sub
    if not p.exists():
        pytest.skip(f"real data not available: {p} is absent (only development machines and CI have it)")
    return p


@pytest.fixture(scope="session")
def phantom(tmp_path_factory) -> Path:
    """A small phantom data set in every layout: OUT/mura, OUT/external, OUT/dicom."""
    from models.synth import write_dicom_studies, write_external, write_mura

    out = tmp_path_factory.mktemp("phantom")
    write_mura(out / "mura", seed=1, n_patients=24, size_range=(96, 128))
    write_external(out / "external", seed=2, n_images=24, size_range=(96, 128))
    write_dicom_studies(out / "dicom", seed=3, n_studies=4)
    return out


@pytest.fixture(scope="session")
def tiny_checkpoint(phantom, tmp_path_factory) -> Path:
    """One epoch of custom_cnn at 64 px: exercises the trainer; the weights are near random."""
    from trainer.train import TrainConfig, train

    out = tmp_path_factory.mktemp("train")
    train(TrainConfig(data=f"mura:{phantom / 'mura'}", out=str(out), arch="custom_cnn", input_size=64,
                      epochs=1, batch_size=16, augment=False))
    return out / "checkpoint_best.pt"


@pytest.fixture(scope="session")
def tiny_bundle(phantom, tiny_checkpoint, tmp_path_factory) -> Path:
    """A complete INT8 bundle of the tiny checkpoint (gate budget 1.0: it always passes)."""
    from compress.pipeline import CompressConfig, run

    out = tmp_path_factory.mktemp("bundle") / "bundle"
    passed, _ = run(CompressConfig(checkpoint=str(tiny_checkpoint), out=str(out),
                                   calib_data=f"mura:{phantom / 'mura'}",
                                   val_data=[f"mura:{phantom / 'mura'}", f"folder:{phantom / 'external'}"],
                                   budget=1.0, min_agreement=0.0, calib_size=32))
    assert passed
    return out


@pytest.fixture
def bundle_copy(tiny_bundle, tmp_path) -> Path:
    """A private copy to tamper with."""
    import shutil

    dst = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, dst)
    return dst


@pytest.fixture(scope="session")
def validated_bundle(tiny_bundle, tmp_path_factory) -> Path:
    """The tiny bundle with a card saying its reduced-resolution decode passed the check
    (``compress.reduced_decode``). The phantom gate sets are too small to decode reduced, so
    the tiny bundle's own check fails; this card's "passed" is the test's claim, for testing
    what runtimes do with it."""
    import shutil

    from models.card import load_bundle, write_bundle

    dst = tmp_path_factory.mktemp("validated") / "bundle"
    shutil.copytree(tiny_bundle, dst)
    card = dict(load_bundle(dst).card)
    side = 2 * int(card["input"]["preprocessing"]["input_size"])
    card["reduced_decode"] = {**card["reduced_decode"], "passed": True, "min_side": side, "reasons": []}
    write_bundle(dst, card)
    return dst
