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
    # Full bias correction by default: on the phantom custom_cnn the fast variant shifted every
    # probability by about +0.01 and flipped 4 % of decisions at the thresholds (AUC unchanged);
    # the full one kept all of them (max |Δp| 0.02). It costs seconds to minutes more, once.
    fast_bias_correction: bool = False
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


def auc_validation_fn(labels: np.ndarray, reference: GateReference | None = None):
    """NNCF ``validation_fn``: image-level AUC of the compiled model's ``fracture_prob``.

    Items of the validation dataset are indices into ``labels`` (and into the inputs the dataset's
    transform reads), so the metric is the same ranking quality the gate measures, not a loss.

    With a ``reference`` (the FP32 model's probabilities on the same images) the metric is shaped
    like the gate, so that accuracy control stops only where the gate would pass: NNCF only
    knows "metric drop <= max_drop", which a rising AUC or flipped decisions never trip. The
    metric is ``ref_auc - |auc - ref_auc|``, less ``budget + shortfall`` when decisions at the
    card's thresholds agree with FP32's in less than ``min_agreement`` of images; the FP32 model
    scores exactly ``ref_auc``, so its drop is ``|ΔAUC|`` (plus the penalty) and
    ``max_drop=budget`` asks for both gate conditions on this subset.
    """
    from models.metrics import roc_auc

    def validate(compiled_model, data) -> float:
        port = next(o for o in compiled_model.outputs if "fracture_prob" in o.get_names())
        idx, probs = [], []
        for i, x in data:
            idx.append(int(i))
            probs.append(float(np.asarray(compiled_model(x)[port]).reshape(-1)[0]))
        y, p = np.asarray(labels)[idx], np.asarray(probs)
        auc = roc_auc(y, p)
        auc = 0.0 if np.isnan(auc) else float(auc)
        if reference is None:
            return auc
        return reference.metric(np.asarray(idx), p, auc)

    return validate


@dataclass(frozen=True)
class GateReference:
    """The FP32 side of the gate on accuracy control's images (see :func:`auc_validation_fn`)."""

    probs: np.ndarray  # FP32 fracture_prob per validation image, in dataset order
    auc: float  # FP32 image-level AUC on those images
    thresholds: tuple[float, ...]  # the card's operating points
    budget: float
    min_agreement: float

    def agreement(self, idx: np.ndarray, probs: np.ndarray) -> float:
        ref = self.probs[idx]
        return min((float(np.mean((probs >= t) == (ref >= t))) for t in self.thresholds),
                   default=1.0)

    def metric(self, idx: np.ndarray, probs: np.ndarray, auc: float) -> float:
        shortfall = self.min_agreement - self.agreement(idx, probs)
        penalty = self.budget + shortfall if shortfall > 0 else 0.0
        return self.auc - abs(auc - self.auc) - penalty


def quantize_accuracy_control(ov_model, calib_inputs: np.ndarray, val_inputs: np.ndarray,
                              val_labels: np.ndarray, qcfg: QuantizeConfig, max_drop: float,
                              reference: GateReference | None = None):
    """INT8 with NNCF's accuracy control: layers that cost AUC are reverted to floating point
    until the image-level AUC drop on the validation data is at most ``max_drop`` (absolute).

    Used as the fallback when plain PTQ fails the gate; slower, and the result may keep more
    layers in FP32 (so is slower to run), which the report's latency column shows.
    """
    import nncf

    labels = np.asarray(val_labels).astype(int)
    if len(val_inputs) == 0 or labels.min() == labels.max():
        raise ConfigError("accuracy control needs validation images of both classes")
    scope = None
    if qcfg.ignored_types or qcfg.ignored_names:
        scope = nncf.IgnoredScope(types=qcfg.ignored_types, names=qcfg.ignored_names, validate=False)
    val_ds = nncf.Dataset([(i, val_inputs[i : i + 1]) for i in range(len(val_inputs))], lambda it: it[1])
    return nncf.quantize_with_accuracy_control(
        ov_model,
        calibration_dataset(calib_inputs),
        val_ds,
        auc_validation_fn(labels, reference),
        max_drop=max_drop,
        drop_type=nncf.DropType.ABSOLUTE,
        preset=_preset(qcfg.preset),
        subset_size=min(qcfg.subset_size, len(calib_inputs)),
        fast_bias_correction=qcfg.fast_bias_correction,
        ignored_scope=scope,
    )
