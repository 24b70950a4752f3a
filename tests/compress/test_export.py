import numpy as np
import pytest
import torch

from compress.export import (
    ExportError,
    check_export,
    convert_to_openvino,
    export_onnx,
    onnx_outputs,
)
from models.nn.networks import OUTPUT_NAMES, create_model


@pytest.mark.parametrize("name", ["custom_cnn", "resnet50", "densenet169", "efficientnet_b0"])
def test_export_matches_torch(name, tmp_path):
    torch.manual_seed(0)
    net = create_model(name, num_body_parts=3).eval()
    onnx_path = export_onnx(net, tmp_path / "m.onnx", 64)
    convert_to_openvino(onnx_path, tmp_path / "m.xml")
    rng = np.random.default_rng(0)
    report = check_export(net, onnx_path, tmp_path / "m.xml",
                          {"random": rng.standard_normal((3, 1, 64, 64), dtype=np.float32)})
    assert max(v for d in report.values() for v in d.values()) < 1e-3
    # dynamic batch, named outputs
    outs = onnx_outputs(onnx_path, np.zeros((5, 1, 64, 64), np.float32))
    assert set(outs) == set(OUTPUT_NAMES) and outs["fracture_prob"].shape == (5,)


def test_export_check_catches_a_wrong_model(tmp_path):
    torch.manual_seed(0)
    net = create_model("custom_cnn", 3).eval()
    onnx_path = export_onnx(net, tmp_path / "m.onnx", 64)
    convert_to_openvino(onnx_path, tmp_path / "m.xml")
    with torch.no_grad():
        net.fracture_head.bias += 3.0  # torch now differs from the exported files
    with pytest.raises(ExportError, match="differs from torch"):
        check_export(net, onnx_path, tmp_path / "m.xml", {"random": np.ones((1, 1, 64, 64), np.float32)})
