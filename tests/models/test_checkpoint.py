"""Rebuilding a network from a checkpoint's meta or a run manifest's ``model`` (models.nn.checkpoint)."""

import torch

from models.nn.checkpoint import build_network, model_from_checkpoint
from models.nn.networks import create_model


def test_a_checkpoint_rebuilds_its_cam_stride():
    net = create_model("efficientnet_lite0", num_body_parts=2, cam_pool="mean", cam_stride=16)
    meta = {"architecture": "efficientnet_lite0", "body_parts": ["hand", "leg"], "cam_pool": "mean",
            "cam_stride": 16}
    rebuilt = model_from_checkpoint({"meta": meta, "model": net.state_dict()})
    with torch.no_grad():
        _, _, cam = rebuilt.forward_with_cam(torch.zeros(1, 1, 128, 128))
    assert cam.shape[-2:] == (8, 8)
    # checkpoints written before cam_stride existed rebuild at the backbone's own stride
    old = model_from_checkpoint({"meta": {k: v for k, v in meta.items() if k != "cam_stride"},
                                 "model": net.state_dict()})
    with torch.no_grad():
        assert old.forward_with_cam(torch.zeros(1, 1, 128, 128))[2].shape[-2:] == (4, 4)


def test_build_network_takes_the_calibration_and_is_in_eval_mode():
    net = create_model("custom_cnn", num_body_parts=3)
    spec = {"architecture": "custom_cnn", "body_parts": ["a", "b", "c"], "cam_pool": net.cam_pool, "cam_stride": 32}
    rebuilt = build_network(spec, net.state_dict(), {"method": "platt", "slope": 0.5, "intercept": -1.0})
    assert rebuilt.calibration == (0.5, -1.0) and not rebuilt.training
    assert build_network(spec, net.state_dict()).calibration == (1.0, 0.0)
