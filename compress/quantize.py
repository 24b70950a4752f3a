"""NNCF INT8 post-training quantization of the OpenVINO model.

Calibration goes through ``nncf.Dataset`` over inputs already made by the shared preprocessing, so
the quantizer sees exactly what the clinic PC will feed the network.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from models.errors import ConfigError


@dataclass
class QuantizeConfig:
    preset: str = "performance"  # or "mixed" (asymmetric activations; safer for SiLU nets)
    fast_bias_correction: bool = True
    subset_size: int = 300
    ignored_types: list[str] = field(default_factory=list)  # e.g. ["Multiply"] to keep SiLU gates FP
    ignored_names: list[str] = field(default_factory=list)


def _preset(name: str):
    import nncf

    presets = {"performance": nncf.QuantizationPreset.PERFORMANCE, "mixed": nncf.QuantizationPreset.MIXED}
    if name not in presets:
        raise ConfigError(f"unknown NNCF preset {name!r}; choose one of {sorted(presets)}")
    return presets[name]


def calibration_dataset(inputs: np.ndarray):
    """One-image batches: NNCF collects statistics per sample."""
    import nncf

    if len(inputs) == 0:
        raise ConfigError("calibration set is empty: no decodable training image")
    return nncf.Dataset(list(range(len(inputs))), lambda i: inputs[i : i + 1])


def quantize_openvino(ov_model, calib_inputs: np.ndarray, qcfg: QuantizeConfig):
    """Return the INT8 ``openvino.Model``."""
    import nncf

    scope = None
    if qcfg.ignored_types or qcfg.ignored_names:
        scope = nncf.IgnoredScope(types=qcfg.ignored_types, names=qcfg.ignored_names, validate=False)
    return nncf.quantize(
        ov_model,
        calibration_dataset(calib_inputs),
        preset=_preset(qcfg.preset),
        subset_size=min(qcfg.subset_size, len(calib_inputs)),
        fast_bias_correction=qcfg.fast_bias_correction,
        ignored_scope=scope,
    )
