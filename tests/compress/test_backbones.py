"""Every backbone through export -> INT8 -> gate at tiny size (random weights, 32 px)."""

import pytest
import torch

from compress.pipeline import CompressConfig, run
from models.card import load_bundle
from models.engine import Engine
from models.nn.checkpoint import load_checkpoint, save_checkpoint
from models.nn.networks import create_model


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["custom_cnn", "resnet50", "densenet169", "efficientnet_b0"])
def test_backbone_export_quantize_gate(arch, tiny_checkpoint, phantom, tmp_path):
    ck = load_checkpoint(tiny_checkpoint)
    meta = {**ck["meta"], "architecture": arch, "preprocess": {**ck["meta"]["preprocess"], "input_size": 32}}
    torch.manual_seed(0)
    net = create_model(arch, len(meta["body_parts"]), cam_pool=meta["cam_pool"])
    save_checkpoint(tmp_path / "ck.pt", {"model": net.state_dict(), "meta": meta, "epoch": 0})
    passed, card = run(CompressConfig(checkpoint=str(tmp_path / "ck.pt"), out=str(tmp_path / "b"),
                                      calib_data=f"mura:{phantom / 'mura'}", val_data=[f"mura:{phantom / 'mura'}"],
                                      budget=1.0, min_agreement=0.0, calib_size=16, accuracy_control=False))
    assert passed and card["architecture"] == arch
    b = load_bundle(tmp_path / "b")
    out = Engine(b).infer(torch.zeros(2, 1, 32, 32).numpy())
    assert out["fracture_prob"].shape == (2,) and out["body_part_prob"].shape == (2, len(meta["body_parts"]))
