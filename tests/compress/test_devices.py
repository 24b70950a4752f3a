"""The gate covers the devices it is asked to, and refuses the ones this machine lacks up front."""

from __future__ import annotations

import pytest

from compress.pipeline import CompressConfig, check_devices, run
from models.card import load_bundle
from models.errors import ConfigError


def test_check_devices():
    assert check_devices([]) == ["CPU"]
    assert check_devices(["auto", "CPU", "AUTO"]) == ["CPU", "AUTO"]
    with pytest.raises(ConfigError, match="'GPU' is not available on this machine.*CPU"):
        check_devices(["GPU"])  # this machine has no iGPU
    with pytest.raises(ConfigError, match="'NPU' is not supported"):
        check_devices(["NPU"])


def test_gate_runs_int8_on_auto_too(phantom, tiny_checkpoint, tmp_path):
    out = tmp_path / "b"
    passed, card = run(CompressConfig(
        checkpoint=str(tiny_checkpoint), out=str(out), calib_data=f"mura:{phantom / 'mura'}",
        val_data=[f"mura:{phantom / 'mura'}"], budget=1.0, min_agreement=0.0, calib_size=16,
        latency_iters=2, accuracy_control=False, devices=["CPU", "AUTO"]))
    sets = {k.removeprefix("gate:"): v for k, v in card["metrics"].items() if k.startswith("gate:")}
    cpu, auto = sets["phantom mura-v1.1/valid"], sets["phantom mura-v1.1/valid @ AUTO"]
    assert auto["device"] == "AUTO"
    # AUTO lands on the CPU here with the same explicit f32 hint: the very same scores
    assert auto["image_auc_int8"] == pytest.approx(cpu["image_auc_int8"], abs=1e-9)
    assert card["validation"]["devices"] == {"CPU": {"inference_precision": "f32"}}
    assert "phantom mura-v1.1/valid @ AUTO" in (out / "validation.md").read_text()
    assert load_bundle(out).card["validation"]["verdict"] == ("passed" if passed else "failed")
