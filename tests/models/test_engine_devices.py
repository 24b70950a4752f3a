"""Device choice, explicit precision per device, and the compiled-model cache."""

from __future__ import annotations

import numpy as np
import pytest

from models.card import load_bundle
from models.engine import Engine, validated_precision


def test_validated_precision_per_device():
    card = {"validation": {"inference_precision": "f32",
                           "devices": {"CPU": {"inference_precision": "f32"}, "GPU": {"inference_precision": "f16"}}}}
    assert validated_precision(card, "GPU") == "f16"
    assert validated_precision(card, "gpu.1") == "f16"  # a second iGPU/dGPU is still a GPU
    assert validated_precision(card, "CPU") == "f32"
    cpu_only = {"validation": {"inference_precision": "f32"}}
    # a device the gate never ran on gets what was validated, not OpenVINO's f16 GPU default
    assert validated_precision(cpu_only, "GPU") == "f32"
    assert validated_precision({"validation": {}}, "CPU") == "f32"


def test_auto_device_runs_with_the_validated_precision_and_matches_cpu(tiny_bundle):
    cpu = Engine(tiny_bundle)
    auto = Engine(tiny_bundle, device="AUTO")
    assert auto.compiled_model.get_property("EXECUTION_DEVICES") == ["CPU"]  # no GPU on this machine
    x = np.random.default_rng(0).standard_normal((2, 1, cpu.cfg.input_size, cpu.cfg.input_size)).astype(np.float32)
    a, b = cpu.infer(x), auto.infer(x)
    np.testing.assert_allclose(a["fracture_prob"], b["fracture_prob"], atol=1e-6)


def test_missing_device_is_a_clear_error(tiny_bundle):
    from models.errors import ConfigError

    with pytest.raises(ConfigError, match="device 'NPU'.*available"):
        Engine(tiny_bundle, device="NPU")


def test_compiled_model_cache_is_written_and_reused(tiny_bundle, tmp_path):
    cache = tmp_path / "ov-cache"
    first = Engine(load_bundle(tiny_bundle), cache_dir=cache)
    blobs = sorted(p.name for p in cache.iterdir())
    assert blobs, "OpenVINO wrote no compiled blob to the cache directory"
    second = Engine(load_bundle(tiny_bundle), cache_dir=cache)
    assert sorted(p.name for p in cache.iterdir()) == blobs  # loaded from the cache, nothing new compiled
    x = np.zeros((1, 1, first.cfg.input_size, first.cfg.input_size), np.float32)
    np.testing.assert_array_equal(first.infer(x)["fracture_prob"], second.infer(x)["fracture_prob"])
