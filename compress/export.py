"""Export a trained checkpoint to ONNX and OpenVINO IR, and check both against torch.

The exported graph is :class:`models.nn.networks.ExportWrapper`: input ``image`` (N, 1, S, S) and
outputs ``fracture_prob`` (N,), ``body_part_prob`` (N, K) and ``cam`` (N, h, w) — the heatmap
comes out of the same forward pass.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from models.engine import port_name
from models.errors import MuraError
from models.nn.networks import INPUT_NAME, OUTPUT_NAMES, ExportWrapper, MultiTaskNet

OPSET = 17


class ExportError(MuraError):
    """Exported model disagrees with torch beyond tolerance."""


def export_onnx(net: MultiTaskNet, path: str | Path, input_size: int) -> Path:
    """Legacy (TorchScript) exporter at opset 17: fast, one self-contained file, dynamic batch."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    wrapper = ExportWrapper(net.eval())
    dummy = torch.zeros(2, 1, input_size, input_size)
    dyn = {INPUT_NAME: {0: "batch"}, **{n: {0: "batch"} for n in OUTPUT_NAMES}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapper, (dummy,), str(path), dynamo=False, opset_version=OPSET,
            input_names=[INPUT_NAME], output_names=list(OUTPUT_NAMES), dynamic_axes=dyn,
        )
    return path


def torch_outputs(net: MultiTaskNet, batch: np.ndarray) -> dict[str, np.ndarray]:
    with torch.no_grad():
        outs = ExportWrapper(net.eval())(torch.from_numpy(batch))
    return {n: o.numpy() for n, o in zip(OUTPUT_NAMES, outs, strict=True)}


def onnx_outputs(path: str | Path, batch: np.ndarray) -> dict[str, np.ndarray]:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {INPUT_NAME: batch}), strict=True))


def max_abs_diff(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> dict[str, float]:
    return {k: float(np.max(np.abs(a[k] - b[k]))) for k in OUTPUT_NAMES}


def convert_to_openvino(onnx_path: str | Path, xml_path: str | Path, *, fp16: bool = False):
    """ONNX -> OpenVINO IR. FP32 unless asked: ``save_model`` would silently halve the weights."""
    import openvino as ov

    model = ov.convert_model(str(onnx_path))
    ov.save_model(model, str(xml_path), compress_to_fp16=fp16)
    return model


def openvino_outputs(xml_path: str | Path, batch: np.ndarray, precision: str = "f32") -> dict[str, np.ndarray]:
    from models.ovruntime import core

    compiled = core().compile_model(str(xml_path), "CPU", {"INFERENCE_PRECISION_HINT": precision})
    res = compiled(batch)
    return {port_name(p, OUTPUT_NAMES): np.array(res[p]) for p in compiled.outputs}


def check_export(net: MultiTaskNet, onnx_path: Path, xml_path: Path, batches: dict[str, np.ndarray],
                 tol: float = 1e-3) -> dict[str, dict[str, float]]:
    """Max abs difference of ONNX Runtime and OpenVINO f32 vs torch, per input kind and output."""
    report: dict[str, dict[str, float]] = {}
    for kind, batch in batches.items():
        ref = torch_outputs(net, batch)
        report[f"onnxruntime/{kind}"] = max_abs_diff(ref, onnx_outputs(onnx_path, batch))
        report[f"openvino_f32/{kind}"] = max_abs_diff(ref, openvino_outputs(xml_path, batch))
    worst = max((v, k, o) for k, d in report.items() for o, v in d.items())
    if worst[0] > tol:
        raise ExportError(f"{worst[1]} output {worst[2]!r} differs from torch by {worst[0]:.2e} (> {tol})")
    return report
